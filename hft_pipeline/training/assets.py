"""Training stage: the features of the N trading days ending at D -> the window's model in
seed 000's layout (fit_data/roll30/live/<start>_<end>/) and its training log."""

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from hft_pipeline.config import PipelineSettings
from hft_pipeline.features.registry import MODEL_FEATURES
from hft_pipeline.features.store import load_window
from hft_pipeline.layout import Layout
from hft_pipeline.partitions import PipelinePartitions, parse_date_key, rolling_window_mapping
from hft_pipeline.training.train import train_window


@contextlib.contextmanager
def training_log(path: Path) -> Iterator[logging.Logger]:
    """A logger writing to logs_hft/train/train_<end>.log for the duration of one training."""
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(f"hft_pipeline.train.{path.stem}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        handler.close()


def window_files(layout: Layout, days: list[dt.date], partition_key: str) -> tuple[list, list]:
    features = [layout.features_file(day) for day in days]
    labels = [layout.labels_file(day) for day in days]
    missing = [str(path) for path in features + labels if not path.is_file()]
    if missing:
        raise dg.Failure(
            f"roll30_model[{partition_key}]: {len(missing)} feature/label file(s) of the window "
            f"are missing (materialize `features` for those days first): {missing[:4]}"
        )
    return features, labels


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
    horizon = settings.features.horizon_bars

    @dg.asset(
        group_name="training",
        partitions_def=partitions.trading_days,
        deps=[dg.AssetDep("features", partition_mapping=rolling_window_mapping(window_days))],
        pool="gpu",
        backfill_policy=dg.BackfillPolicy.multi_run(1),
        kinds={"pytorch"},
    )
    def roll30_model(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """The multi-task model (direction, return, volatility) trained on the rolling window
        of N trading days ending at this partition's day."""
        end = parse_date_key(context.partition_key)
        days = partitions.window_days(end, window_days)
        if len(days) < window_days:
            raise dg.Failure(
                f"roll30_model[{context.partition_key}]: the window needs {window_days} trading "
                f"days but history has only {len(days)} up to {end} (starts "
                f"{partitions.trading_days.get_first_partition_key()}); pick a later day"
            )
        feature_files, label_files = window_files(layout, days, context.partition_key)
        features, labels = load_window(None, feature_files, label_files)
        out_dir = layout.window_dir(days[0], end)
        with training_log(layout.train_log(end)) as logger:
            logger.info(
                "window %s..%s (%d trading days), settings %s",
                days[0],
                end,
                len(days),
                settings.as_metadata(),
            )
            result = train_window(
                features, labels, MODEL_FEATURES, settings.training, horizon, out_dir, logger
            )
        history = result.history
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(out_dir)),
                "window": dg.MetadataValue.text(f"{days[0]}..{end}"),
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
                "loss_curve": dg.MetadataValue.md(_loss_table(history)),
                "log": dg.MetadataValue.path(str(layout.train_log(end))),
            }
        )

    return [roll30_model]


def _loss_table(history: list[dict]) -> str:
    lines = ["| epoch | train loss | val loss | lr | seq/s |", "|---|---|---|---|---|"]
    for row in history:
        lines.append(
            f"| {row.get('epoch')} | {row.get('train_loss', float('nan')):.4f} "
            f"| {row.get('val_loss', float('nan')):.4f} | {row.get('lr', float('nan')):.2e} "
            f"| {row.get('sequences_per_second', float('nan')):.0f} |"
        )
    return "\n".join(lines)
