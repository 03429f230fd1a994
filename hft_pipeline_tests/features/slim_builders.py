"""Builders of small SLIM files for the features tests: hand-written or seeded events."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hft_pipeline.ingest.slim_schema import (
    BOOK_LEVELS,
    META_SYMBOL,
    META_TICK_SIZE,
    META_TRADING_DAY,
    SLIM_SCHEMA,
)
from hft_pipeline.partitions import Session

NS = 1_000_000_000
DAY = dt.date(2024, 1, 2)
OPEN_NS = 1_704_150_000 * NS  # a whole second, so bar closes are round numbers
# 60 s session: twelve 5-second bars.
SHORT_SESSION = Session(DAY, OPEN_NS, OPEN_NS + 60 * NS)
ES_TICK = 0.25


# --- SLIM builders ------------------------------------------------------------------------------


def book_event(ts_recv: int, bids: list[tuple[float, int]], asks: list[tuple[float, int]]) -> dict:
    """A book update: (price, size) per level from the best, both sides."""
    row = {"ts_recv": ts_recv, "action": "A"}
    for side, levels in (("bid", bids), ("ask", asks)):
        for level in range(BOOK_LEVELS):
            price, size = levels[level] if level < len(levels) else (None, 0)
            row[f"{side}_px_{level:02d}"] = price
            row[f"{side}_sz_{level:02d}"] = size
    return row


def trade_event(ts_recv: int, price: float, size: int, side: str) -> dict:
    """A trade-only row (no book columns), aggressor side B / A / N."""
    return {
        "ts_recv": ts_recv,
        "action": "T",
        "trade_px": price,
        "trade_sz": size,
        "trade_side": side,
    }


def slim_table(rows: list[dict], symbol: str = "ES") -> pa.Table:
    """A table with the full SLIM schema; columns a row does not name are NULL."""
    columns = {}
    for field in SLIM_SCHEMA:
        values = [row.get(field.name) for row in rows]
        if field.name == "ts_event":
            values = [row["ts_recv"] for row in rows]
        elif field.name == "symbol":
            values = [symbol] * len(rows)
        elif field.name == "sequence":
            values = list(range(len(rows)))
        columns[field.name] = pa.array(values, type=field.type)
    return pa.table(columns, schema=SLIM_SCHEMA)


def write_slim(
    path: Path,
    table: pa.Table,
    symbol: str = "ES",
    tick_size: float = ES_TICK,
    day=DAY,
    row_group_size: int | None = None,
) -> Path:
    metadata = {META_TICK_SIZE: repr(tick_size), META_SYMBOL: symbol, META_TRADING_DAY: str(day)}
    pq.write_table(table.replace_schema_metadata(metadata), path, row_group_size=row_group_size)
    return path


def random_slim_table(
    seed: int,
    events: int,
    session: Session,
    symbol: str = "ES",
    tick_size: float = ES_TICK,
    levels: int = 5,
) -> pa.Table:
    """A seeded stream: a random-walk mid on the tick grid, ``levels`` levels a side, ~25%
    trades, some trade-only rows and some rows with an empty ask side."""
    rng = np.random.default_rng(seed)
    ts_recv = np.sort(rng.integers(session.open_ns, session.close_ns, events))
    best_bid_ticks = 16_000 + np.cumsum(rng.integers(-1, 2, events))
    spread_ticks = rng.integers(1, 4, events)
    is_trade = rng.random(events) < 0.25
    book_present = ~is_trade | (rng.random(events) < 0.5)
    ask_empty = rng.random(events) < 0.01
    columns: dict[str, pa.Array] = {
        "ts_recv": pa.array(ts_recv),
        "ts_event": pa.array(ts_recv),
        "sequence": pa.array(np.arange(events)),
        "symbol": pa.array([symbol] * events),
        "action": pa.array(np.where(is_trade, "T", "A")),
        "trade_px": pa.array(best_bid_ticks * tick_size, mask=~is_trade),
        "trade_sz": pa.array(rng.integers(1, 20, events), mask=~is_trade),
        "trade_side": pa.array(rng.choice(["B", "A", "N"], events, p=[0.45, 0.45, 0.1])),
    }
    no_book = ~book_present
    for level in range(levels):
        bid_size = rng.integers(1, 200, events)
        ask_size = np.where(ask_empty, 0, rng.integers(1, 200, events))
        bid_price = (best_bid_ticks - level) * tick_size
        ask_price = (best_bid_ticks + spread_ticks + level) * tick_size
        columns[f"bid_px_{level:02d}"] = pa.array(bid_price, mask=no_book)
        columns[f"bid_sz_{level:02d}"] = pa.array(bid_size, mask=no_book)
        columns[f"ask_px_{level:02d}"] = pa.array(ask_price, mask=no_book | ask_empty)
        columns[f"ask_sz_{level:02d}"] = pa.array(ask_size, mask=no_book)
    arrays = [
        columns[field.name] if field.name in columns else pa.nulls(events, field.type)
        for field in SLIM_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=SLIM_SCHEMA)


def previous_session(session: Session) -> Session:
    """The same session one day earlier, for the previous-day warm-up."""
    return Session(
        session.day - dt.timedelta(days=1),
        session.open_ns - 86_400 * NS,
        session.close_ns - 86_400 * NS,
    )


# --- bars ---------------------------------------------------------------------------------------
