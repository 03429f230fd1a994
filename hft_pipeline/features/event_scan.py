"""One symbol's SLIM events -> the per-bar event columns of ``bars.py``, in one streaming pass.

The file's row groups are decoded and folded two at a time in worker threads
(``slim_batches.py``), each into a ``BarAccumulator`` of the bars it touches, which the caller
adds in file order into the session's. Folding is done by compiled loops (numba, ``nogil``): one
over the rows for the bar numbers and the trades, one per order-flow level, one for each bar's
closing book event. A vectorized numpy fold made some 150 passes over every batch (one per
operation and column) and was the larger half of a busy day's feature computation. Rows are
folded one at a time in file order within a row group, and the groups' sums are added in file
order, so the bars depend on the file only, not on how it is read (batches, threads). The
order-flow term of a group's first book event, whose previous book event is in the group before,
is added when the groups are. Memory is bounded by two decoded row groups plus arrays of one
value per bar, whatever the day's size, and no step sorts: SLIM rows are in ``ts_recv`` order
(ties in file order), which the ``slim_parquet`` check ``ts_recv_ordered`` guarantees and this
pass verifies. The kernels are compiled once per machine and cached beside this module
(``cache=True``); a new process loads them on its first call, about 0.4 s.

Events: a row belongs to the session when ``open <= ts_recv < close``; its bar is ``max((ts_recv
- open - 1) // interval, 0)`` (right-closed bars; an event exactly at the open joins bar 0). A
row carries book state when the source filled any best-level field (an empty book after a clear
still has sizes 0; trade-only rows leave them all NULL), and is a trade when ``trade_sz > 0`` and
``trade_px`` is finite. An empty level (price missing or not finite, or size <= 0 or missing)
is NaN in both price and size, so that anything computed from an empty book side is undefined
rather than a number built from a placeholder.

Order-flow inputs (Cont, Kukanov & Stoikov 2014, multi-level as Xu, Cont et al.): for each book
event e and level m, against the previous book event of the session, ``e_m = 1{Pb >= Pb'} qb -
1{Pb <= Pb'} qb' - 1{Pa <= Pa'} qa + 1{Pa >= Pa'} qa'`` (primes: previous event). ``e_m`` is
undefined for the session's first book event and when level m is empty on either side in either
state; sums skip undefined terms. ``ofi_flow_1`` = sum over the bar's book events of e_1 (lots),
``ofi_flow_multi`` = the same summed over levels 1..``ofi_levels`` (0 when the bar has no defined
term), ``ofi_depth_1`` = mean over the bar's book events of (qb_1 + qa_1) / 2 and
``ofi_depth_multi`` = mean over them of sum_{m<=ofi_levels} (qb_m + qa_m) / (2 ofi_levels), empty
levels as 0; both NaN in a bar without book events.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hft_pipeline.features.slim_batches import EVENT_BATCH_ROWS, fold_row_groups
from hft_pipeline.partitions import Session

_SIDES = ("bid", "ask")
_BEST_LEVEL = tuple(f"{side}_{kind}_00" for side in _SIDES for kind in ("px", "sz"))
# Rows of BarAccumulator.sums; the depths are summed over book events and divided by
# book_events at the end.
_SUM_NAMES = (
    "trade_count",
    "volume",
    "trade_value",
    "buy_volume",
    "sell_volume",
    "book_events",
    "ofi_flow_1",
    "ofi_flow_multi",
    "depth_1",
    "depth_multi",
)
(
    _TRADE_COUNT,
    _VOLUME,
    _TRADE_VALUE,
    _BUY_VOLUME,
    _SELL_VOLUME,
    _BOOK_EVENTS,
    _OFI_FLOW_1,
    _OFI_FLOW_MULTI,
    _DEPTH_1,
    _DEPTH_MULTI,
) = range(len(_SUM_NAMES))
# Rows of BarAccumulator.mids.
_FIRST_MID, _HIGH_MID, _LOW_MID = range(3)
# What BarAccumulator keeps of one order-flow level's last book event; a side's size is 0 where
# it is empty, so a size > 0 says the side is filled.
_LEVEL_STATE = ("bid_price", "bid_size", "ask_price", "ask_size")


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
        self.sums = np.zeros((len(_SUM_NAMES), bar_count))
        # First, highest and lowest mid of each bar's book events; NaN where none.
        self.mids = np.full((3, bar_count), np.nan)
        # The book of each bar's last book event, one row per level (bids then asks); NaN
        # where the level is empty.
        self.closing_prices = np.full((len(self.book_fields), bar_count), np.nan)
        self.closing_sizes = np.full((len(self.book_fields), bar_count), np.nan)
        self.has_book = np.zeros(bar_count, dtype=bool)
        # Per order-flow level, the last book event folded or added (``_LEVEL_STATE``), against
        # which the next one's terms are taken. Before the first, every level is empty in
        # a session's accumulator, and unknown (NaN) in a row group's: its first book event's
        # terms wait in ``first_levels`` (and its bar in ``first_book_bar``) for ``add``.
        self.previous_levels = np.zeros((ofi_levels, len(_LEVEL_STATE)))
        self.first_levels = np.full((ofi_levels, len(_LEVEL_STATE)), np.nan)
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
        bars = _fold_trades(
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
            _fold_level_flow(
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
        closing_rows = _closing_rows(bars, is_book, self.sums)
        if closing_rows.size:
            closing_bars = bars[closing_rows]
            self.has_book[closing_bars] = True
            for level, (prices, sizes) in enumerate(levels):
                _close_level(
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
            _add_first_flow(
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
        sums = dict(zip(_SUM_NAMES, self.sums, strict=True))
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
        *(_bar_number(ts.as_py(), session.open_ns, interval_ns) for ts in (first_ts, last_ts)),
        book_levels,
        ofi_levels,
    )
    for batch in batches:
        rows.fold(batch, session.open_ns, interval_ns)
    return rows


@numba.njit(cache=True, nogil=True, inline="always")
def _bar_number(ts, open_ns, interval_ns):  # pragma: no cover - compiled
    """The session bar of an event at ``ts`` (module docstring)."""
    return max((ts - open_ns - 1) // interval_ns, 0)


@numba.njit(cache=True, nogil=True, inline="always")
def _is_filled(price, size):  # pragma: no cover - compiled
    """Whether a book level holds a quote (module docstring: else it is empty)."""
    return size > 0 and np.isfinite(price)


@numba.njit(cache=True, nogil=True, inline="always")
def _level_state(values):  # pragma: no cover - compiled
    """A level's state (``_LEVEL_STATE``) kept in an array, as a tuple."""
    return (values[0], values[1], values[2], values[3])


