"""Market-by-order events -> MBP-10 records: limit order books replayed event by event.

Each MBO event becomes one MBP-10 record (``MBP10_DTYPE``, so the MBP-10 -> SLIM conversion
applies unchanged) carrying the event's action, side, price, size, times, sequence and flags,
and the book's top 10 aggregated levels per side (price, total size, order count) AFTER the
event, as in Databento's MBP-10 derived from MBO. The ``depth`` field is left 0.

Book rules (Databento's MBO semantics, as in its order-book example):
1. ``A`` add an order; ``C`` cancel some or all of an order's size; ``M`` modify its price
   and/or size (an unknown order on ``M`` is added, since ``M`` carries the whole order);
   ``R`` clear the book.
2. ``T`` trade, ``F`` fill and ``N`` none leave the book as it is: the resting orders a trade
   fills leave it through the ``C``/``M`` events that follow.
3. A snapshot (records flagged ``F_SNAPSHOT``, until one also flagged ``F_LAST`` or a live
   record) is the whole book: its first record clears the instrument's book, whether or not
   the snapshot opens with ``R`` (the slice of 2023-12-25 in the shared data does not).
   Databento's daily files start with one, so a session read across two UTC-day files replays
   correctly when the files are replayed in order.
4. ``F_TOB`` records (venues that publish only top of book) replace their side with one level;
   CME never sends them.
Queue priority is not kept: aggregated levels do not depend on it. Books are kept per
instrument and publisher, and carry over from one :meth:`MboBookReplay.apply` to the next.

Speed: per event the Python work is a dict lookup for the order, a dict update of the level and,
only when a level appears or goes, a bisect into the side's sorted prices. A side's top 10 is
rebuilt only when the event touched one of its 10 best prices; the other side's is reused.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass
from itertools import chain

import numpy as np

from hft_pipeline.ingest.dbn_layout import MBO_DTYPE, MBP10_DTYPE, RTYPE_MBP_10, UNDEF_PRICE

F_LAST = 128  # last record of an event (records of one event share ts_recv)
F_TOB = 64  # top-of-book record: the price level as a whole, not one order
F_SNAPSHOT = 32  # record of a book snapshot, not of a live event
LEVELS = 10
_ADD, _CANCEL, _MODIFY, _CLEAR, _BID = (ord(code) for code in "ACMRB")
_ORDER_ACTIONS = frozenset((_ADD, _CANCEL, _MODIFY))
_ROW_WIDTH = 3 * LEVELS  # one side's top: 10 prices, then 10 (size, order count) pairs
# Padding of a side with fewer than 10 levels, indexed by the number of levels present.
_NO_PRICES = [[UNDEF_PRICE] * (LEVELS - present) for present in range(LEVELS + 1)]
_NO_LEVELS = [[0, 0] * (LEVELS - present) for present in range(LEVELS + 1)]
# Fields an MBP-10 record takes unchanged from the MBO event.
_COPIED_FIELDS = (
    *("publisher_id", "instrument_id", "ts_event", "price", "size", "action", "side"),
    *("flags", "ts_recv", "ts_in_delta", "sequence"),
)


@dataclass
class ReplayStats:
    """Events replayed, and the ones the book could not take as the venue sent them."""

    events: int = 0
    unknown_orders: int = 0  # C or M naming an order not in the book (C ignored, M added)
    duplicate_adds: int = 0  # A of an order id already in the book (the old order replaced)
    oversized_cancels: int = 0  # C of more than the order's resting size (order removed)
    crossed_books: int = 0  # complete live events (F_LAST) leaving best bid >= best ask


class _Side:
    """One side's aggregated levels: ``[size, order count]`` per price, prices kept sorted."""

    __slots__ = ("is_bid", "levels", "prices", "row")

    def __init__(self, is_bid: bool):
        self.is_bid = is_bid
        self.levels: dict[int, list[int]] = {}
        self.prices: list[int] = []  # ascending, for bids and asks alike
        # Row of the chunk's top table holding this side's current top 10; -1: rebuild it.
        self.row = -1

    def change(self, price: int, size: int, count: int) -> None:
        """Add ``size`` and ``count`` (negative: remove) at ``price``; a change within the
        10 best prices marks the top for rebuilding."""
        prices = self.prices
        level = self.levels.get(price)
        if level is None:
            self.levels[price] = [size, count]
            insort(prices, price)
        elif level[1] + count > 0:
            level[0] += size
            level[1] += count
        else:
            del self.levels[price]
            del prices[bisect_left(prices, price)]
        if (
            len(prices) <= LEVELS
            or (self.is_bid and price >= prices[-LEVELS])
            or (not self.is_bid and price <= prices[LEVELS - 1])
        ):
            self.row = -1

    def replace(self, price: int, size: int) -> None:
        """Top-of-book record: the side becomes one level (none for an undefined price)."""
        self.clear()
        if price != UNDEF_PRICE:
            self.levels[price], self.prices[:] = [size, 0], [price]

    def clear(self) -> None:
        self.levels.clear()
        self.prices.clear()
        self.row = -1

    def top(self, row: list[int]) -> None:
        """Append the 10 best levels, best first and padded: 10 prices, then (size, count)
        pairs."""
        best = self.prices[: -LEVELS - 1 : -1] if self.is_bid else self.prices[:LEVELS]
        present = len(best)
        row += best
        row += _NO_PRICES[present]
        row += chain.from_iterable(map(self.levels.__getitem__, best))
        row += _NO_LEVELS[present]


