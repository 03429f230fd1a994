"""One symbol's SLIM events -> the per-bar event columns of ``bars.py``, in one streaming pass.

The file is read as Arrow record batches of ``batch_rows`` rows and only the columns used
(``slim_batches.py``), the next batch decoded while this one is folded. Each batch is folded in
vectorized numpy into the aggregates of its own bars (sums, extremes, the first mid and the
last book state), a pure function of the batch and of the last book event before it, and merged
into the day's in time order. Memory is bounded by two batches plus arrays of one value per
bar, whatever the day's size, and no step sorts: SLIM rows are in ``ts_recv`` order (ties in
file order), which the ``slim_parquet`` check ``ts_recv_ordered`` guarantees and this pass
verifies.

Events: a row belongs to the session when ``open <= ts_recv < close``; its bar is ``max((ts_recv
- open - 1) // interval, 0)`` (right-closed bars; an event exactly at the open joins bar 0). A
row carries book state when the source filled any best-level field (an empty book after a clear
still has sizes 0; trade-only rows leave them all NULL), and is a trade when ``trade_sz > 0`` and
``trade_px`` is finite. An empty level (price missing or not finite, or size <= 0) is NaN in both
price and size, so that anything computed from an empty book side is undefined rather than a
number built from a placeholder.

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

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hft_pipeline.features.slim_batches import EVENT_BATCH_ROWS, ordered_batches
from hft_pipeline.partitions import Session

_SIDES = ("bid", "ask")
_BEST_LEVEL = tuple(f"{side}_{kind}_00" for side in _SIDES for kind in ("px", "sz"))
# One side's level over a run of book events: price (NaN where NULL), size (0 where the level is
# empty) and whether the level is filled; three arrays of one value per event.
_SideLevel = tuple[np.ndarray, np.ndarray, np.ndarray]
# Per order-flow level, the (bid, ask) of one book event, as arrays of one value.
_BookState = list[tuple[_SideLevel, _SideLevel]]
_FIRST, _LAST = slice(None, 1), slice(-1, None)
_AFTER_FIRST, _BEFORE_LAST = slice(1, None), slice(None, -1)
# Per-bar sums; the depths are summed over book events and divided by book_events at the end.
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


def book_columns(book_levels: int) -> list[tuple[str, str]]:
    """(price column, size column) of every kept level, bids then asks."""
    return [
        (f"{side}_px_{level:02d}", f"{side}_sz_{level:02d}")
        for side in _SIDES
        for level in range(book_levels)
    ]


@dataclass(frozen=True)
class BatchBars:
    """One batch's aggregates over its bars ``first_bar .. first_bar + span - 1``.

    ``sums``: name -> (span,) sums of the batch's events per bar (trade_count, volume,
    trade_value, buy_volume, sell_volume, book_events, ofi_flow_1, ofi_flow_multi, depth_1,
    depth_multi; the depths summed over book events). ``first_mid``, ``high_mid``, ``low_mid``:
    (span,), NaN where the batch has no mid in the bar. ``closing_bars``: the bars with a book
    event in the batch; ``closing_book``: column -> the book of their last one. ``last_book``:
    the order-flow levels of the batch's last book event (None without one), for the next batch.
    """

    first_bar: int
    sums: dict[str, np.ndarray]
    first_mid: np.ndarray
    high_mid: np.ndarray
    low_mid: np.ndarray
    closing_bars: np.ndarray
    closing_book: dict[str, np.ndarray]
    last_book: _BookState | None


class BarAccumulator:
    """Per-bar aggregates of one symbol's session, merged batch by batch in time order.

    Parameters
    ----------
    bar_count : int
        Bars of the session.
    book_levels : int
        Levels per side kept in the bar's closing book.
    ofi_levels : int
        Levels summed by ``ofi_flow_multi`` and ``ofi_depth_multi`` (at most ``book_levels``).
    """

    def __init__(self, bar_count: int, book_levels: int, ofi_levels: int) -> None:
        self.bar_count = bar_count
        self.book_fields = book_columns(book_levels)
        self.ofi_levels = ofi_levels
        self.sums = {name: np.zeros(bar_count) for name in _SUM_NAMES}
        self.first_mid = np.full(bar_count, np.nan)
        self.high_mid = np.full(bar_count, np.nan)
        self.low_mid = np.full(bar_count, np.nan)
        # The book of each bar's last book event, one array per column; NaN where empty.
        self.closing_book = {
            column: np.full(bar_count, np.nan) for pair in self.book_fields for column in pair
        }
        self.has_book = np.zeros(bar_count, dtype=bool)

    def merge(self, part: BatchBars) -> None:
        """Adds the aggregates of the next batch in time order."""
        bars = slice(part.first_bar, part.first_bar + part.first_mid.size)
        for name, values in part.sums.items():
            self.sums[name][bars] += values
        earlier = self.first_mid[bars]
        self.first_mid[bars] = np.where(np.isnan(earlier), part.first_mid, earlier)
        self.high_mid[bars] = np.fmax(self.high_mid[bars], part.high_mid)
        self.low_mid[bars] = np.fmin(self.low_mid[bars], part.low_mid)
        # A later batch's last book event of a bar replaces an earlier one's.
        for column, values in part.closing_book.items():
            self.closing_book[column][part.closing_bars] = values
        self.has_book[part.closing_bars] = True

    def columns(self) -> dict[str, np.ndarray]:
        """The per-bar event columns of ``bars.py``, float64 with NaN where NULL (counts too):
        the closing book carried forward through bars without book events."""
        bar_numbers = np.arange(self.bar_count)
        source = np.maximum.accumulate(np.where(self.has_book, bar_numbers, -1))
        carried = {
            column: np.where(source >= 0, values[np.maximum(source, 0)], np.nan)
            for column, values in self.closing_book.items()
        }
        mid = (carried["bid_px_00"] + carried["ask_px_00"]) / 2
        sums = self.sums
        with np.errstate(invalid="ignore", divide="ignore"):
            vwap = np.where(sums["volume"] > 0, sums["trade_value"] / sums["volume"], np.nan)
            book_events = np.where(sums["book_events"] > 0, sums["book_events"], np.nan)
            depth_1 = sums["depth_1"] / book_events / 2
            depth_multi = sums["depth_multi"] / book_events / (2 * self.ofi_levels)
        return {
            **carried,
            "mid": mid,
            "mid_open": np.where(np.isnan(self.first_mid), mid, self.first_mid),
            "mid_high": np.where(np.isnan(self.high_mid), mid, self.high_mid),
            "mid_low": np.where(np.isnan(self.low_mid), mid, self.low_mid),
            "vwap": vwap,
            **{name: sums[name] for name in ("trade_count", "volume", "buy_volume", "sell_volume")},
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
    """Folds every session event of the SLIM file ``path`` into ``accumulator`` and returns it.

    Raises
    ------
    ValueError
        When ``ts_recv`` goes back in time from one row to the next (``ordered_batches``).
    """
    ofi_levels = accumulator.ofi_levels
    previous_book = _empty_book_state(ofi_levels)
    # The best level decides whether a row carries book state, whatever the levels kept.
    book = [*_BEST_LEVEL, *(column for pair in accumulator.book_fields for column in pair)]
    columns = ["ts_recv", "trade_px", "trade_sz", "trade_side", *dict.fromkeys(book)]
    for batch in ordered_batches(path, session, columns, batch_rows):
        ts = batch.column("ts_recv").to_numpy()
        # Rows are in time order, so the session's rows of a batch are one slice.
        start, stop = np.searchsorted(ts, [session.open_ns, session.close_ns])
        if stop > start:
            events = batch.slice(start, stop - start)
            bars = np.maximum((ts[start:stop] - session.open_ns - 1) // interval_ns, 0)
            part = fold_batch(events, bars, previous_book, accumulator.book_fields, ofi_levels)
            accumulator.merge(part)
            previous_book = part.last_book or previous_book
    return accumulator


def fold_batch(
    events: pa.RecordBatch,
    bars: np.ndarray,
    previous_book: _BookState,
    book_fields: list[tuple[str, str]],
    ofi_levels: int,
) -> BatchBars:
    """The aggregates of ``events`` (session rows in time order, ``bars`` non-decreasing) over
    their bars; ``previous_book``: the last book event before them, for the order flow."""
    first_bar = int(bars[0])
    local = bars - first_bar
    span = int(local[-1]) + 1
    nothing = np.full(span, np.nan)
    sums = _trade_sums(events, local, span)
    is_book = _is_book(events)
    book_rows = np.flatnonzero(is_book)
    if not book_rows.size:
        return BatchBars(first_bar, sums, nothing, nothing, nothing, book_rows, {}, None)
    # A busy MBP-10 day: every row carries the book, and filtering would only copy.
    book = events if book_rows.size == len(bars) else events.filter(pa.array(is_book))
    book_bars = local[book_rows]
    flow_sums, best, last_book = _book_flow_sums(book, book_bars, span, previous_book, ofi_levels)
    last = np.flatnonzero(np.r_[book_bars[1:] != book_bars[:-1], True])
    closing = events.take(pa.array(book_rows[last]))
    return BatchBars(
        first_bar,
        sums | flow_sums,
        *_mid_extremes(*best, book_bars, span),
        closing_bars=first_bar + book_bars[last],
        closing_book={
            column: values
            for price, size in book_fields
            for column, values in zip((price, size), _level(closing, price, size), strict=True)
        },
        last_book=last_book,
    )


def _trade_sums(events: pa.RecordBatch, bars: np.ndarray, span: int) -> dict[str, np.ndarray]:
    # Rows with a trade size are a minority: select them before converting to numpy.
    sized = np.flatnonzero(_flags(events.column("trade_sz").is_valid()))
    rows = events.select(["trade_px", "trade_sz", "trade_side"]).take(pa.array(sized))
    price, size = _floats(rows, "trade_px"), _floats(rows, "trade_sz")
    is_trade = (size > 0) & np.isfinite(price)
    price, size, bars = price[is_trade], size[is_trade], bars[sized[is_trade]]
    side = rows.column("trade_side").filter(pa.array(is_trade))
    weights = {
        "trade_count": np.ones(len(bars)),
        "volume": size,
        "trade_value": price * size,
        "buy_volume": np.where(_flags(pc.equal(side, "B")), size, 0.0),
        "sell_volume": np.where(_flags(pc.equal(side, "A")), size, 0.0),
    }
    return {name: np.bincount(bars, values, minlength=span) for name, values in weights.items()}


def _book_flow_sums(
    book: pa.RecordBatch,
    bars: np.ndarray,
    span: int,
    previous_book: _BookState,
    ofi_levels: int,
) -> tuple[dict[str, np.ndarray], tuple[_SideLevel, _SideLevel], _BookState]:
    """Per-bar sums of the order-flow terms and depths of the book events ``book``; the best bid
    and ask of each event (for the mids); the order-flow levels of the last event."""
    per_event = {name: np.zeros(len(bars)) for name in ("ofi_flow_multi", "depth_multi")}
    per_event["book_events"] = np.ones(len(bars))
    last_book = []
    for level in range(ofi_levels):
        bid, ask = (_side_level(book, side, level) for side in _SIDES)
        previous_bid, previous_ask = previous_book[level]
        last_book.append((_part(bid, _LAST), _part(ask, _LAST)))
        # Each event against the one before it, the first against the previous batch's last.
        terms = np.concatenate(
            [
                _flow_terms(_part(bid, _FIRST), _part(ask, _FIRST), previous_bid, previous_ask),
                _flow_terms(
                    _part(bid, _AFTER_FIRST),
                    _part(ask, _AFTER_FIRST),
                    _part(bid, _BEFORE_LAST),
                    _part(ask, _BEFORE_LAST),
                ),
            ]
        )
        depths = bid[1] + ask[1]
        per_event["ofi_flow_multi"] += terms
        per_event["depth_multi"] += depths
        if level == 0:
            per_event |= {"ofi_flow_1": terms, "depth_1": depths}
            best = (bid, ask)
    sums = {name: np.bincount(bars, values, minlength=span) for name, values in per_event.items()}
    return sums, best, last_book


def _mid_extremes(
    best_bid: _SideLevel, best_ask: _SideLevel, bars: np.ndarray, span: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First, highest and lowest mid of each bar, (span,) each, NaN where none."""
    first, high, low = (np.full(span, np.nan) for _ in range(3))
    defined = best_bid[2] & best_ask[2]
    mid, bars = (best_bid[0][defined] + best_ask[0][defined]) / 2, bars[defined]
    if mid.size:
        starts = np.flatnonzero(np.r_[True, bars[1:] != bars[:-1]])
        first[bars[starts]] = mid[starts]
        high[bars[starts]] = np.maximum.reduceat(mid, starts)
        low[bars[starts]] = np.minimum.reduceat(mid, starts)
    return first, high, low


