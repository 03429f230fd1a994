"""MBO events -> MBP-10 records: hand-written order sequences, then the real ESH4/ESM4 slices
against an independent reference book."""

from __future__ import annotations

import datetime as dt
import heapq
import io
from collections import defaultdict

import numpy as np
import pytest

from hft_pipeline.ingest.dbn_layout import MBP10_DTYPE, PRICE_SCALE, UNDEF_PRICE
from hft_pipeline.ingest.decode import iter_record_chunks, read_dbn_header
from hft_pipeline.ingest.mbo_book import F_LAST, F_SNAPSHOT, F_TOB, MboBookReplay
from hft_pipeline.ingest.slim_rows import records_to_slim_table
from hft_pipeline_tests.ingest.dbn_builders import make_mbo_records, make_records, read_zstd

SLICES = "dbn-glbx-es-slices"
ESH4_LIVE = "esh4-glbx-mdp3-20231225.mbo.dbn.zst"
ESM4_SNAPSHOT_AND_LIVE = "orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst"


def book_side(record: np.void, side: str) -> list[tuple[float, int, int]]:
    """The record's non-empty levels of ``side`` (bid/ask), best first: (price, size, count)."""
    levels = record["levels"]
    return [
        (int(level[f"{side}_px"]) / PRICE_SCALE, int(level[f"{side}_sz"]), int(level[f"{side}_ct"]))
        for level in levels
        if int(level[f"{side}_px"]) != UNDEF_PRICE
    ]


def replay(
    events: list[tuple] | np.ndarray, chunk: int | None = None
) -> tuple[np.ndarray, MboBookReplay]:
    """MBP-10 records of MBO events (tuples for make_mbo_records, or records) fed in chunks."""
    books = MboBookReplay()
    records = make_mbo_records(events) if isinstance(events, list) else events
    size = chunk or max(len(records), 1)
    out = [books.apply(records[start : start + size]) for start in range(0, len(records), size)]
    return np.concatenate(out), books


def test_apply_adds_aggregate_by_price_with_counts_best_first():
    events = [
        ("A", "B", 1, 3700.00, 2),
        ("A", "B", 2, 3700.00, 3),
        ("A", "B", 3, 3699.75, 1),
        ("A", "A", 4, 3700.50, 4),
        ("A", "A", 5, 3700.25, 6),
    ]

    records, books = replay(events)

    assert records.dtype == MBP10_DTYPE
    assert len(records) == 5
    assert book_side(records[1], "bid") == [(3700.0, 5, 2)]
    assert book_side(records[-1], "bid") == [(3700.0, 5, 2), (3699.75, 1, 1)]
    assert book_side(records[-1], "ask") == [(3700.25, 6, 1), (3700.5, 4, 1)]
    assert int(records["levels"]["ask_px"][-1, 2]) == UNDEF_PRICE
    assert int(records["levels"]["ask_sz"][-1, 2]) == 0
    assert books.stats.events == 5


