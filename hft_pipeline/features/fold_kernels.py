"""The compiled loops of the event pass (``event_scan.py``): numba, ``nogil``, cached beside this
module. Each folds a batch of one row group's SLIM rows into per-bar arrays, row by row in file
order.

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

import numba
import numpy as np

# Rows of BarAccumulator.sums (``event_scan.py``); the depths are summed over book events and
# divided by book_events at the end.
SUM_NAMES = (
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
    TRADE_COUNT,
    VOLUME,
    TRADE_VALUE,
    BUY_VOLUME,
    SELL_VOLUME,
    BOOK_EVENTS,
    OFI_FLOW_1,
    OFI_FLOW_MULTI,
    DEPTH_1,
    DEPTH_MULTI,
) = range(len(SUM_NAMES))
# Rows of BarAccumulator.mids.
FIRST_MID, HIGH_MID, LOW_MID = range(3)
# What BarAccumulator keeps of one order-flow level's last book event; a side's size is 0
# where it is empty, so a size > 0 says the side is filled.
LEVEL_STATE = ("bid_price", "bid_size", "ask_price", "ask_size")


@numba.njit(cache=True, nogil=True, inline="always")
def bar_number(ts, open_ns, interval_ns):  # pragma: no cover - compiled
    """The session bar of an event at ``ts`` (module docstring)."""
    return max((ts - open_ns - 1) // interval_ns, 0)


@numba.njit(cache=True, nogil=True, inline="always")
def is_filled(price, size):  # pragma: no cover - compiled
    """Whether a book level holds a quote (module docstring: else it is empty)."""
    return size > 0 and np.isfinite(price)


@numba.njit(cache=True, nogil=True, inline="always")
def level_state(values):  # pragma: no cover - compiled
    """A level's state (``LEVEL_STATE``) kept in an array, as a tuple."""
    return (values[0], values[1], values[2], values[3])


@numba.njit(cache=True, nogil=True, inline="always")
def flow_term(state, last):  # pragma: no cover - compiled
    """One level's order-flow term e_m of a book event in ``state`` against ``last``, that
    level's state at the book event before (``LEVEL_STATE``); 0 where undefined (module
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
def fold_trades(
    ts, open_ns, interval_ns, first_bar, prices, sizes, side_codes, buyer, seller, sums
):  # pragma: no cover - compiled; covered through build_bars by the bar tests
    """Adds each trade to its bar's trade sums (aggressor volume by the dictionary codes of
    "B" and "A", -1 where absent); returns the bar of every row, counted from ``first_bar``."""
    bars = np.empty(ts.size, dtype=np.int64)
    for row in range(ts.size):
        bar = bar_number(ts[row], open_ns, interval_ns) - first_bar
        bars[row] = bar
        size, price = sizes[row], prices[row]
        if size > 0 and np.isfinite(price):
            sums[TRADE_COUNT, bar] += 1.0
            sums[VOLUME, bar] += size
            sums[TRADE_VALUE, bar] += price * size
            if side_codes[row] == buyer:
                sums[BUY_VOLUME, bar] += size
            elif side_codes[row] == seller:
                sums[SELL_VOLUME, bar] += size
    return bars


@numba.njit(cache=True, nogil=True)
def fold_level_flow(
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
    first book event's state goes to ``first`` instead of a term (``add_first_flow``)."""
    last = level_state(previous)
    unknown = np.isnan(last[1])
    for row in range(bars.size):
        if not is_book[row]:
            continue
        bar = bars[row]
        bid_price, ask_price = bid_prices[row], ask_prices[row]
        bid_filled = is_filled(bid_price, bid_sizes[row])
        ask_filled = is_filled(ask_price, ask_sizes[row])
        bid_size = float(bid_sizes[row]) if bid_filled else 0.0
        ask_size = float(ask_sizes[row]) if ask_filled else 0.0
        state = (bid_price, bid_size, ask_price, ask_size)
        term = 0.0
        if unknown:
            first[:] = state
            unknown = False
        else:
            term = flow_term(state, last)
        sums[OFI_FLOW_MULTI, bar] += term
        sums[DEPTH_MULTI, bar] += bid_size + ask_size
        if is_best:
            sums[OFI_FLOW_1, bar] += term
            sums[DEPTH_1, bar] += bid_size + ask_size
            if bid_filled and ask_filled:
                mid = (bid_price + ask_price) / 2
                if np.isnan(mids[FIRST_MID, bar]):
                    mids[FIRST_MID, bar] = mid
                if not mid <= mids[HIGH_MID, bar]:
                    mids[HIGH_MID, bar] = mid
                if not mid >= mids[LOW_MID, bar]:
                    mids[LOW_MID, bar] = mid
        last = state
    previous[:] = last


@numba.njit(cache=True, nogil=True)
def add_first_flow(previous_levels, first_levels, sums, bar):  # pragma: no cover - compiled
    """Adds the order-flow terms of a row group's first book event (``first_levels``, one state
    per level) against ``previous_levels``, the book event before it, to ``bar``."""
    for level in range(first_levels.shape[0]):
        term = flow_term(level_state(first_levels[level]), level_state(previous_levels[level]))
        sums[OFI_FLOW_MULTI, bar] += term
        if level == 0:
            sums[OFI_FLOW_1, bar] += term


@numba.njit(cache=True, nogil=True)
def closing_rows_of(bars, is_book, sums):  # pragma: no cover - compiled
    """Counts each bar's book events into ``sums``; returns the row of the last book event of
    every bar that has one, in bar order."""
    rows = np.empty(bars.size, dtype=np.int64)
    found = 0
    for row in range(bars.size):
        if not is_book[row]:
            continue
        bar = bars[row]
        sums[BOOK_EVENTS, bar] += 1.0
        if found and bars[rows[found - 1]] == bar:
            rows[found - 1] = row
        else:
            rows[found] = row
            found += 1
    return rows[:found]


@numba.njit(cache=True, nogil=True)
def close_level(
    closing_rows, closing_bars, prices, sizes, bar_prices, bar_sizes
):  # pragma: no cover - compiled
    """Writes one level of each ``closing_rows`` event as the closing book of its bar, NaN where
    the level is empty; a bar's later book event, in the next batch, overwrites it."""
    for index in range(closing_rows.size):
        row, bar = closing_rows[index], closing_bars[index]
        filled = is_filled(prices[row], sizes[row])
        bar_prices[bar] = prices[row] if filled else np.nan
        bar_sizes[bar] = sizes[row] if filled else np.nan
