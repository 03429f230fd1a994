"""One symbol's SLIM events -> the per-bar event columns of ``bars.py``, in one streaming pass.

The file's row groups are decoded and folded two at a time in worker threads
(``slim_batches.py``), each into a ``BarAccumulator`` of the bars it touches, which the caller
adds in file order into the session's. Folding is done by the compiled loops of
``fold_kernels.py`` (which defines the events, bars and order-flow inputs): one over the rows
for the bar numbers and the trades, one per order-flow level, one for each bar's closing book
event. A vectorized numpy fold made some 150 passes over every batch (one per operation and
column) and was the larger half of a busy day's feature computation. Rows are folded one at a
time in file order within a row group, and the groups' sums are added in file order, so the bars
depend on the file only, not on how it is read (batches, threads). The order-flow term of a
group's first book event, whose previous book event is in the group before, is added when the
groups are. Memory is bounded by two decoded row groups plus arrays of one value per bar,
whatever the day's size, and no step sorts: SLIM rows are in ``ts_recv`` order (ties in file
order), which the ``slim_parquet`` check ``ts_recv_ordered`` guarantees and this pass verifies.
The kernels are compiled once per machine and cached beside their module (``cache=True``); a new
process loads them on its first call, about 0.45 s (numba's own start).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hft_pipeline.features.fold_kernels import (
    LEVEL_STATE,
    SUM_NAMES,
    add_first_flow,
    bar_number,
    close_level,
    closing_rows_of,
    fold_level_flow,
    fold_trades,
)
from hft_pipeline.features.slim_batches import EVENT_BATCH_ROWS, fold_row_groups
from hft_pipeline.partitions import Session

_SIDES = ("bid", "ask")
_BEST_LEVEL = tuple(f"{side}_{kind}_00" for side in _SIDES for kind in ("px", "sz"))


def book_columns(book_levels: int) -> list[tuple[str, str]]:
    """(price column, size column) of every kept level, bids then asks."""
    return [
        (f"{side}_px_{level:02d}", f"{side}_sz_{level:02d}")
        for side in _SIDES
        for level in range(book_levels)
    ]


class BarAccumulator:
    """Per-bar aggregates of bars ``first_bar .. first_bar + bar_count - 1`` of one symbol's
    session: folded from a row group's rows in time order (``fold``), or added up from such
    folds in file order (``add``).

    Parameters
    ----------
    bar_count : int
        Bars covered.
    book_levels : int
        Levels per side kept in the bar's closing book.
    ofi_levels : int
        Levels summed by ``ofi_flow_multi`` and ``ofi_depth_multi`` (at most ``book_levels``).
    first_bar : int, default 0
        Session bar number of the first bar covered.
    """

    def __init__(self, bar_count: int, book_levels: int, ofi_levels: int, first_bar: int = 0):
        self.bar_count = bar_count
        self.first_bar = first_bar
        self.book_levels = book_levels
        self.book_fields = book_columns(book_levels)
        self.ofi_levels = ofi_levels
        self.sums = np.zeros((len(SUM_NAMES), bar_count))
        # First, highest and lowest mid of each bar's book events; NaN where none.
        self.mids = np.full((3, bar_count), np.nan)
        # The book of each bar's last book event, one row per level (bids then asks); NaN
        # where the level is empty.
        self.closing_prices = np.full((len(self.book_fields), bar_count), np.nan)
        self.closing_sizes = np.full((len(self.book_fields), bar_count), np.nan)
        self.has_book = np.zeros(bar_count, dtype=bool)
        # Per order-flow level, the last book event folded or added (``LEVEL_STATE``), against
        # which the next one's terms are taken. Before the first, every level is empty in
        # a session's accumulator, and unknown (NaN) in a row group's: its first book event's
        # terms wait in ``first_levels`` (and its bar in ``first_book_bar``) for ``add``.
        self.previous_levels = np.zeros((ofi_levels, len(LEVEL_STATE)))
        self.first_levels = np.full((ofi_levels, len(LEVEL_STATE)), np.nan)
        self.first_book_bar = -1

    @classmethod
    def of_rows(
        cls, first_bar: int, last_bar: int, book_levels: int, ofi_levels: int
    ) -> BarAccumulator:
        """An empty accumulator of the session bars ``first_bar..last_bar`` for a row group's
        rows, whose book events before them are unknown."""
        rows = cls(last_bar - first_bar + 1, book_levels, ofi_levels, first_bar)
        rows.previous_levels[:] = np.nan
        return rows

    def fold(self, events: pa.RecordBatch, open_ns: int, interval_ns: int) -> None:
        """Adds ``events``, the next rows in time order, all in this accumulator's bars."""
        # trade_side is read dictionary-encoded (``scan_bar_events``): its codes, compared with
        # those of "B" and "A", cost a fraction of comparing strings.
        side = events.column("trade_side")
        side_codes = side.indices.to_numpy(zero_copy_only=False)
        buyer, seller = (_code_of(side.dictionary, value) for value in ("B", "A"))
        bars = fold_trades(
            events.column("ts_recv").to_numpy(),
            open_ns,
            interval_ns,
            self.first_bar,
            _prices(events.column("trade_px")),
            _sizes(events.column("trade_sz")),
            side_codes,
            buyer,
            seller,
            self.sums,
        )
        is_book = _is_book(events)
        if self.first_book_bar < 0 and is_book.any():
            self.first_book_bar = self.first_bar + int(bars[np.argmax(is_book)])
        # Prices and sizes of every kept level, bids then asks, converted once per batch.
        levels = [
            (_prices(events.column(price)), _sizes(events.column(size)))
            for price, size in self.book_fields
        ]
        # Each level's order flow depends on that level's previous state only: one pass per
        # level, every array a plain one in the compiled loop.
        for level in range(self.ofi_levels):
            bid, ask = levels[level], levels[self.book_levels + level]
            fold_level_flow(
                bars,
                is_book,
                *bid,
                *ask,
                level == 0,
                self.previous_levels[level],
                self.first_levels[level],
                self.sums,
                self.mids,
            )
        closing_rows = closing_rows_of(bars, is_book, self.sums)
        if closing_rows.size:
            closing_bars = bars[closing_rows]
            self.has_book[closing_bars] = True
            for level, (prices, sizes) in enumerate(levels):
                close_level(
                    closing_rows,
                    closing_bars,
                    prices,
                    sizes,
                    self.closing_prices[level],
                    self.closing_sizes[level],
                )

    def add(self, later: BarAccumulator) -> None:
        """Adds ``later``, the fold of the rows that follow those folded or added so far."""
        if later.first_book_bar >= 0:
            add_first_flow(
                self.previous_levels,
                later.first_levels,
                self.sums,
                later.first_book_bar - self.first_bar,
            )
            self.previous_levels[:] = later.previous_levels
        start = later.first_bar - self.first_bar
        bars = slice(start, start + later.bar_count)
        self.sums[:, bars] += later.sums
        first, high, low = self.mids[:, bars]
        later_first, later_high, later_low = later.mids
        first[:] = np.where(np.isnan(first), later_first, first)
        np.fmax(high, later_high, out=high)
        np.fmin(low, later_low, out=low)
        for closing, later_closing in (
            (self.closing_prices, later.closing_prices),
            (self.closing_sizes, later.closing_sizes),
        ):
            closing[:, bars][:, later.has_book] = later_closing[:, later.has_book]
        self.has_book[bars] |= later.has_book

    def columns(self) -> dict[str, np.ndarray]:
        """The per-bar event columns of ``bars.py``, float64 with NaN where NULL (counts too):
        the closing book carried forward through bars without book events."""
        bar_numbers = np.arange(self.bar_count)
        source = np.maximum.accumulate(np.where(self.has_book, bar_numbers, -1))
        # One gather per array (levels x bars), not one per column.
        prices, sizes = (
            values[:, np.maximum(source, 0)] for values in (self.closing_prices, self.closing_sizes)
        )
        prices[:, source < 0] = sizes[:, source < 0] = np.nan
        carried = {
            column: values
            for pair, *level in zip(self.book_fields, prices, sizes, strict=True)
            for column, values in zip(pair, level, strict=True)
        }
        mid = (carried["bid_px_00"] + carried["ask_px_00"]) / 2
        sums = dict(zip(SUM_NAMES, self.sums, strict=True))
        with np.errstate(invalid="ignore", divide="ignore"):
            vwap = np.where(sums["volume"] > 0, sums["trade_value"] / sums["volume"], np.nan)
            book_events = np.where(sums["book_events"] > 0, sums["book_events"], np.nan)
            depth_1 = sums["depth_1"] / book_events / 2
            depth_multi = sums["depth_multi"] / book_events / (2 * self.ofi_levels)
        first, high, low = self.mids
        return {
            **carried,
            "mid": mid,
            "mid_open": np.where(np.isnan(first), mid, first),
            "mid_high": np.where(np.isnan(high), mid, high),
            "mid_low": np.where(np.isnan(low), mid, low),
            "vwap": vwap,
            **{name: sums[name] for name in ("trade_count", "volume", "buy_volume", "sell_volume")},
            # Running sums in time order: the value at a bar never depends on a later one.
            "session_traded_value": np.cumsum(sums["trade_value"]),
            "session_volume": np.cumsum(sums["volume"]),
            **{name: sums[name] for name in ("ofi_flow_1", "ofi_flow_multi")},
            "ofi_depth_1": depth_1,
            "ofi_depth_multi": depth_multi,
        }


