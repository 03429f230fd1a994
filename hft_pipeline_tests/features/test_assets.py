"""The features asset through Dagster, and several days written in parallel processes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import multiprocessing
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq

from hft_pipeline.config import DataSettings, FeatureSettings, PipelineSettings
from hft_pipeline.features.assets import build_features_assets, view_patterns
from hft_pipeline.features.compute import META_WARMUP, compute_day, write_day
from hft_pipeline.features.store import refresh_named_views
from hft_pipeline.ingest.check_records import write_check_record
from hft_pipeline.ingest.quality import QualityCheck
from hft_pipeline.layout import Layout
from hft_pipeline.partitions import PipelinePartitions
from hft_pipeline_tests.features.slim_builders import random_slim_table, write_slim

DAYS = (dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4))
# Regular trading hours keep the sessions short (6.5 h: 780 bars of 30 s, 390 of 60 s).
DATA = DataSettings(start=DAYS[0], end=DAYS[-1], symbols=("ES",), trading_hours="rth")
FEATURES = FeatureSettings(
    bar_seconds=60,
    bar_intervals=(30, 60),
    horizon_bars=12,
    horizons_bars=(12, 24),
    warmup="previous_day",
)
VIEWS = ["features", "features_30s", "features_60s", "labels", "labels_30s", "labels_60s"]


def _settings(home: Path) -> PipelineSettings:
    return PipelineSettings(home=home, data=DATA, features=FEATURES)


def _write_slim_days(settings: PipelineSettings, partitions: PipelinePartitions) -> None:
    """A checked SLIM file per day, where the features asset looks for it."""
    layout = Layout(settings.home)
    for seed, day in enumerate(DAYS):
        session = partitions.calendar.session(day)
        path = layout.slim_file(day, "ES")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_slim(path, random_slim_table(seed, 3000, session, levels=10), day=day)
        write_check_record(path, [QualityCheck("session_complete", True, 0, 3000, "complete")])


def _view_rows(database) -> dict[str, tuple[int, int]]:
    """Rows and distinct days of every view."""
    with duckdb.connect(str(database), read_only=True) as connection:
        return {
            view: connection.execute(
                f"SELECT count(*), count(DISTINCT session_date) FROM {view}"
            ).fetchone()
            for view in VIEWS
        }


def test_features_asset_writes_every_interval_and_records_warmup_and_checks(tmp_path):
    settings = _settings(tmp_path)
    partitions = PipelinePartitions.from_settings(DATA)
    _write_slim_days(settings, partitions)
    layout = Layout(settings.home)
    assets = build_features_assets(settings, partitions)

    with dg.instance_for_test() as instance:
        results = [
            dg.materialize(assets, partition_key=f"{day}", instance=instance) for day in DAYS[:2]
        ]

    first, second = (result.asset_materializations_for_node("features")[0] for result in results)
    assert first.metadata["warmup"].value.startswith("session (first trading day")
    assert second.metadata["warmup"].value == "previous_day"
    assert second.metadata["60s_rows"].value == 390
    assert second.metadata["30s_rows"].value == 780
    shares = [f"60s_h{horizon}_share_{name}" for horizon in (12, 24) for name in ("down", "up")]
    assert set(shares) <= set(second.metadata)
    assert all(check.passed for check in results[1].get_asset_check_evaluations())
    assert {check.check_name for check in results[1].get_asset_check_evaluations()} == {
        "no_infinite_values",
        "nulls_where_allowed",
        "rows_match_session",
    }
    training_file = layout.features_file(DAYS[1])
    assert pq.read_schema(training_file).metadata[META_WARMUP.encode()] == b"previous_day"
    assert pq.read_metadata(training_file).num_rows == 390
    assert pq.read_metadata(layout.labels_file(DAYS[1], 30)).num_rows == 780
    assert _view_rows(layout.duckdb_file) == {
        "features": (780, 2),
        "labels": (780, 2),
        "features_60s": (780, 2),
        "labels_60s": (780, 2),
        "features_30s": (1560, 2),
        "labels_30s": (1560, 2),
    }


def _materialize_day(home_and_day: tuple[str, str]) -> int:
    """One partition's work in its own process: compute, write, refresh the shared views."""
    home, day_text = home_and_day
    settings = _settings(Path(home))
    partitions = PipelinePartitions.from_settings(DATA)
    layout = Layout(settings.home)
    day = dt.date.fromisoformat(day_text)
    session_settings = dataclasses.replace(FEATURES, warmup="session")
    files = {"ES": layout.slim_file(day, "ES")}
    for interval, folder in ((30, 30), (60, None)):
        features, labels = compute_day(
            files, partitions.calendar.session(day), session_settings, bar_seconds=interval
        )
        write_day(
            features, labels, layout.features_file(day, folder), layout.labels_file(day, folder)
        )
        refresh_named_views(layout.duckdb_file, view_patterns(layout, session_settings))
    return features.num_rows


def test_features_days_in_parallel_processes_share_the_views_without_lock_errors(tmp_path):
    settings = _settings(tmp_path)
    _write_slim_days(settings, PipelinePartitions.from_settings(DATA))

    context = multiprocessing.get_context("fork")
    with context.Pool(len(DAYS)) as pool:
        rows = pool.map(_materialize_day, [(str(tmp_path), f"{day}") for day in DAYS])

    assert rows == [390] * len(DAYS)
    assert _view_rows(Layout(tmp_path).duckdb_file) == {
        "features": (1170, 3),
        "labels": (1170, 3),
        "features_60s": (1170, 3),
        "labels_60s": (1170, 3),
        "features_30s": (2340, 3),
        "labels_30s": (2340, 3),
    }