@numba.njit(cache=True, nogil=True, inline="always")
def _flow_term(state, last):  # pragma: no cover - compiled
    """One level's order-flow term e_m of a book event in ``state`` against ``last``, that
    level's state at the book event before (``_LEVEL_STATE``); 0 where undefined (module
    docstring)."""
    bid_price, bid_size, ask_price, ask_size = state
    last_bid_price, last_bid_size, last_ask_price, last_ask_size = last
    if not (bid_size > 0 and ask_size > 0 and last_bid_size > 0 and last_ask_size > 0):
        return 0.0
    return (
        bid_size * (bid_price >= last_bid_price)
        - last_bid_size * (bid_price <= last_bid_price)
        - ask_size * (ask_price <= last_ask_price)
        + last_ask_size * (ask_price >= last_ask_price)
    )


@numba.njit(cache=True, nogil=True)
def _fold_trades(
    ts, open_ns, interval_ns, first_bar, prices, sizes, side_codes, buyer, seller, sums
):  # pragma: no cover - compiled; covered through build_bars by the bar tests
    """Adds each trade to its bar's trade sums (aggressor volume by the dictionary codes of
    "B" and "A", -1 where absent); returns the bar of every row, counted from ``first_bar``."""
    bars = np.empty(ts.size, dtype=np.int64)
    for row in range(ts.size):
        bar = _bar_number(ts[row], open_ns, interval_ns) - first_bar
        bars[row] = bar
        size, price = sizes[row], prices[row]
        if size > 0 and np.isfinite(price):
            sums[_TRADE_COUNT, bar] += 1.0
            sums[_VOLUME, bar] += size
            sums[_TRADE_VALUE, bar] += price * size
            if side_codes[row] == buyer:
                sums[_BUY_VOLUME, bar] += size
            elif side_codes[row] == seller:
                sums[_SELL_VOLUME, bar] += size
    return bars