class _Book:
    """One instrument's resting orders and the two sides' levels."""

    __slots__ = ("orders", "bids", "asks", "in_snapshot")

    def __init__(self) -> None:
        self.orders: dict[int, list] = {}  # order_id -> [_Side, price, size]
        self.bids, self.asks = _Side(is_bid=True), _Side(is_bid=False)
        self.in_snapshot = False

    def add(self, order_id: int, side: _Side, price: int, size: int, stats: ReplayStats) -> None:
        if order_id in self.orders:
            stats.duplicate_adds += 1
            self._remove(order_id)
        self.orders[order_id] = [side, price, size]
        side.change(price, size, 1)

    def cancel(self, order_id: int, size: int, stats: ReplayStats) -> None:
        order = self.orders.get(order_id)
        if order is None:
            stats.unknown_orders += 1
        elif size < order[2]:
            order[2] -= size
            order[0].change(order[1], -size, 0)
        else:
            stats.oversized_cancels += size > order[2]
            self._remove(order_id)

    def modify(self, order_id: int, side: _Side, price: int, size: int, stats: ReplayStats) -> None:
        order = self.orders.get(order_id)
        if order is None:
            stats.unknown_orders += 1
            self.add(order_id, side, price, size, stats)
        elif order[0] is side and order[1] == price:
            side.change(price, size - order[2], 0)
            order[2] = size
        else:
            self._remove(order_id)
            self.add(order_id, side, price, size, stats)

    def clear(self) -> None:
        self.orders.clear()
        self.bids.clear()
        self.asks.clear()

    def _remove(self, order_id: int) -> None:
        side, price, size = self.orders.pop(order_id)
        side.change(price, -size, -1)


