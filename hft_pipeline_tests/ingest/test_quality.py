from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hft_pipeline.features.assets import checked_slim_files
from hft_pipeline.ingest.quality import failed_checks, run_quality_checks, write_check_record
from hft_pipeline.ingest.slim_schema import SLIM_SCHEMA
from hft_pipeline.layout import Layout


def _slim(path: Path, ts_recv, ts_event, bids, asks, trades=None) -> Path:
    rows = len(ts_recv)
    columns = {field.name: pa.nulls(rows, field.type) for field in SLIM_SCHEMA}
    columns.update(
        ts_recv=pa.array(ts_recv, pa.int64()),
        ts_event=pa.array(ts_event, pa.int64()),
        symbol=pa.array(["ES"] * rows),
        bid_px_00=pa.array(bids, pa.float64()),
        ask_px_00=pa.array(asks, pa.float64()),
        trade_px=pa.array(trades or [None] * rows, pa.float64()),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns, schema=SLIM_SCHEMA), path)
    return path


def _verdicts(path: Path, missing_days: int = 0) -> dict[str, int]:
    return {c.name: c.violations for c in run_quality_checks(path, 0.25, missing_days)}


def test_quality_checks_clean_file_passes_every_check(tmp_path):
    path = _slim(
        tmp_path / "ok.parquet",
        [1, 2, 2],
        [0, 1, 2],
        [100.0, 100.25, 100.0],
        [100.25, 100.5, 100.5],
        [None, 100.25, None],
    )

    assert _verdicts(path) == {
        "session_complete": 0,
        "not_empty": 0,
        "book_not_crossed": 0,
        "prices_on_tick_grid": 0,
        "ts_event_not_after_ts_recv": 0,
        "ts_recv_ordered": 0,
    }


def test_quality_checks_count_each_kind_of_violation(tmp_path):
    path = _slim(
        tmp_path / "bad.parquet",
        ts_recv=[5, 4, 6, 7],  # one step backwards
        ts_event=[5, 4, 9, 7],  # one event after its receive time
        bids=[100.0, 100.5, 100.1, 100.0],  # one crossed, one off the grid
        asks=[100.25, 100.5, 100.25, 100.25],
        trades=[None, None, None, 100.3],  # one trade off the grid
    )

    verdicts = _verdicts(path, missing_days=1)

    assert verdicts["session_complete"] == 1
    assert verdicts["ts_recv_ordered"] == 1
    assert verdicts["ts_event_not_after_ts_recv"] == 1
    assert verdicts["book_not_crossed"] == 1
    assert verdicts["prices_on_tick_grid"] == 2


def test_features_refuses_a_day_whose_latest_slim_checks_failed(tmp_path):
    import datetime as dt

    layout = Layout(tmp_path)
    day = dt.date(2024, 1, 3)
    good = _slim(layout.slim_file(day, "ES"), [1], [1], [100.0], [100.25])
    bad = _slim(layout.slim_file(day, "ZN"), [2, 1], [2, 1], [110.0] * 2, [110.015625] * 2)
    write_check_record(good, run_quality_checks(good, 0.25))
    write_check_record(bad, run_quality_checks(bad, 0.015625))

    with pytest.raises(
        dg.Failure,
        match=r"ZN: latest slim_parquet check\(s\) failed: "
        r"\['ts_recv_ordered'\]",
    ):
        checked_slim_files(layout, day, ("ES", "ZN"), "2024-01-03")
    assert failed_checks(good) == []


def test_features_refuses_a_slim_file_without_check_record(tmp_path):
    import datetime as dt

    layout = Layout(tmp_path)
    _slim(layout.slim_file(dt.date(2024, 1, 3), "ES"), [1], [1], [100.0], [100.25])

    with pytest.raises(dg.Failure, match="has no check record"):
        checked_slim_files(layout, dt.date(2024, 1, 3), ("ES",), "2024-01-03")
