"""Evaluation stage: each day scored out of sample by the model of the window that ended the
trading day before, beside its baselines; and the report over all scored days."""

import datetime as dt

import dagster as dg
import pandas as pd

from hft_pipeline.config import PipelineSettings
from hft_pipeline.evaluation.metrics import score_day, summarize
from hft_pipeline.features.store import load_window, refresh_view
from hft_pipeline.layout import Layout, atomic_file
from hft_pipeline.partitions import (
    PipelinePartitions,
    date_key,
    parse_date_key,
    previous_day_mapping,
)
from hft_pipeline.training.assets import trained_window

METRICS_VIEW = "walk_forward"


def markdown_table(frame: pd.DataFrame, float_format: str = "{:.4f}") -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = [
        "| "
        + " | ".join(float_format.format(v) if isinstance(v, float) else str(v) for v in row)
        + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *rows])


def build_evaluation_assets(
    settings: PipelineSettings, partitions: PipelinePartitions
) -> list[dg.AssetsDefinition]:
    layout = Layout(settings.home)
    window_days = settings.training.window_days
    trading_keys = partitions.trading_days.get_partition_keys

    def model_window_before(day: dt.date, partition_key: str) -> tuple[dt.date, dt.date]:
        keys = trading_keys()
        position = keys.index(date_key(day))
        if position == 0:
            raise dg.Failure(
                f"walk_forward_metrics[{partition_key}]: no trading day before the first "
                "partition, so no model to score out of sample"
            )
        previous = parse_date_key(keys[position - 1])
        start, _ = trained_window(
            layout, partitions, previous, window_days, f"walk_forward_metrics[{partition_key}]"
        )
        return start, previous

    @dg.asset(
        group_name="evaluation",
        partitions_def=partitions.trading_days,
        deps=[
            "features",
            dg.AssetDep("roll30_model", partition_mapping=previous_day_mapping()),
        ],
        kinds={"duckdb", "parquet"},
    )
    def walk_forward_metrics(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """Out-of-sample accuracy, macro-F1, log-loss and IC on this day of the model trained on
        the window ending the previous trading day, beside the naive and logistic baselines."""
        day = parse_date_key(context.partition_key)
        window_start, window_end = model_window_before(day, context.partition_key)
        features, labels = load_window(None, [layout.features_file(day)], [layout.labels_file(day)])
        rows = score_day(layout.window_dir(window_start, window_end), features, labels)
        rows.insert(0, "day", day)
        rows.insert(1, "window_start", window_start)
        rows.insert(2, "window_end", window_end)
        with atomic_file(layout.metrics_file(day)) as temporary:
            rows.to_parquet(temporary, index=False)
        refresh_view(
            layout.duckdb_file, METRICS_VIEW, str(layout.home / "metrics" / "*" / "*.parquet")
        )
        by_model = rows.set_index("model")
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(layout.metrics_file(day))),
                "model_window": dg.MetadataValue.text(f"{window_start}..{window_end}"),
                "scores": dg.MetadataValue.md(markdown_table(rows.drop(columns=["day"]))),
                **{
                    f"{model}_{metric}": dg.MetadataValue.float(float(by_model.loc[model, metric]))
                    for model in by_model.index
                    for metric in ("accuracy", "macro_f1", "log_loss", "ic")
                    if pd.notna(by_model.loc[model, metric])
                },
            }
        )

    @dg.asset(group_name="evaluation", deps=[walk_forward_metrics], kinds={"parquet"})
    def walk_forward_report() -> dg.MaterializeResult:
        """Every scored day summarised per model: the walk-forward record of the pipeline."""
        files = sorted((layout.home / "metrics").glob("*/walk_forward_*.parquet"))
        if not files:
            raise dg.Failure("walk_forward_report: no walk_forward_metrics partition exists yet")
        rows = pd.concat([pd.read_parquet(path) for path in files], ignore_index=True)
        report = summarize(rows)
        with atomic_file(layout.report_file) as temporary:
            report.to_parquet(temporary, index=False)
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(layout.report_file)),
                "days": dg.MetadataValue.int(rows["day"].nunique()),
                "summary": dg.MetadataValue.md(markdown_table(report)),
            }
        )

    return [walk_forward_metrics, walk_forward_report]