def scan_bar_events(
    path: Path,
    session: Session,
    interval_ns: int,
    accumulator: BarAccumulator,
    batch_rows: int = EVENT_BATCH_ROWS,
) -> BarAccumulator:
    """Adds every session event of the SLIM file ``path`` to ``accumulator``, a session's (first
    bar 0, every book level empty before), and returns it.

    Raises
    ------
    ValueError
        When ``ts_recv`` goes back in time from one row to the next (``fold_row_groups``).
    """
    # The best level decides whether a row carries book state, whatever the levels kept.
    book = [*_BEST_LEVEL, *(column for pair in accumulator.book_fields for column in pair)]
    columns = ["ts_recv", "trade_px", "trade_sz", "trade_side", *dict.fromkeys(book)]
    fold = partial(
        _fold_rows,
        session=session,
        interval_ns=interval_ns,
        book_levels=accumulator.book_levels,
        ofi_levels=accumulator.ofi_levels,
    )
    for rows in fold_row_groups(
        path, session, columns, fold, batch_rows, dictionaries=["trade_side"]
    ):
        if rows is not None:
            accumulator.add(rows)
    return accumulator


def _fold_rows(
    batches: list[pa.RecordBatch],
    session: Session,
    interval_ns: int,
    book_levels: int,
    ofi_levels: int,
) -> BarAccumulator | None:
    """The fold of ``batches``, a row group's rows in the session, in time order; None when
    there are none."""
    if not batches:
        return None
    first_ts, last_ts = (batches[0]["ts_recv"][0], batches[-1]["ts_recv"][-1])
    rows = BarAccumulator.of_rows(
        *(bar_number(ts.as_py(), session.open_ns, interval_ns) for ts in (first_ts, last_ts)),
        book_levels,
        ofi_levels,
    )
    for batch in batches:
        rows.fold(batch, session.open_ns, interval_ns)
    return rows


def _code_of(dictionary: pa.Array, value: str) -> int:
    """The dictionary code of ``value``, -1 when it does not occur."""
    return pc.index(dictionary, value).as_py()


def _prices(values: pa.Array) -> np.ndarray:
    """A price column as float64, NULL as NaN."""
    return values.to_numpy(zero_copy_only=False).astype(float, copy=False)


def _sizes(values: pa.Array) -> np.ndarray:
    """A size column as numpy: int64 zero-copy without NULLs, else float64 with NULL as NaN
    (which no comparison with 0 takes for a size)."""
    return values.to_numpy(zero_copy_only=False)


def _is_book(batch: pa.RecordBatch) -> np.ndarray:
    valid = [batch.column(column).is_valid() for column in _BEST_LEVEL]
    either = pc.or_(pc.or_(valid[0], valid[1]), pc.or_(valid[2], valid[3]))
    return either.to_numpy(zero_copy_only=False)
