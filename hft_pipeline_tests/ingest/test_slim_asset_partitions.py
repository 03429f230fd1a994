"""The slim_parquet asset partition by partition: the degraded flag reaches the file and the
materialization, a rerun writes the same bytes, and a broken archive fails only the partitions
that read it, leaving their earlier file and check record as they were."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import numpy as np

from hft_pipeline.config import PipelineSettings
from hft_pipeline.definitions import build_definitions
from hft_pipeline.ingest.check_records import checks_file
from hft_pipeline.ingest.dbn_layout import MBP10_DTYPE
from hft_pipeline.ingest.slim import read_slim_metadata
from hft_pipeline.ingest.slim_schema import (
    BASIS_NO_PREVIOUS_VOLUME,
    BASIS_PREVIOUS_DAY_VOLUME,
    META_CONTRACT,
    META_DEGRADED,
    META_PREVIOUS_CONTRACT_VOLUMES,
)
from hft_pipeline_tests.ingest.dbn_builders import (
    dbn_stream,
    make_records,
    symbology,
    write_archive,
)

UTC_DAYS = [dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4)]
DEGRADED_DAY = dt.date(2024, 1, 4)  # condition.json of its archive says so
DAY_NS = 86_400 * 10**9
# The sessions of 2024-01-03 (UTC days 01-02 and 01-03) and 2024-01-04 (01-03 and 01-04).
FIRST, SECOND = "2024-01-03|ES", "2024-01-04|ES"
TRADE_EVERY_FOURTH = np.where(np.arange(1440) % 4 == 3, b"T", b"A")


def day_archive(root: Path, day: dt.date) -> Path:
    return root / "raw" / f"{day:%Y}" / f"{day:%Y%m%d}" / "ES" / f"glbx-mdp3-{day:%Y%m%d}.zip"


def es_bucket(root: Path) -> Path:
    """One archive per UTC day of ESH4 MBP-10, a record a minute around the clock, every
    fourth a 1-lot trade."""
    for day in UTC_DAYS:
        start_ns = (day - dt.date(1970, 1, 1)).days * DAY_NS
        times = np.arange(start_ns, start_ns + DAY_NS, 60 * 10**9, dtype=np.uint64)
        member = dbn_stream(
            make_records(MBP10_DTYPE, times, instrument_ids=17077, actions=TRADE_EVERY_FOURTH),
            "mbp-10",
            start_ns=start_ns,
            end_ns=start_ns + DAY_NS,
        )
        condition = "degraded" if day == DEGRADED_DAY else "available"
        path = day_archive(root, day)
        path.parent.mkdir(parents=True)
        write_archive(
            path,
            {f"glbx-mdp3-{day:%Y%m%d}.mbp-10.dbn.zst": member},
            symbology_json=symbology({"ESH4": 17077}, day, day + dt.timedelta(days=1)),
            condition_json=[{"date": day.isoformat(), "condition": condition}],
        )
    return root


class SlimRunner:
    """Materializes slim_parquet partitions of one bucket and home, in one Dagster instance."""

    def __init__(self, tmp_path: Path, **data: object):
        self.bucket = es_bucket(tmp_path / "bucket")
        settings = PipelineSettings.load({"HFT_HOME": str(tmp_path / "home")}).with_overrides(
            data={
                "raw_url": self.bucket.as_uri(),
                "start": dt.date(2024, 1, 2),
                "end": dt.date(2024, 1, 5),
                "symbols": ("ES",),
                **data,
            }
        )
        self.defs = build_definitions(settings)
        self.instance = dg.DagsterInstance.ephemeral()

    def materialize(self, partition: str) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            list(self.defs.assets),
            selection=["slim_parquet"],
            partition_key=partition,
            instance=self.instance,
            resources=dict(self.defs.resources),
            raise_on_error=False,
        )


def materialized_path(result: dg.ExecuteInProcessResult) -> Path:
    [materialization] = result.asset_materializations_for_node("slim_parquet")
    return Path(materialization.metadata["path"].value)


def test_slim_parquet_degraded_day_flags_file_and_materialization(tmp_path):
    runner = SlimRunner(tmp_path)

    clean, degraded = runner.materialize(FIRST), runner.materialize(SECOND)

    for result, expected in ((clean, False), (degraded, True)):
        [materialization] = result.asset_materializations_for_node("slim_parquet")
        assert result.success
        assert materialization.metadata["degraded"].value is expected
        path = materialized_path(result)
        assert json.loads(read_slim_metadata(path)[META_DEGRADED]) is expected


def test_slim_parquet_rematerialized_partition_writes_identical_bytes(tmp_path):
    runner = SlimRunner(tmp_path)
    path = materialized_path(runner.materialize(FIRST))
    first_file, first_checks = path.read_bytes(), checks_file(path).read_bytes()

    again = runner.materialize(FIRST)

    assert again.success and materialized_path(again) == path
    assert path.read_bytes() == first_file
    assert checks_file(path).read_bytes() == first_checks


def test_slim_parquet_broken_archive_fails_only_its_partitions_keeping_earlier_outputs(
    tmp_path,
):
    runner = SlimRunner(tmp_path)
    path = materialized_path(runner.materialize(FIRST))
    earlier_file, earlier_checks = path.read_bytes(), checks_file(path).read_bytes()
    broken = day_archive(runner.bucket, UTC_DAYS[0])  # read by the first session only
    broken.write_bytes(broken.read_bytes()[:-100])

    failed = runner.materialize(FIRST)
    unaffected = runner.materialize(SECOND)

    message = failed.get_step_failure_events()[0].event_specific_data.error.message
    assert not failed.success
    assert f"slim_parquet[{FIRST}]" in message
    assert f"archive {broken.name}: not a readable ZIP" in message
    assert path.read_bytes() == earlier_file
    assert checks_file(path).read_bytes() == earlier_checks
    assert unaffected.success
    assert materialized_path(unaffected).name == "live_20240104_ES_SLIM.parquet"


def bucket_files(bucket: Path) -> dict[str, bytes]:
    return {
        path.relative_to(bucket).as_posix(): path.read_bytes()
        for path in sorted(bucket.rglob("*"))
        if path.is_file()
    }


def test_slim_parquet_uploads_to_slim_prefix_only_when_asked_and_checked(tmp_path):
    default = SlimRunner(tmp_path / "default")
    uploading = SlimRunner(tmp_path / "up", upload_slim=True)
    failing = SlimRunner(tmp_path / "failing", upload_slim=True, max_gap_seconds=30)
    raw_before = bucket_files(uploading.bucket)

    default.materialize(FIRST)
    result = uploading.materialize(FIRST)
    gaps_too_long = failing.materialize(FIRST)  # records a minute apart: gaps over 30 s

    path = materialized_path(result)
    assert not (default.bucket / "slim").exists()
    uploaded = bucket_files(uploading.bucket)
    assert uploaded.pop(f"slim/2024/{path.name}") == path.read_bytes()
    assert uploaded == raw_before  # raw/ untouched, nothing else written
    assert result.asset_materializations_for_node("slim_parquet")[0].metadata["uploaded"].value
    checks = {check.check_name: check for check in gaps_too_long.get_asset_check_evaluations()}
    assert not checks["no_gaps_over_threshold"].passed
    assert not (failing.bucket / "slim").exists()


def test_slim_parquet_front_contract_from_the_previous_days_file_recorded_per_day(tmp_path):
    runner = SlimRunner(tmp_path)

    first, second = runner.materialize(FIRST), runner.materialize(SECOND)

    [first_meta, second_meta] = [
        result.asset_materializations_for_node("slim_parquet")[0].metadata
        for result in (first, second)
    ]
    second_file = read_slim_metadata(materialized_path(second))
    # The first day's previous day (2024-01-02) has no SLIM file: nothing to look back on.
    assert first_meta["front_contract_basis"].value == BASIS_NO_PREVIOUS_VOLUME
    assert second_meta["front_contract_basis"].value == BASIS_PREVIOUS_DAY_VOLUME
    assert second_meta["contract"].value == second_file[META_CONTRACT] == "ESH4"
    # What the second day read is the first day's own volume, not its own.
    assert (
        json.loads(second_file[META_PREVIOUS_CONTRACT_VOLUMES])
        == first_meta["contract_volumes"].value
    )
    assert first_meta["contract_volumes"].value["ESH4"] > 0
