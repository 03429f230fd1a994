"""SLIM data-quality checks: each rule on a tiny hand-made file, clean and violated."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pytest

from hft_pipeline.features.assets import checked_slim_files
from hft_pipeline.ingest.check_records import checks_file, failed_checks, write_check_record
from hft_pipeline.ingest.quality import QUALITY_CHECKS, QualityCheck, run_quality_checks
from hft_pipeline.ingest.slim import build_slim_day
from hft_pipeline.ingest.slim_schema import (
    META_SESSION_CLOSE_NS,
    META_SESSION_OPEN_NS,
    META_SOURCE_TS_RECV_REGRESSIONS,
)
from hft_pipeline.layout import Layout
from hft_pipeline.partitions import TradingCalendar
from hft_pipeline_tests.ingest.dbn_builders import write_archive
from hft_pipeline_tests.ingest.quality_slim import write_quality_slim as _slim

SECOND = 10**9
T0 = 1_704_236_400 * SECOND  # 2024-01-02 23:00 UTC
TICK = 0.25


def _check(path: Path, name: str, **kwargs) -> QualityCheck:
    return {check.name: check for check in run_quality_checks(path, TICK, **kwargs)}[name]


def _times(*seconds: float) -> list[int]:
    return [T0 + round(second * SECOND) for second in seconds]


def test_quality_checks_clean_file_passes_every_check_in_order(tmp_path):
    path = _slim(
        tmp_path / "ok.parquet",
        {META_SESSION_OPEN_NS: str(T0), META_SESSION_CLOSE_NS: str(T0 + 60 * SECOND)},
        ts_recv=_times(1, 2, 2, 50),
        bid_px_00=[100.0, 100.25, 100.0, None],
        ask_px_00=[100.25, 100.5, 100.5, 100.5],
        trade_px=[None, 100.25, None, None],
    )

    checks = run_quality_checks(path, TICK)

    assert [check.name for check in checks] == list(QUALITY_CHECKS)
    assert [check.name for check in checks if not check.passed] == []
    assert {check.rows for check in checks} == {4}


def test_session_complete_missing_day_fails(tmp_path):
    path = _slim(tmp_path / "part.parquet", ts_recv=_times(1))

    check = _check(path, "session_complete", missing_utc_days=1)

    assert (check.passed, check.violations) == (False, 1)


def test_not_empty_empty_file_fails(tmp_path):
    path = _slim(tmp_path / "empty.parquet", ts_recv=[])

    check = _check(path, "not_empty")

    assert (check.passed, check.violations, check.rows) == (False, 1, 0)


def test_crossed_and_locked_books_are_separate_checks(tmp_path):
    path = _slim(
        tmp_path / "book.parquet",
        ts_recv=_times(1, 2, 3, 4),
        bid_px_00=[100.0, 100.25, 100.5, None],
        ask_px_00=[100.25, 100.25, 100.25, 100.0],  # locked, then crossed, then one-sided
    )

    crossed, locked = _check(path, "book_not_crossed"), _check(path, "book_not_locked")

    assert (crossed.violations, crossed.example_ts_recv) == (1, _times(3)[0])
    assert (locked.violations, locked.example_ts_recv) == (1, _times(2)[0])
    assert "2024-01-02T23:00:02Z" in locked.detail


def test_prices_on_tick_grid_checks_every_level_trade_and_bar_price(tmp_path):
    nulls = [None] * 4
    path = _slim(
        tmp_path / "grid.parquet",
        ts_recv=_times(1, 2, 3, 4),
        bid_px_07=[99.0, 99.1, 99.0, 99.0],  # a deep level off the grid
        trade_px=[None, None, 100.3, None],
        close=[*nulls[:3], 100.01],
    )
    clean = _slim(tmp_path / "on_grid.parquet", ts_recv=_times(1), ask_px_09=[101.75])

    check = _check(path, "prices_on_tick_grid")

    assert (check.violations, check.example_ts_recv) == (3, _times(2)[0])
    assert _check(clean, "prices_on_tick_grid").passed


def test_ts_event_after_ts_recv_fails(tmp_path):
    path = _slim(tmp_path / "event.parquet", ts_recv=_times(1, 2), ts_event=_times(0.5, 3))

    check = _check(path, "ts_event_not_after_ts_recv")

    assert (check.violations, check.example_ts_recv) == (1, _times(2)[0])


def test_ts_recv_ordered_step_backwards_fails(tmp_path):
    path = _slim(tmp_path / "order.parquet", ts_recv=_times(5, 4, 6, 6))

    check = _check(path, "ts_recv_ordered")

    assert (check.violations, check.example_ts_recv) == (1, _times(4)[0])


@pytest.mark.parametrize(
    ("metadata", "passed", "violations"),
    [({META_SOURCE_TS_RECV_REGRESSIONS: "3"}, False, 3), ({}, True, 0)],
)
def test_source_ts_recv_monotonic_reads_builder_count(tmp_path, metadata, passed, violations):
    path = _slim(tmp_path / "source.parquet", metadata, ts_recv=_times(1))

    check = _check(path, "source_ts_recv_monotonic")

    assert (check.passed, check.violations) == (passed, violations)
    assert ("not checked" in check.detail) == (not metadata)


def test_source_ts_recv_monotonic_malformed_metadata_raises_naming_file(tmp_path):
    path = _slim(
        tmp_path / "odd.parquet", {META_SOURCE_TS_RECV_REGRESSIONS: "many"}, ts_recv=_times(1)
    )

    with pytest.raises(ValueError, match=r"odd\.parquet: metadata .* is 'many'"):
        run_quality_checks(path, TICK)


def test_no_duplicate_records_counts_rows_identical_in_every_column(tmp_path):
    path = _slim(
        tmp_path / "dup.parquet",
        ts_recv=_times(1, 2, 2, 2, 3),
        bid_sz_00=[5, 5, 5, 6, 5],  # rows 2 and 3 identical; row 4 differs in one size
    )
    clean = _slim(tmp_path / "unique.parquet", ts_recv=_times(1, 1), sequence=[1, 2])

    check = _check(path, "no_duplicate_records")

    assert (check.violations, check.example_ts_recv) == (1, _times(2)[0])
    assert _check(clean, "no_duplicate_records").passed


def test_no_gaps_over_threshold_reports_largest_gap_and_where(tmp_path):
    path = _slim(tmp_path / "gaps.parquet", ts_recv=_times(1, 2, 400, 401, 1000))
    clean = _slim(tmp_path / "busy.parquet", ts_recv=_times(1, 200, 450))

    check = _check(path, "no_gaps_over_threshold", max_gap_seconds=300)

    assert (check.violations, check.example_ts_recv) == (2, _times(400)[0])
    assert "largest gap 599.000 s, ending at the record at 2024-01-02T23:16:40Z" in check.detail
    assert _check(clean, "no_gaps_over_threshold", max_gap_seconds=300).passed


def test_no_gaps_over_threshold_counts_quiet_session_open_and_close(tmp_path):
    session = {META_SESSION_OPEN_NS: str(T0), META_SESSION_CLOSE_NS: str(T0 + 1000 * SECOND)}
    path = _slim(tmp_path / "edges.parquet", session, ts_recv=_times(400, 500))
    empty = _slim(tmp_path / "empty.parquet", session, ts_recv=[])

    check = _check(path, "no_gaps_over_threshold", max_gap_seconds=300)

    assert (check.violations, check.example_ts_recv) == (2, _times(400)[0])
    assert "largest gap 500.000 s, ending at the session close" in check.detail
    assert _check(empty, "no_gaps_over_threshold", max_gap_seconds=300).violations == 1


def test_bar_checks_high_low_around_open_close_and_volume(tmp_path):
    bars = {
        "ts_recv": _times(60, 120, 180, 240),
        "open": [100.0, 100.0, 100.0, 100.0],
        "high": [100.5, 100.25, 100.5, 100.5],  # bar 2: high below its close
        "low": [99.75, 99.75, 100.25, 99.75],  # bar 3: low above its open
        "close": [100.25, 100.5, 100.25, 100.25],
        "volume": [10, 3, 0, -1],  # bar 4: negative volume
    }
    path = _slim(tmp_path / "bars.parquet", **bars)
    clean = _slim(tmp_path / "good_bars.parquet", **{k: v[:1] for k, v in bars.items()})

    ranges, volumes = (
        _check(path, "bar_range_contains_open_close"),
        _check(path, "bar_volume_not_negative"),
    )

    assert (ranges.violations, ranges.example_ts_recv) == (2, _times(120)[0])
    assert (volumes.violations, volumes.example_ts_recv) == (1, _times(240)[0])
    assert _check(clean, "bar_range_contains_open_close").passed
    assert _check(clean, "bar_volume_not_negative").passed


def test_check_record_keeps_example_and_detail(tmp_path):
    path = _slim(tmp_path / "order.parquet", ts_recv=_times(5, 4))

    write_check_record(path, run_quality_checks(path, TICK))
    stored = json.loads(checks_file(path).read_text())["checks"]
    record = {entry["name"]: entry for entry in stored}

    assert record["ts_recv_ordered"]["example_ts_recv"] == _times(4)[0]
    assert record["ts_recv_ordered"]["detail"].startswith("first offence at 2024-01-02T23:00:04Z")
    assert failed_checks(path) == ["ts_recv_ordered"]


def test_quality_checks_not_parquet_raises_naming_file(tmp_path):
    path = tmp_path / "noise.parquet"
    path.write_bytes(b"not parquet")

    with pytest.raises(ValueError, match=r"noise\.parquet: not a readable parquet file"):
        run_quality_checks(path, TICK)


def test_quality_checks_real_databento_slice_fails_only_the_gap_check(shared_data, tmp_path):
    """Four minutes of real ES MBP-1 and trades: a sane book on the tick grid, in order, no
    duplicates; the 23-hour session around them is quiet, so the gap check fails."""
    names = [
        "futures_mbp-1_2024-07-01T23-58_2024-07-02T00-02.dbn.zst",
        "futures_trades_2024-07-01T23-58_2024-07-02T00-02.dbn.zst",
    ]
    members = {name: (shared_data / "dbn-glbx-es-slices" / name).read_bytes() for name in names}
    archive = write_archive(tmp_path / "GLBX-20240702.zip", members)
    session = TradingCalendar("CME_Equity").session(dt.date(2024, 7, 2))
    slim_path = build_slim_day([archive], session, "ES", tmp_path / "slim.parquet").path

    checks = {check.name: check for check in run_quality_checks(slim_path, TICK)}

    assert [name for name, check in checks.items() if not check.passed] == [
        "no_gaps_over_threshold"
    ]
    assert checks["no_gaps_over_threshold"].violations == 2  # from the open, to the close
    assert "ending at the session close at 2024-07-02T21:00:00Z" in (
        checks["no_gaps_over_threshold"].detail
    )


def test_features_refuses_a_day_whose_latest_slim_checks_failed(tmp_path):
    layout = Layout(tmp_path)
    day = dt.date(2024, 1, 3)
    good = _slim(layout.slim_file(day, "ES"), ts_recv=[1])
    bad = _slim(
        layout.slim_file(day, "ZN"), ts_recv=[2, 1], bid_px_00=[110.0] * 2, ask_px_00=[110.5] * 2
    )
    write_check_record(good, run_quality_checks(good, 0.25))
    write_check_record(bad, run_quality_checks(bad, 0.015625))

    with pytest.raises(
        dg.Failure,
        match=r"ZN: latest slim_parquet check\(s\) failed: \['ts_recv_ordered'\]",
    ):
        checked_slim_files(layout, day, ("ES", "ZN"), "2024-01-03")
    assert failed_checks(good) == []


def test_features_refuses_a_slim_file_without_check_record(tmp_path):
    _slim(Layout(tmp_path).slim_file(dt.date(2024, 1, 3), "ES"), ts_recv=[1])

    with pytest.raises(dg.Failure, match="has no check record"):
        checked_slim_files(Layout(tmp_path), dt.date(2024, 1, 3), ("ES",), "2024-01-03")


def test_failed_checks_record_of_earlier_bytes_refused_as_missing(tmp_path):
    """An ingest killed after renaming a new SLIM file into place but before writing its
    checks leaves the earlier file's record: it must not vouch for the new bytes."""
    path = _slim(Layout(tmp_path).slim_file(dt.date(2024, 1, 3), "ES"), ts_recv=_times(1, 2))
    write_check_record(path, run_quality_checks(path, TICK))
    _slim(path, ts_recv=_times(2, 1))  # rewritten, its checks never recorded

    with pytest.raises(FileNotFoundError, match="no check record of its current bytes"):
        failed_checks(path)
    with pytest.raises(dg.Failure, match="ES: .*no check record of its current bytes"):
        checked_slim_files(Layout(tmp_path), dt.date(2024, 1, 3), ("ES",), "2024-01-03")


def test_failed_checks_record_without_file_digest_refused(tmp_path):
    path = _slim(tmp_path / "old.parquet", ts_recv=_times(1))
    checks_file(path).write_text(json.dumps([{"name": "not_empty", "passed": True}]))

    with pytest.raises(FileNotFoundError, match="judged SHA-256 None"):
        failed_checks(path)