def _empty_book_state(ofi_levels: int) -> _BookState:
    """Before the session's first book event: every level empty, so no flow term is defined."""
    empty: _SideLevel = (np.array([np.nan]), np.array([0.0]), np.array([False]))
    return [(empty, empty)] * ofi_levels


def _floats(batch: pa.RecordBatch, column: str) -> np.ndarray:
    """A numeric column as float64, NULL as NaN."""
    return batch.column(column).to_numpy(zero_copy_only=False).astype(float, copy=False)


def _flags(values: pa.Array) -> np.ndarray:
    """A boolean column as numpy, NULL as False."""
    return pc.fill_null(values, False).to_numpy(zero_copy_only=False)


def _side_level(book: pa.RecordBatch, side: str, level: int) -> _SideLevel:
    """Price, size (0 where empty) and whether filled, of one side's level in every event."""
    return _filled_level(book, f"{side}_px_{level:02d}", f"{side}_sz_{level:02d}")


def _filled_level(batch: pa.RecordBatch, price_column: str, size_column: str) -> _SideLevel:
    price = _floats(batch, price_column)
    size = _floats(batch, size_column)
    filled = (size > 0) & np.isfinite(price)
    return price, np.where(filled, size, 0.0), filled


def _part(state: _SideLevel, events: slice) -> _SideLevel:
    """The same side and level over a slice of the events (views, not copies)."""
    return tuple(values[events] for values in state)


