"""Training stage: the features of the N trading days ending at D -> the window's model in
seed 000's layout (fit_data/roll30/live/<start>_<end>/) and its training log, and on demand
the window's training matrix (model kinds x symbols x horizons) under its matrix/ folder.

Both assets report every epoch as an observation of themselves (loss, learning rate, speed and
the loss curve so far), so the run's event log shows training progress as it happens; the
materialization carries the final curve as a chart (``loss_plot``) and the validation metrics
beside the baselines'. The Plots tab graphs those numbers across windows: it keeps one value
per partition, so a per-epoch curve has to be the chart."""

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import dagster as dg
from pydantic import Field

from hft_pipeline.config import PipelineSettings
from hft_pipeline.features.registry import MODEL_FEATURES
from hft_pipeline.layout import Layout
from hft_pipeline.partitions import PipelinePartitions, parse_date_key, rolling_window_mapping
from hft_pipeline.training.loss_plot import loss_curve_markdown
from hft_pipeline.training.matrix import (
    MATRIX_FOLDER,
    EpochRow,
    MatrixEntry,
    WindowInputs,
    check_inputs,
    matrix_entries,
    plan_jobs,
    primary_entry,
    summary_rows,
    train_entry,
    window_inputs,
)
from hft_pipeline.training.matrix_pool import run_matrix

# Per-epoch figures observed (history key -> metadata key).
EPOCH_FIGURES = {
    "train_loss": "train_loss",
    "val_loss": "val_loss",
    "lr": "learning_rate",
    "seconds": "epoch_seconds",
    "sequences_per_second": "sequences_per_second",
}


class MatrixConfig(dg.Config):
    """Which entries of the window's training matrix to train (the launchpad's run config)."""

    models: list[str] = Field(
        default=[], description="model kinds, e.g. lstm_multitask; empty: HFT_MATRIX_MODELS"
    )
    symbols: list[str] = Field(
        default=[], description="one entry per symbol, e.g. ES; empty: HFT_MATRIX_SYMBOLS"
    )
    horizons: list[int] = Field(
        default=[], description="label horizons in bars, e.g. 12; empty: HFT_MATRIX_HORIZONS"
    )
    parallel: int = Field(
        default=1, description="entries trained at once (CPU processes, or one per GPU card)"
    )


def trained_window(
    layout: Layout, partitions: PipelinePartitions, end: dt.date, window_days: int, asking: str
) -> tuple[dt.date, Path]:
    """(first day, folder) of the trained window ending at `end`, or a Failure naming the
    roll30_model partition to materialize first."""
    days = partitions.window_days(end, window_days)
    window_dir = layout.window_dir(days[0], end)
    if len(days) < window_days or not (window_dir / "model.pt").is_file():
        raise dg.Failure(
            f"{asking}: no trained model of the window ending {end} at {window_dir} "
            f"(materialize roll30_model[{end}] first)"
        )
    return days[0], window_dir


def build_training_assets(
    settings: PipelineSettings, partitions: PipelinePartitions
) -> list[dg.AssetsDefinition]:
    layout = Layout(settings.home)
    window_days = settings.training.window_days

    def checked_inputs(
        context: dg.AssetExecutionContext, entries: Sequence[MatrixEntry]
    ) -> WindowInputs:
        with failure_of(context):
            end = parse_date_key(context.partition_key)
            inputs = window_inputs(layout, partitions.window_days(end, window_days), window_days)
            check_inputs(inputs, entries, settings.training.extra_horizons)
        return inputs

    # One window per run (its data and model are big) in the `gpu` pool: never two on a card.
    window_asset = dg.asset(
        group_name="training",
        partitions_def=partitions.trading_days,
        deps=[dg.AssetDep("features", partition_mapping=rolling_window_mapping(window_days))],
        pool="gpu",
        backfill_policy=dg.BackfillPolicy.multi_run(1),
        kinds={"pytorch"},
    )

    @window_asset
    def roll30_model(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """The window's primary model (the configured model kind over every symbol, heads for
        direction, return and volatility at the primary label horizon) trained on the rolling
        window of N trading days ending at this partition's day."""
        entry = primary_entry(settings)
        inputs = checked_inputs(context, [entry])
        [job] = plan_jobs(settings, inputs, [entry], MODEL_FEATURES)
        result = train_entry(job, epoch_observer(context))
        history = result.history
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(result.out_dir)),
                "window": dg.MetadataValue.text(f"{inputs.days[0]}..{inputs.days[-1]}"),
                "device": dg.MetadataValue.text(result.device),
                "train_sequences": dg.MetadataValue.int(result.n_train),
                "validation_sequences": dg.MetadataValue.int(result.n_val),
                "epochs_run": dg.MetadataValue.int(len(history)),
                "train_seconds": dg.MetadataValue.float(result.wall_seconds),
                **{
                    f"val_{name}": dg.MetadataValue.float(float(value))
                    for name, value in result.metrics.items()
                    if isinstance(value, int | float)
                },
                "loss_curve": dg.MetadataValue.md(loss_report(history, inputs.name)),
                "log": dg.MetadataValue.path(str(job.log_path)),
            }
        )

    @window_asset
    def roll30_matrix(
        context: dg.AssetExecutionContext, config: MatrixConfig
    ) -> dg.MaterializeResult:
        """The training matrix of the window ending at this partition's day (seed 001): one
        model per model kind x symbol x label horizon, in the window folder's matrix/."""
        entries = matrix_entries(
            settings,
            models=tuple(config.models),
            symbols=tuple(symbol.upper() for symbol in config.symbols),
            horizons=tuple(config.horizons),
        )
        inputs = checked_inputs(context, entries)
        jobs = plan_jobs(settings, inputs, entries, MODEL_FEATURES)
        results = run_matrix(jobs, config.parallel, entry_epoch_observer(context))
        rows = summary_rows(results)
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(inputs.window_dir / MATRIX_FOLDER)),
                "window": dg.MetadataValue.text(f"{inputs.days[0]}..{inputs.days[-1]}"),
                "entries": dg.MetadataValue.table(
                    records=[dg.TableRecord(row) for row in rows],
                    schema=dg.TableSchema(
                        columns=[
                            dg.TableColumn(name, _column_type(value))
                            for name, value in rows[0].items()
                        ]
                    ),
                ),
                "loss_curves": dg.MetadataValue.md(
                    "\n\n".join(
                        loss_report(outcome.result.history, outcome.entry.name)
                        for outcome in results
                    )
                ),
            }
        )

    return [roll30_model, roll30_matrix]