@numba.njit(cache=True, nogil=True)
def _fold_level_flow(
    bars,
    is_book,
    bid_prices,
    bid_sizes,
    ask_prices,
    ask_sizes,
    is_best,
    previous,
    first,
    sums,
    mids,
):  # pragma: no cover - compiled
    """Adds one level's order-flow term and depth of each book event to its bar (and, for the
    best level, the mid extremes), against ``previous``, that level's last book event before
    these rows, which it leaves at their last one. Where ``previous`` is unknown (NaN), the
    first book event's state goes to ``first`` instead of a term (``_add_first_flow``)."""
    last = _level_state(previous)
    unknown = np.isnan(last[1])
    for row in range(bars.size):
        if not is_book[row]:
            continue
        bar = bars[row]
        bid_price, ask_price = bid_prices[row], ask_prices[row]
        bid_filled = _is_filled(bid_price, bid_sizes[row])
        ask_filled = _is_filled(ask_price, ask_sizes[row])
        bid_size = float(bid_sizes[row]) if bid_filled else 0.0
        ask_size = float(ask_sizes[row]) if ask_filled else 0.0
        state = (bid_price, bid_size, ask_price, ask_size)
        term = 0.0
        if unknown:
            first[:] = state
            unknown = False
        else:
            term = _flow_term(state, last)
        sums[_OFI_FLOW_MULTI, bar] += term
        sums[_DEPTH_MULTI, bar] += bid_size + ask_size
        if is_best:
            sums[_OFI_FLOW_1, bar] += term
            sums[_DEPTH_1, bar] += bid_size + ask_size
            if bid_filled and ask_filled:
                mid = (bid_price + ask_price) / 2
                if np.isnan(mids[_FIRST_MID, bar]):
                    mids[_FIRST_MID, bar] = mid
                if not mid <= mids[_HIGH_MID, bar]:
                    mids[_HIGH_MID, bar] = mid
                if not mid >= mids[_LOW_MID, bar]:
                    mids[_LOW_MID, bar] = mid
        last = state
    previous[:] = last


@numba.njit(cache=True, nogil=True)
def _add_first_flow(previous_levels, first_levels, sums, bar):  # pragma: no cover - compiled
    """Adds the order-flow terms of a row group's first book event (``first_levels``, one state
    per level) against ``previous_levels``, the book event before it, to ``bar``."""
    for level in range(first_levels.shape[0]):
        term = _flow_term(_level_state(first_levels[level]), _level_state(previous_levels[level]))
        sums[_OFI_FLOW_MULTI, bar] += term
        if level == 0:
            sums[_OFI_FLOW_1, bar] += term


@numba.njit(cache=True, nogil=True)
def _closing_rows(bars, is_book, sums):  # pragma: no cover - compiled
    """Counts each bar's book events into ``sums``; returns the row of the last book event of
    every bar that has one, in bar order."""
    rows = np.empty(bars.size, dtype=np.int64)
    found = 0
    for row in range(bars.size):
        if not is_book[row]:
            continue
        bar = bars[row]
        sums[_BOOK_EVENTS, bar] += 1.0
        if found and bars[rows[found - 1]] == bar:
            rows[found - 1] = row
        else:
            rows[found] = row
            found += 1
    return rows[:found]


@numba.njit(cache=True, nogil=True)
def _close_level(
    closing_rows, closing_bars, prices, sizes, bar_prices, bar_sizes
):  # pragma: no cover - compiled
    """Writes one level of each ``closing_rows`` event as the closing book of its bar, NaN where
    the level is empty; a bar's later book event, in the next batch, overwrites it."""
    for index in range(closing_rows.size):
        row, bar = closing_rows[index], closing_bars[index]
        filled = _is_filled(prices[row], sizes[row])
        bar_prices[bar] = prices[row] if filled else np.nan
        bar_sizes[bar] = sizes[row] if filled else np.nan


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
