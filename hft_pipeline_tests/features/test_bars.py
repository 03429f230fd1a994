"""Bars: right-closed intervals, carried book, empty intervals."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from hft_pipeline.features.bars import build_bars
from hft_pipeline.partitions import Session, TradingCalendar
from hft_pipeline_tests.features.slim_builders import (
    DAY,
    NS,
    OPEN_NS,
    SHORT_SESSION,
    book_event,
    random_slim_table,
    slim_table,
    trade_event,
    write_slim,
)


def _bars(tmp_path: Path, rows: list[dict], session: Session = SHORT_SESSION) -> dict:
    path = write_slim(tmp_path / "es.parquet", slim_table(rows))
    return build_bars({"ES": path}, session, bar_seconds=5).to_pydict()


def test_build_bars_event_at_bar_close_belongs_to_that_bar(tmp_path):
    rows = [
        book_event(OPEN_NS + 5 * NS, [(100.00, 1)], [(100.25, 1)]),
        book_event(OPEN_NS + 5 * NS + 1, [(100.25, 1)], [(100.50, 1)]),
    ]

    bars = _bars(tmp_path, rows)

    assert bars["ts"][:2] == [OPEN_NS + 5 * NS, OPEN_NS + 10 * NS]
    assert bars["mid"][:2] == [100.125, 100.375]


def test_build_bars_interval_without_events_carries_book_with_zero_volume(tmp_path):
    rows = [
        book_event(OPEN_NS + 1 * NS, [(100.00, 4)], [(100.25, 6)]),
        trade_event(OPEN_NS + 2 * NS, 100.25, 3, "B"),
        trade_event(OPEN_NS + 3 * NS, 100.00, 1, "A"),
        book_event(OPEN_NS + 17 * NS, [(100.25, 2)], [(100.50, 5)]),
    ]

    bars = _bars(tmp_path, rows)

    assert bars["bid_px_00"][:4] == [100.00, 100.00, 100.00, 100.25]
    assert bars["ask_sz_00"][:4] == [6, 6, 6, 5]
    assert bars["volume"][:4] == [4, 0, 0, 0]
    assert bars["trade_count"][:4] == [2, 0, 0, 0]
    assert (bars["buy_volume"][0], bars["sell_volume"][0]) == (3, 1)
    assert bars["vwap"][:2] == [(100.25 * 3 + 100.00) / 4, None]
    assert bars["mid_open"][1] == bars["mid_high"][1] == bars["mid_low"][1] == 100.125


def test_build_bars_bar_count_is_session_length_over_interval(tmp_path):
    session = TradingCalendar("CME_Equity").session(DAY)
    empty = write_slim(tmp_path / "es.parquet", slim_table([]))

    bars = build_bars({"ES": empty}, session, bar_seconds=5)

    assert bars.num_rows == (session.close_ns - session.open_ns) // (5 * NS) == 16_560
    assert np.all(np.diff(bars["ts"].to_numpy()) == 5 * NS)
    assert bars["ts"][0].as_py() == session.open_ns + 5 * NS
    assert bars["bar_index"].to_pylist() == list(range(16_560))


def test_build_bars_before_first_book_event_book_columns_are_null(tmp_path):
    rows = [
        trade_event(OPEN_NS + 2 * NS, 100.25, 3, "B"),
        book_event(OPEN_NS + 12 * NS, [(100.00, 4)], [(100.25, 6)]),
    ]

    bars = _bars(tmp_path, rows)

    assert bars["bid_px_00"][:3] == [None, None, 100.00]
    assert bars["mid"][:3] == [None, None, 100.125]
    assert bars["volume"][0] == 3


def test_build_bars_empty_book_side_is_null_not_zero(tmp_path):
    rows = [book_event(OPEN_NS + 1 * NS, [(100.00, 4), (99.75, 9)], [])]

    bars = _bars(tmp_path, rows)

    assert (bars["bid_px_01"][0], bars["bid_sz_01"][0]) == (99.75, 9)
    assert (bars["ask_px_00"][0], bars["ask_sz_00"][0], bars["mid"][0]) == (None, None, None)


def test_build_bars_events_outside_session_are_ignored(tmp_path):
    rows = [
        book_event(OPEN_NS - 1, [(99.00, 1)], [(99.25, 1)]),
        book_event(OPEN_NS, [(100.00, 1)], [(100.25, 1)]),
        trade_event(SHORT_SESSION.close_ns, 100.25, 7, "B"),
    ]

    bars = _bars(tmp_path, rows)

    assert bars["mid"][0] == 100.125
    assert sum(bars["volume"]) == 0


def test_build_bars_file_without_tick_size_raises_naming_file(tmp_path):
    path = tmp_path / "es.parquet"
    pq.write_table(slim_table([]), path)

    with pytest.raises(ValueError, match="es.parquet.*hft.tick_size"):
        build_bars({"ES": path}, SHORT_SESSION, bar_seconds=5)


def test_build_bars_file_of_another_day_raises(tmp_path):
    path = write_slim(tmp_path / "es.parquet", slim_table([]), day=dt.date(2024, 1, 3))

    with pytest.raises(ValueError, match="2024-01-03"):
        build_bars({"ES": path}, SHORT_SESSION, bar_seconds=5)


def test_build_bars_batches_of_one_row_and_small_row_groups_give_the_same_bars(tmp_path):
    # Events from before the open to after the close, in row groups of 50 rows: groups wholly
    # outside the session are skipped, and every batch of one row carries the book forward.
    wider = Session(DAY, OPEN_NS - 20 * NS, SHORT_SESSION.close_ns + 20 * NS)
    table = random_slim_table(7, 400, wider, levels=10)
    path = write_slim(tmp_path / "es.parquet", table, row_group_size=50)

    whole = build_bars({"ES": path}, SHORT_SESSION, bar_seconds=5)
    one_row_batches = build_bars({"ES": path}, SHORT_SESSION, bar_seconds=5, batch_rows=1)

    assert one_row_batches.equals(whole)
    assert pc.sum(whole["ofi_flow_multi"]).as_py() != 0
    assert pc.sum(whole["trade_count"]).as_py() > 0


@pytest.mark.parametrize(
    "row_group_size", [None, 1], ids=["within a row group", "across row groups"]
)
def test_build_bars_rows_out_of_ts_recv_order_raise_naming_file_row_and_check(
    tmp_path, row_group_size
):
    rows = [
        book_event(OPEN_NS + 1 * NS, [(100.00, 1)], [(100.25, 1)]),
        book_event(OPEN_NS + 3 * NS, [(100.00, 1)], [(100.25, 1)]),
        book_event(OPEN_NS + 2 * NS, [(100.25, 1)], [(100.50, 1)]),
    ]
    path = write_slim(tmp_path / "es.parquet", slim_table(rows), row_group_size=row_group_size)

    with pytest.raises(
        ValueError,
        match=f"es.parquet: ts_recv goes back from {OPEN_NS + 3 * NS} to {OPEN_NS + 2 * NS} "
        "at row 2 .*ts_recv_ordered",
    ):
        build_bars({"ES": path}, SHORT_SESSION, bar_seconds=5)


def test_build_bars_row_groups_folded_apart_add_up_to_the_bars_of_one_row_group(tmp_path):
    # Each row group is folded on its own and the folds added in file order: the order flow of
    # a group's first book event is taken against the last one of the group before, a bar's
    # first mid, extremes and closing book span groups. Prices on the tick grid add up exactly.
    table = random_slim_table(11, 600, SHORT_SESSION, levels=10)
    one_group = write_slim(tmp_path / "one.parquet", table)
    groups_of_7 = write_slim(tmp_path / "sevens.parquet", table, row_group_size=7)

    whole = build_bars({"ES": one_group}, SHORT_SESSION, bar_seconds=5)
    added = build_bars({"ES": groups_of_7}, SHORT_SESSION, bar_seconds=5)

    assert pq.ParquetFile(groups_of_7).metadata.num_row_groups > 50
    assert added.equals(whole)
    assert pc.sum(pc.abs(whole["ofi_flow_multi"])).as_py() > 0