@contextlib.contextmanager
def failure_of(context: dg.AssetExecutionContext) -> Iterator[None]:
    """Turns input errors (a short window, missing days, an absent label horizon) into a
    Failure that names the asset partition, shown in the UI without a traceback."""
    try:
        yield
    except (ValueError, OSError) as error:
        raise dg.Failure(
            f"{context.asset_key.to_user_string()}[{context.partition_key}]: {error}"
        ) from error


def epoch_observer(context: dg.AssetExecutionContext) -> Callable[[EpochRow], None]:
    """An ``on_epoch`` callback logging each epoch as an AssetObservation of the asset's
    partition: the epoch's figures and the loss curve up to it."""
    history: list[EpochRow] = []

    def observe(row: EpochRow) -> None:
        history.append(row)
        _observe(context, {**epoch_metadata(row), "loss_curve": loss_chart(history)})

    return observe


def entry_epoch_observer(
    context: dg.AssetExecutionContext,
) -> Callable[[MatrixEntry, EpochRow], None]:
    """:func:`epoch_observer` for the matrix: figures are prefixed with the entry's name and
    each entry's curve grows on its own."""
    histories: dict[MatrixEntry, list[EpochRow]] = {}

    def observe(entry: MatrixEntry, row: EpochRow) -> None:
        history = histories.setdefault(entry, [])
        history.append(row)
        metadata = epoch_metadata(row, prefix=f"{entry.name}/")
        chart = loss_chart(history, entry.name)
        _observe(context, {"entry": entry.name, **metadata, "loss_curve": chart})

    return observe


def _observe(context: dg.AssetExecutionContext, metadata: dict[str, float | int | str]) -> None:
    context.log_event(
        dg.AssetObservation(context.asset_key, partition=context.partition_key, metadata=metadata)
    )


def epoch_metadata(row: EpochRow, prefix: str = "") -> dict[str, float | int]:
    figures = {
        f"{prefix}{key}": float(row[name]) for name, key in EPOCH_FIGURES.items() if name in row
    }
    return {"epoch": int(row["epoch"]), **figures}


def loss_chart(history: list[EpochRow], title: str = "loss") -> dg.MarkdownMetadataValue:
    return dg.MetadataValue.md(loss_curve_markdown(history, title))


def loss_report(history: list[EpochRow], title: str) -> str:
    """Markdown: the loss curve as a chart, then the per-epoch figures as a table."""
    return f"**{title}**\n\n{loss_curve_markdown(history, title)}\n\n{loss_table(history)}"


def loss_table(history: list[EpochRow]) -> str:
    lines = ["| epoch | train loss | val loss | lr | seq/s |", "|---|---|---|---|---|"]
    for row in history:
        lines.append(
            f"| {row.get('epoch')} | {row.get('train_loss', float('nan')):.4f} "
            f"| {row.get('val_loss', float('nan')):.4f} | {row.get('lr', float('nan')):.2e} "
            f"| {row.get('sequences_per_second', float('nan')):.0f} |"
        )
    return "\n".join(lines)


def _column_type(value: object) -> str:
    if isinstance(value, int):
        return "int"
    return "float" if isinstance(value, float) or value is None else "string"
