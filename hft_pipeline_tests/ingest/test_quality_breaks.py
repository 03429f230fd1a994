"""The gap check does not count quiet time inside the session's scheduled breaks: CME equity
futures halted daily at 15:15-15:30 CT until June 2021, and no data arrives then."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hft_pipeline.ingest.quality import run_quality_checks
from hft_pipeline.ingest.slim import build_slim_day, read_slim_metadata
from hft_pipeline.ingest.slim_schema import (
    META_SESSION_BREAKS_NS,
    session_metadata,
)
from hft_pipeline.partitions import Session, TradingCalendar
from hft_pipeline_tests.ingest.dbn_builders import write_archive
from hft_pipeline_tests.ingest.quality_slim import write_quality_slim

MINUTE = 60 * 10**9
TICK = 0.25
# 2020-03-04: the break is 15:15-15:30 CST, 21:15-21:30 UTC.
SESSION_2020 = TradingCalendar("CME_Equity").session(dt.date(2020, 3, 4))
BREAK_START, BREAK_END = SESSION_2020.breaks[0]


def _slim(path: Path, session: Session, ts_recv: list[int]) -> Path:
    """A SLIM file of the session with one valid book row at each ts_recv."""
    return write_quality_slim(path, session_metadata(session), ts_recv=ts_recv)


def _every_minute_outside_the_break(session: Session) -> list[int]:
    minutes = range(0, (session.close_ns - session.open_ns) // MINUTE)
    stamps = [session.open_ns + minute * MINUTE for minute in minutes]
    return [ts for ts in stamps if not BREAK_START <= ts < BREAK_END]


def _gap_check(path: Path):
    checks = {check.name: check for check in run_quality_checks(path, TICK, max_gap_seconds=300)}
    return checks["no_gaps_over_threshold"]


def test_gap_check_2020_day_quiet_only_in_its_break_passes(tmp_path):
    path = _slim(
        tmp_path / "es.parquet", SESSION_2020, _every_minute_outside_the_break(SESSION_2020)
    )

    check = _gap_check(path)

    assert (check.passed, check.violations, check.example_ts_recv) == (True, 0, None)
    assert "largest gap 60.000 s" in check.detail
    assert "break(s) 2020-03-04T21:15:00Z to 2020-03-04T21:30:00Z" in check.detail


def test_gap_check_2020_day_ten_minute_hole_outside_its_break_fails_at_the_hole(tmp_path):
    hole_start = SESSION_2020.open_ns + 3 * 60 * MINUTE  # 2020-03-04 02:00 UTC
    ts_recv = [
        ts
        for ts in _every_minute_outside_the_break(SESSION_2020)
        if not hole_start < ts <= hole_start + 10 * MINUTE
    ]
    path = _slim(tmp_path / "es.parquet", SESSION_2020, ts_recv)

    check = _gap_check(path)

    assert (check.passed, check.violations) == (False, 1)
    assert check.example_ts_recv == hole_start + 11 * MINUTE
    assert "first offence at 2020-03-04T02:11:00Z" in check.detail
    assert "largest gap 660.000 s" in check.detail


@pytest.mark.parametrize(
    ("before", "after", "passed", "largest"),
    [(2, 2, True, "240.000"), (3, 3, False, "360.000")],  # minutes outside the break
)
def test_gap_check_gap_spanning_the_break_is_measured_without_it(
    tmp_path, before, after, passed, largest
):
    ts_recv = [
        ts
        for ts in _every_minute_outside_the_break(SESSION_2020)
        if not BREAK_START - before * MINUTE < ts < BREAK_END + after * MINUTE
    ]
    path = _slim(tmp_path / "es.parquet", SESSION_2020, ts_recv)

    check = _gap_check(path)

    assert check.passed == passed
    assert f"largest gap {largest} s" in check.detail


def test_gap_check_closing_gap_through_a_break_is_measured_without_it(tmp_path):
    # A session whose break runs to its close: data stopping at the break is not a late gap.
    session = dataclasses.replace(SESSION_2020, close_ns=BREAK_END)
    ts_recv = [ts for ts in _every_minute_outside_the_break(session) if ts < BREAK_START]
    path = _slim(tmp_path / "es.parquet", session, ts_recv)

    check = _gap_check(path)

    assert check.passed
    assert "largest gap 60.000 s" in check.detail


def test_gap_check_malformed_breaks_metadata_raises_naming_file(tmp_path):
    path = _slim(tmp_path / "odd.parquet", SESSION_2020, [SESSION_2020.open_ns])
    table = pq.read_table(path)
    metadata = {**table.schema.metadata, META_SESSION_BREAKS_NS.encode(): b"[[5, 1]]"}
    pq.write_table(table.replace_schema_metadata(metadata), path)

    with pytest.raises(ValueError, match=r"odd\.parquet: metadata hft\.session_breaks_ns"):
        run_quality_checks(path, TICK)


def test_slim_day_records_the_session_breaks_that_the_gap_check_reads(shared_data, tmp_path):
    """Four minutes of real ES data around 00:00 UTC, in a session given a break there."""
    names = [
        "futures_mbp-1_2024-07-01T23-58_2024-07-02T00-02.dbn.zst",
        "futures_trades_2024-07-01T23-58_2024-07-02T00-02.dbn.zst",
    ]
    members = {name: (shared_data / "dbn-glbx-es-slices" / name).read_bytes() for name in names}
    archive = write_archive(tmp_path / "GLBX-20240702.zip", members)
    midnight = 1_719_878_400 * 10**9  # 2024-07-02 00:00 UTC
    session = dataclasses.replace(
        TradingCalendar("CME_Equity").session(dt.date(2024, 7, 2)),
        breaks=((midnight, midnight + MINUTE),),
    )

    slim_path = build_slim_day([archive], session, "ES", tmp_path / "slim.parquet").path
    check = _gap_check(slim_path)

    assert (
        read_slim_metadata(slim_path)[META_SESSION_BREAKS_NS]
        == f"[[{midnight}, {midnight + MINUTE}]]"
    )
    assert "break(s) 2024-07-02T00:00:00Z to 2024-07-02T00:01:00Z" in check.detail