def _flow_terms(
    bid: _SideLevel, ask: _SideLevel, previous_bid: _SideLevel, previous_ask: _SideLevel
) -> np.ndarray:
    """e_m of each event against its previous one (module docstring); 0 where undefined."""
    (bid_px, bid_sz, bid_ok), (ask_px, ask_sz, ask_ok) = bid, ask
    (prev_bid_px, prev_bid_sz, prev_bid_ok), (prev_ask_px, prev_ask_sz, prev_ask_ok) = (
        previous_bid,
        previous_ask,
    )
    terms = (
        bid_sz * (bid_px >= prev_bid_px)
        - prev_bid_sz * (bid_px <= prev_bid_px)
        - ask_sz * (ask_px <= prev_ask_px)
        + prev_ask_sz * (ask_px >= prev_ask_px)
    )
    return np.where(bid_ok & ask_ok & prev_bid_ok & prev_ask_ok, terms, 0.0)


def _is_book(batch: pa.RecordBatch) -> np.ndarray:
    valid = [batch.column(column).is_valid() for column in _BEST_LEVEL]
    return _flags(pc.or_(pc.or_(valid[0], valid[1]), pc.or_(valid[2], valid[3])))


def _level(
    batch: pa.RecordBatch, price_column: str, size_column: str
) -> tuple[np.ndarray, np.ndarray]:
    """Price and size of one level, both NaN where the level is empty."""
    price, size, filled = _filled_level(batch, price_column, size_column)
    return np.where(filled, price, np.nan), np.where(filled, size, np.nan)