def test_apply_record_carries_the_event_fields():
    events = make_mbo_records([("A", "B", 1, 3700.0, 2), ("T", "A", 0, 3700.0, 1)])

    records, _ = replay(events)

    for name in ("ts_recv", "ts_event", "sequence", "price", "size", "action", "side", "flags"):
        assert records[name].tolist() == events[name].tolist(), name
    assert records["rtype"].tolist() == [0x0A, 0x0A]
    assert records["length"].tolist() == [MBP10_DTYPE.itemsize // 4] * 2


def test_apply_partial_cancel_reduces_size_full_cancel_removes_level():
    events = [
        ("A", "B", 1, 3700.00, 5),
        ("A", "B", 2, 3699.75, 1),
        ("C", "B", 1, 3700.00, 2),
        ("C", "B", 1, 3700.00, 3),
    ]

    records, _ = replay(events)

    assert book_side(records[2], "bid") == [(3700.0, 3, 1), (3699.75, 1, 1)]
    assert book_side(records[3], "bid") == [(3699.75, 1, 1)]


def test_apply_modify_moves_price_or_changes_size():
    events = [
        ("A", "A", 1, 3701.00, 2),
        ("A", "A", 2, 3701.00, 1),
        ("M", "A", 1, 3700.75, 2),  # price change: leaves 3701.00
        ("M", "A", 2, 3701.00, 4),  # size change in place
    ]

    records, _ = replay(events)

    assert book_side(records[2], "ask") == [(3700.75, 2, 1), (3701.0, 1, 1)]
    assert book_side(records[3], "ask") == [(3700.75, 2, 1), (3701.0, 4, 1)]


def test_apply_trade_and_fill_leave_the_book_until_the_cancel():
    events = [
        ("A", "A", 1, 3700.25, 3),
        ("T", "B", 0, 3700.25, 2),  # aggressor buys 2
        ("F", "A", 1, 3700.25, 2),  # resting order 1 filled 2
        ("C", "A", 1, 3700.25, 2),  # the fill leaves the book here
    ]

    records, books = replay(events)

    assert [book_side(record, "ask") for record in records] == [
        [(3700.25, 3, 1)],
        [(3700.25, 3, 1)],
        [(3700.25, 3, 1)],
        [(3700.25, 1, 1)],
    ]
    assert books.stats.unknown_orders == 0


def test_apply_clear_empties_both_sides():
    events = [("A", "B", 1, 3700.0, 1), ("A", "A", 2, 3700.25, 1), ("R", "N", 0, None, 0)]

    records, _ = replay(events)

    assert book_side(records[2], "bid") == book_side(records[2], "ask") == []


def test_apply_snapshot_replaces_the_book_without_a_clear_record():
    live = make_mbo_records([("A", "B", 1, 3700.0, 1), ("A", "B", 2, 3699.0, 1)])
    snapshot = make_mbo_records(
        [("A", "B", 1, 3700.0, 1), ("A", "A", 3, 3701.0, 2)], flags=F_SNAPSHOT
    )
    snapshot["flags"][-1] |= F_LAST
    after = make_mbo_records([("C", "B", 2, 3699.0, 1), ("A", "B", 4, 3699.5, 1)])

    records, books = replay(np.concatenate([live, snapshot, after]))

    assert book_side(records[3], "bid") == [(3700.0, 1, 1)]
    assert book_side(records[3], "ask") == [(3701.0, 2, 1)]
    # Order 2 was not in the snapshot: the book forgot it, its cancel is unknown.
    assert book_side(records[-1], "bid") == [(3700.0, 1, 1), (3699.5, 1, 1)]
    assert (books.stats.unknown_orders, books.stats.duplicate_adds) == (1, 0)


def test_apply_unknown_orders_counted_modify_added_cancel_ignored():
    events = [("C", "B", 9, 3700.0, 1), ("M", "A", 8, 3701.0, 2), ("C", "A", 8, 3701.0, 5)]

    records, books = replay(events)

    assert book_side(records[1], "ask") == [(3701.0, 2, 1)]
    assert book_side(records[2], "ask") == []
    assert books.stats.unknown_orders == 2
    assert books.stats.oversized_cancels == 1


def test_apply_more_than_ten_levels_keeps_the_ten_best_and_refills():
    adds = [("A", "B", tick, 3700.0 - tick * 0.25, tick) for tick in range(12)]
    events = [*adds, ("C", "B", 11, 3697.25, 11), ("C", "B", 0, 3700.0, 0)]

    records, _ = replay(events)

    assert [level[0] for level in book_side(records[11], "bid")] == [
        3700.0 - tick * 0.25 for tick in range(10)
    ]
    assert book_side(records[12], "bid") == book_side(records[11], "bid")  # 12th level went
    assert book_side(records[13], "bid")[-1] == (3697.5, 10, 1)  # 11th level moved up


def test_apply_top_of_book_record_replaces_its_side():
    events = make_mbo_records(
        [("A", "B", 1, 3700.0, 1), ("A", "B", 2, 3699.0, 1), ("A", "B", 0, 3698.0, 7)]
    )
    events["flags"][-1] |= F_TOB

    records, _ = replay(events)

    assert book_side(records[-1], "bid") == [(3698.0, 7, 0)]


def test_apply_instruments_have_their_own_books():
    first = make_mbo_records([("A", "B", 1, 3700.0, 1)], instrument_id=5482)
    second = make_mbo_records([("A", "B", 1, 3800.0, 2)], instrument_id=5483)

    records, _ = replay(np.concatenate([first, second]))

    assert book_side(records[0], "bid") == [(3700.0, 1, 1)]
    assert book_side(records[1], "bid") == [(3800.0, 2, 1)]


def test_apply_chunks_of_one_equal_one_chunk():
    events = [
        *[
            ("A", "B" if order % 2 else "A", order, 3700.0 + (order % 5) * 0.25, 1)
            for order in range(30)
        ],
        *[("C", "B" if order % 2 else "A", order, 0.0, 1) for order in range(0, 30, 3)],
    ]

    one_by_one, _ = replay(events, chunk=1)
    whole, _ = replay(events)

    assert one_by_one.tobytes() == whole.tobytes()


def test_apply_refuses_other_layouts():
    with pytest.raises(ValueError, match="takes MBO records"):
        MboBookReplay().apply(make_records(MBP10_DTYPE, [1, 2]))


def test_apply_output_converts_to_slim_rows():
    records, _ = replay(
        [("A", "B", 1, 3700.0, 2), ("A", "A", 2, 3700.25, 3), ("T", "A", 0, 3700.0, 1)]
    )

    table = records_to_slim_table(records, "ESH1", "ES")

    assert table.column("bid_px_00").to_pylist() == [3700.0, 3700.0, 3700.0]
    assert table.column("ask_sz_00").to_pylist() == [0, 3, 3]
    assert table.column("trade_px").to_pylist() == [None, None, 3700.0]


class ReferenceBook:
    """Databento's book rules written plainly: every level re-sorted when asked."""

    def __init__(self):
        self.orders: dict[int, tuple[str, int, int]] = {}
        self.levels = {"B": defaultdict(lambda: [0, 0]), "A": defaultdict(lambda: [0, 0])}
        self.in_snapshot = False

    def apply(self, action: str, side: str, order_id: int, price: int, size: int, flags: int):
        if flags & F_SNAPSHOT and not self.in_snapshot or action == "R":
            self.orders.clear()
            self.levels["B"].clear()
            self.levels["A"].clear()
        self.in_snapshot = bool(flags & F_SNAPSHOT) and not flags & F_LAST
        if action in "CM" and order_id in self.orders:
            old_side, old_price, old_size = self.orders.pop(order_id)
            self._level(old_side, old_price, -old_size, -1)
            if action == "C" and size < old_size:
                self.orders[order_id] = (old_side, old_price, old_size - size)
                self._level(old_side, old_price, old_size - size, 1)
        if action in "AM":
            self.orders[order_id] = (side, price, size)
            self._level(side, price, size, 1)

    def _level(self, side: str, price: int, size: int, count: int):
        level = self.levels[side][price]
        level[0] += size
        level[1] += count
        if level[1] == 0:
            del self.levels[side][price]

    def top(self, side: str) -> list[tuple[float, int, int]]:
        levels = self.levels[side]
        best = heapq.nlargest(10, levels) if side == "B" else heapq.nsmallest(10, levels)
        return [(price / PRICE_SCALE, *levels[price]) for price in best]


def decode_events(path) -> np.ndarray:
    stream = io.BytesIO(read_zstd(path))
    header = read_dbn_header(stream)
    return np.concatenate(list(iter_record_chunks(stream, header)))


@pytest.mark.parametrize(
    ("name", "crossed"),
    # ESH4's crossed events all fall in the pre-open, 22:39-23:00 UTC (see the next test).
    [(ESH4_LIVE, 891), (ESM4_SNAPSHOT_AND_LIVE, 0)],
)
def test_apply_real_slice_matches_reference_book(shared_data, name, crossed):
    events = decode_events(shared_data / SLICES / name)
    reference = ReferenceBook()

    records, books = replay(events, chunk=10_000)

    columns = [events[field].tolist() for field in ("action", "side", "order_id", "price", "size")]
    flags = events["flags"].tolist()
    for index, (action, side, order_id, price, size) in enumerate(zip(*columns, strict=True)):
        reference.apply(action.decode(), side.decode(), order_id, price, size, flags[index])
        if index % 37 == 0 or index == len(events) - 1:
            assert book_side(records[index], "bid") == reference.top("B"), index
            assert book_side(records[index], "ask") == reference.top("A"), index
    assert books.stats.unknown_orders == books.stats.duplicate_adds == 0
    assert books.stats.oversized_cancels == 0
    assert books.stats.crossed_books == crossed


def test_apply_real_esh4_session_never_crossed_after_the_open(shared_data):
    events = decode_events(shared_data / SLICES / ESH4_LIVE)
    # Christmas 2023: Globex reopened at 23:00 UTC; its pre-open book may cross.
    open_ns = int(dt.datetime(2023, 12, 25, 23, 0, 1, tzinfo=dt.UTC).timestamp()) * 10**9

    records, books = replay(events, chunk=4_096)

    live = records[(records["ts_recv"] >= open_ns) & ((records["flags"] & F_LAST) != 0)]
    best_bid, best_ask = live["levels"]["bid_px"][:, 0], live["levels"]["ask_px"][:, 0]
    assert len(live) > 40_000  # of 45,561 complete events after the open
    assert np.all(best_bid < best_ask)
    assert books.stats.crossed_books > 0  # the pre-open's crossed book is counted


def test_apply_next_day_snapshot_restarts_the_book_across_files(shared_data):
    """The 24th's file (a snapshot) then the 25th's (its own snapshot, no R, then live)."""
    first_day = decode_events(shared_data / SLICES / "esh4-glbx-mdp3-20231224.mbo.dbn.zst")
    second_day = decode_events(shared_data / SLICES / ESH4_LIVE)

    both, books = replay(np.concatenate([first_day, second_day]), chunk=8_192)
    alone, _ = replay(second_day)

    assert both[len(first_day) :]["levels"].tobytes() == alone["levels"].tobytes()
    assert books.stats.duplicate_adds == 0