class MboBookReplay:
    """Replays MBO events into one book per instrument (and publisher), chunk after chunk.

    Examples
    --------
    >>> replay = MboBookReplay()
    >>> for events in iter_record_chunks(stream, header):  # doctest: +SKIP
    ...     mbp10 = replay.apply(events)
    >>> replay.stats.unknown_orders  # doctest: +SKIP
    0
    """

    def __init__(self) -> None:
        self._books: dict[int, _Book] = {}
        self.stats = ReplayStats()

    def apply(self, events: np.ndarray) -> np.ndarray:
        """Apply MBO events in stream order; one MBP-10 record per event, in the same order.

        Parameters
        ----------
        events : numpy.ndarray
            ``MBO_DTYPE`` records, e.g. a chunk of :func:`decode.iter_record_chunks`; the books
            carry over from earlier calls.

        Returns
        -------
        numpy.ndarray
            ``MBP10_DTYPE`` records: the event's own fields, and each side's 10 best levels
            after it (undefined price and 0 size/count where the side has fewer levels).
        """
        if events.dtype != MBO_DTYPE:
            raise ValueError(f"MboBookReplay takes MBO records ({MBO_DTYPE}), got {events.dtype}")
        bid_tops, ask_tops, bid_rows, ask_rows = self._replay(events)
        records = np.zeros(len(events), MBP10_DTYPE)
        records["length"], records["rtype"] = MBP10_DTYPE.itemsize // 4, RTYPE_MBP_10
        for name in _COPIED_FIELDS:
            records[name] = events[name]
        levels = records["levels"]
        for side, tops, rows in (("bid", bid_tops, bid_rows), ("ask", ask_tops, ask_rows)):
            table = np.array(tops, np.int64).reshape(-1, _ROW_WIDTH)[rows]  # (events, 30)
            amounts = table[:, LEVELS:].reshape(-1, LEVELS, 2)  # (events, 10, size/count)
            levels[f"{side}_px"] = table[:, :LEVELS]
            levels[f"{side}_sz"], levels[f"{side}_ct"] = amounts[..., 0], amounts[..., 1]
        live_end = (events["flags"] & (F_LAST | F_SNAPSHOT)) == F_LAST
        best_bid, best_ask = levels["bid_px"][:, 0], levels["ask_px"][:, 0]
        crossed = (best_bid >= best_ask) & (best_bid != UNDEF_PRICE) & (best_ask != UNDEF_PRICE)
        self.stats.crossed_books += int(np.count_nonzero(crossed & live_end))
        self.stats.events += len(events)
        return records

    def _replay(self, events: np.ndarray) -> tuple[list[int], list[int], list[int], list[int]]:
        """Apply every event; the tops built (flat rows of 30) and each event's row per side."""
        books, stats = self._books, self.stats
        for book in books.values():  # rows index this chunk's tables
            book.bids.row = book.asks.row = -1
        bid_tops: list[int] = []
        ask_tops: list[int] = []
        bid_rows: list[int] = []
        ask_rows: list[int] = []
        keys = (events["instrument_id"].astype(np.uint64) << np.uint64(16)) | events["publisher_id"]
        columns = (
            keys.tolist(),
            events["action"].view(np.uint8).tolist(),
            events["side"].view(np.uint8).tolist(),
            events["order_id"].tolist(),
            events["price"].tolist(),
            events["size"].tolist(),
            events["flags"].tolist(),
        )
        for key, action, side, order_id, price, size, flags in zip(*columns, strict=True):
            book = books.get(key)
            if book is None:
                book = books[key] = _Book()
            if flags & F_SNAPSHOT:
                if not book.in_snapshot:  # a snapshot is the whole book: start afresh
                    book.clear()
                book.in_snapshot = not flags & F_LAST  # its last record ends it
            else:
                book.in_snapshot = False
            bids, asks = book.bids, book.asks
            if action == _CLEAR:
                book.clear()
            elif action not in _ORDER_ACTIONS:
                pass  # T, F, N: resting orders a trade filled leave through later C/M events
            elif flags & F_TOB:
                (bids if side == _BID else asks).replace(price, size)
            elif action == _CANCEL:
                book.cancel(order_id, size, stats)
            elif action == _ADD:
                book.add(order_id, bids if side == _BID else asks, price, size, stats)
            else:
                book.modify(order_id, bids if side == _BID else asks, price, size, stats)
            if bids.row < 0:
                bids.row = len(bid_tops) // _ROW_WIDTH
                bids.top(bid_tops)
            if asks.row < 0:
                asks.row = len(ask_tops) // _ROW_WIDTH
                asks.top(ask_tops)
            bid_rows.append(bids.row)
            ask_rows.append(asks.row)
        return bid_tops, ask_tops, bid_rows, ask_rows
