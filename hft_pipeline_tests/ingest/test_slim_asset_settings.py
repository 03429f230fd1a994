"""The slim_parquet asset hands the settings' archive caps and gap threshold to the build and
its checks, and records the source facts and each check's detail in its metadata."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import numpy as np

from hft_pipeline.config import PipelineSettings
from hft_pipeline.definitions import build_definitions
from hft_pipeline.ingest.dbn_layout import MBP10_DTYPE
from hft_pipeline.ingest.quality import run_quality_checks
from hft_pipeline.partitions import TradingCalendar
from hft_pipeline_tests.ingest.dbn_builders import (
    dbn_stream,
    make_records,
    symbology,
    write_archive,
)

DAY = dt.date(2024, 1, 3)
PARTITION = "2024-01-03|ES"
# The session opens 2024-01-02 23:00 UTC; the archive's records start an hour later, at
# 00:00 UTC of its own day: a gap of 3600 s after the open.
OPENING_GAP_SECONDS = 3600


def es_bucket(root: Path) -> Path:
    """A local bucket of the session's two UTC days of ESH4 MBP-10: none on 2024-01-02 (the
    hour after the open), then a record a minute until the session close on 2024-01-03."""
    session = TradingCalendar("CME_Equity").session(DAY)
    day_start = session.open_ns + OPENING_GAP_SECONDS * 10**9
    times = np.arange(day_start, session.close_ns, 60 * 10**9, dtype=np.uint64)
    by_day = {
        DAY - dt.timedelta(days=1): make_records(MBP10_DTYPE, [], instrument_ids=17077),
        DAY: make_records(MBP10_DTYPE, times, instrument_ids=17077),
    }
    for day, records in by_day.items():
        start_ns = day_start - (DAY - day).days * 86_400 * 10**9
        member = dbn_stream(records, "mbp-10", start_ns=start_ns, end_ns=start_ns + 86_400 * 10**9)
        folder = root / "raw" / f"{day:%Y}" / f"{day:%Y%m%d}" / "ES"
        folder.mkdir(parents=True)
        write_archive(
            folder / f"glbx-mdp3-{day:%Y%m%d}.zip",
            {f"glbx-mdp3-{day:%Y%m%d}.mbp-10.dbn.zst": member},
            symbology_json=symbology({"ESH4": 17077}, day, day + dt.timedelta(days=1)),
        )
    return root


def materialize_slim(tmp_path: Path, **data: object) -> dg.ExecuteInProcessResult:
    bucket = es_bucket(tmp_path / "bucket")
    settings = PipelineSettings.load({"HFT_HOME": str(tmp_path / "home")}).with_overrides(
        data={
            "raw_url": bucket.as_uri(),
            "start": dt.date(2024, 1, 2),
            "end": dt.date(2024, 1, 5),
            "symbols": ("ES",),
            **data,
        }
    )
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        return dg.materialize(
            list(defs.assets),
            selection=["slim_parquet"],
            partition_key=PARTITION,
            instance=instance,
            resources=dict(defs.resources),
            raise_on_error=False,
        )


def test_gap_threshold_and_tick_reach_the_checks_from_settings(tmp_path):
    result = materialize_slim(tmp_path, max_gap_seconds=OPENING_GAP_SECONDS + 60)

    checks = {check.check_name: check for check in result.get_asset_check_evaluations()}
    [materialization] = result.asset_materializations_for_node("slim_parquet")
    metadata = materialization.metadata
    path = Path(metadata["path"].value)
    default_checks = {check.name: check for check in run_quality_checks(path, 0.25)}
    assert result.success
    assert checks["no_gaps_over_threshold"].passed
    assert "largest gap 3600.000 s" in checks["no_gaps_over_threshold"].metadata["detail"].value
    # The default threshold (300 s) fails the same file: the setting made the difference.
    assert not default_checks["no_gaps_over_threshold"].passed
    assert checks["prices_on_tick_grid"].passed
    assert checks["session_complete"].passed
    assert "example_ts_recv" not in checks["prices_on_tick_grid"].metadata
    assert metadata["tick_size"].value == 0.25
    assert metadata["tick_size_source"].value == "root_spec"
    assert metadata["schemas"].value == ["mbp-10"]
    assert "mbo_replay" not in metadata and "bar_interval_ns" not in metadata


def test_tiny_archive_cap_from_settings_fails_the_partition_naming_the_archive(tmp_path):
    result = materialize_slim(tmp_path, archive_max_uncompressed_gb=1e-9)

    failure = result.get_step_failure_events()[0].event_specific_data.error.message
    assert not result.success
    assert PARTITION in failure and "archive glbx-mdp3-20240102.zip" in failure
    assert "archive_max_uncompressed_gb" in failure
