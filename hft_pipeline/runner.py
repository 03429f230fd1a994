"""Materializes every asset over a range of trading days, in dependency order, through Dagster.

This is what `hft-pipeline demo` and `hft-pipeline run` do, and what the end-to-end tests
exercise: the same runs a user would launch from the UI, recorded in the same instance.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from hft_pipeline.config import PipelineSettings
from hft_pipeline.definitions import build_definitions, build_partitions
from hft_pipeline.layout import Layout
from hft_pipeline.partitions import date_key, multi_key


@dataclass(frozen=True)
class RunPlan:
    """Which partitions of each asset a range of trading days materializes."""

    days: list[dt.date]  # ingest and features
    model_days: list[dt.date]  # windows with a full N days of history inside the range
    scored_days: list[dt.date]  # days after a model day: scored out of sample


def plan_range(settings: PipelineSettings, start: dt.date, end: dt.date) -> RunPlan:
    partitions = build_partitions(settings)
    keys = set(partitions.trading_days.get_partition_keys())
    days = [d for d in partitions.calendar.trading_days(start, end) if date_key(d) in keys]
    window = settings.training.window_days
    if len(days) < window:
        raise ValueError(
            f"{start}..{end} holds {len(days)} trading days of {settings.data.calendar}; a window "
            f"of {window} needs at least {window} (and one more to score it out of sample)"
        )
    model_days = days[window - 1 :]
    return RunPlan(days, model_days, days[window:])


def materialize_range(
    settings: PipelineSettings,
    start: dt.date,
    end: dt.date,
    instance: dg.DagsterInstance,
    echo: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Runs the whole graph over [start, end]; returns the walk-forward summary per model."""
    plan = plan_range(settings, start, end)
    defs = build_definitions(settings)
    assets = list(defs.assets or [])
    resources = dict(defs.resources or {})

    def run(asset: str, partition_key: str | None = None) -> None:
        label = f"{asset}[{partition_key}]" if partition_key else asset
        started = time.perf_counter()
        result = dg.materialize(
            assets,
            selection=[asset],
            partition_key=partition_key,
            instance=instance,
            resources=resources,
            tags={"hft/source": "hft-pipeline"},
            # Progress is echoed above; the full event log stays in the instance (the UI).
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        if not result.success:
            raise RuntimeError(f"{label} failed; see the run in the Dagster UI")
        elapsed = time.perf_counter() - started
        seconds_by_asset[asset] += elapsed
        echo(f"  materialized {label} in {elapsed:.1f} s")

    seconds_by_asset: dict[str, float] = defaultdict(float)

    for day in plan.days:
        for symbol in settings.data.symbols:
            run("slim_parquet", multi_key(day, symbol))
        run("features", date_key(day))
    for day in plan.model_days:
        run("roll30_model", date_key(day))
        run("inference_artifact", date_key(day))
    for day in plan.scored_days:
        run("walk_forward_metrics", date_key(day))
    run("walk_forward_report")
    run("production_model")
    totals = ", ".join(f"{asset} {seconds:.0f} s" for asset, seconds in seconds_by_asset.items())
    echo(f"time per asset (all partitions): {totals}")
    return pd.read_parquet(Layout(settings.home).report_file)
