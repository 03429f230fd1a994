"""SLIM rows -> regular time bars, in DuckDB.

Bars are right-closed and stamped at their close, built by ``ts_recv`` (knowledge time): bar i of
a session opening at ``open`` closes at ``c_i = open + (i + 1) * interval`` and holds the events
with ``ts_recv`` in ``(c_i - interval, c_i]``; an event exactly at the open joins bar 0. The grid
covers the session ``[open, close)``: every interval is emitted, with or without events, so a
symbol's bars are regular in time. When the session length is not a multiple of the interval,
the last bar is shorter and stamped at the session close. Events outside the session are ignored.

Book columns are the last book state with ``ts_recv <= c_i``, carried forward through intervals
without events; they are NULL before the session's first book event. An empty level (price
missing or not finite, or size <= 0) is NULL in both price and size, so that anything computed
from an empty book side is NULL rather than a number built from a placeholder.

Columns of the ``bars`` table, one row per (symbol, bar_index):
``symbol``, ``bar_index`` (int32), ``ts`` (int64 ns, the bar close), ``session_fraction``
(share of the session elapsed at ``ts``), ``tick_size``, ``bid_px_LL``/``ask_px_LL`` (float64)
and ``bid_sz_LL``/``ask_sz_LL`` (int64) for LL < book_levels, ``mid`` (close of the mid),
``mid_open``/``mid_high``/``mid_low`` (over the bar's book events; the carried mid when there are
none), ``vwap`` (NULL without trades), ``trade_count``, ``volume``, ``buy_volume``,
``sell_volume`` (aggressor B / A; 0 without trades).

Order-flow inputs (Cont, Kukanov & Stoikov 2014, multi-level as Xu, Cont et al.): for each book
event e and level m, against the previous book event of the symbol in the session (by ``ts_recv``,
file order on ties), ``e_m = 1{Pb >= Pb'} qb - 1{Pb <= Pb'} qb' - 1{Pa <= Pa'} qa +
1{Pa >= Pa'} qa'`` (primes: previous event). ``e_m`` is NULL for the session's first book event
and when level m is empty on either side in either state; sums skip NULL terms.
``ofi_flow_1`` = sum over the bar's book events of e_1 (lots), ``ofi_flow_multi`` = the same
summed over levels 1..OFI_LEVELS (0 when the bar has no defined term), ``ofi_depth_1`` = mean
over the bar's book events of (qb_1 + qa_1) / 2 and ``ofi_depth_multi`` = mean over them of
sum_{m<=OFI_LEVELS} (qb_m + qa_m) / (2 OFI_LEVELS), empty levels as 0; both NULL in a bar
without book events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from hft_pipeline.features.quality import bars_per_session
from hft_pipeline.features.registry import BOOK_DEPTH, OFI_LEVELS
from hft_pipeline.ingest.slim_schema import (
    BOOK_LEVELS,
    META_SYMBOL,
    META_TICK_SIZE,
    META_TRADING_DAY,
)
from hft_pipeline.partitions import Session

BARS_TABLE = "bars"
_NS_PER_SECOND = 1_000_000_000


@dataclass(frozen=True)
class SlimSource:
    """One symbol's SLIM file of the day and the tick size read from its metadata."""

    symbol: str
    path: Path
    tick_size: float


def read_slim_source(symbol: str, path: Path, session: Session) -> SlimSource:
    """Reads the tick size from a SLIM file's metadata and checks the file is the one expected.

    Parameters
    ----------
    symbol : str
        Root symbol the file is used for.
    path : Path
        The SLIM parquet file.
    session : Session
        The trading day being computed; a file whose metadata names another day is refused.

    Raises
    ------
    ValueError
        When the tick size is missing or not positive, or the metadata names another symbol
        or trading day.
    """
    metadata = {
        key.decode(): value.decode()
        for key, value in (pq.read_metadata(path).metadata or {}).items()
    }
    if META_TICK_SIZE not in metadata:
        raise ValueError(
            f"{path}: no {META_TICK_SIZE!r} in the parquet metadata; re-materialize its "
            "slim_parquet partition (the tick size converts prices to ticks)"
        )
    tick_size = float(metadata[META_TICK_SIZE])
    if not tick_size > 0:
        raise ValueError(f"{path}: tick size {metadata[META_TICK_SIZE]!r} is not positive")
    found_symbol = metadata.get(META_SYMBOL, symbol)
    found_day = metadata.get(META_TRADING_DAY, session.day.isoformat())
    if (found_symbol, found_day) != (symbol, session.day.isoformat()):
        raise ValueError(
            f"{path} holds {found_symbol} on {found_day}, but was given for {symbol} on "
            f"{session.day}; pass each symbol its own SLIM file of that trading day"
        )
    return SlimSource(symbol, path, tick_size)


def create_bars(
    connection: duckdb.DuckDBPyConnection,
    sources: Sequence[SlimSource],
    session: Session,
    bar_seconds: int,
    book_levels: int = BOOK_DEPTH,
) -> None:
    """Creates the temporary table ``bars`` (see the module docstring) in ``connection``.

    Parameters
    ----------
    connection : duckdb.DuckDBPyConnection
        Where the table is created; the caller owns it.
    sources : Sequence[SlimSource]
        One SLIM file per symbol; a file with zero rows gives bars with NULL book columns.
    session : Session
        The session whose [open, close) the bars cover.
    bar_seconds : int
        Bar interval in seconds.
    book_levels : int, default BOOK_DEPTH
        Book levels per side kept in the bars (at most the SLIM file's 10).
    """
    _check_arguments(sources, session, bar_seconds, book_levels)
    interval_ns = bar_seconds * _NS_PER_SECOND
    parameters = {
        "open_ns": session.open_ns,
        "close_ns": session.close_ns,
        "interval_ns": interval_ns,
        "bar_count": bars_per_session(session.open_ns, session.close_ns, bar_seconds),
    }
    for position, source in enumerate(sources):
        parameters |= {
            f"path_{position}": str(source.path),
            f"symbol_{position}": source.symbol,
            f"tick_{position}": source.tick_size,
        }
    connection.execute(
        _events_sql(len(sources), book_levels),
        _pick(parameters, "path", "symbol", "open", "close", "interval"),
    )
    connection.execute(_bar_activity_sql())
    connection.execute(_book_flow_sql(min(OFI_LEVELS, book_levels)))
    connection.execute(
        _bars_sql(len(sources), book_levels),
        _pick(parameters, "symbol", "tick", "open", "close", "interval", "bar_count"),
    )


def build_bars(
    slim_files: Mapping[str, Path],
    session: Session,
    bar_seconds: int,
    book_levels: int = BOOK_DEPTH,
) -> pa.Table:
    """The bars of ``slim_files`` (symbol -> SLIM path) as an Arrow table, sorted by symbol
    then bar_index; see :func:`create_bars`."""
    sources = [read_slim_source(symbol, path, session) for symbol, path in slim_files.items()]
    with duckdb.connect() as connection:
        create_bars(connection, sources, session, bar_seconds, book_levels)
        return connection.sql(
            f"SELECT * FROM {BARS_TABLE} ORDER BY symbol, bar_index"
        ).to_arrow_table()


def _check_arguments(
    sources: Sequence[SlimSource], session: Session, bar_seconds: int, book_levels: int
) -> None:
    if not sources:
        raise ValueError(f"no SLIM file given for {session.day}: nothing to build bars from")
    if not (isinstance(bar_seconds, int) and bar_seconds > 0):
        raise ValueError(f"bar_seconds must be a positive whole number, found {bar_seconds!r}")
    if not 1 <= book_levels <= BOOK_LEVELS:
        raise ValueError(f"book_levels must be in 1..{BOOK_LEVELS}, found {book_levels}")
    if session.close_ns <= session.open_ns:
        raise ValueError(
            f"session of {session.day} closes ({session.close_ns}) at or before it opens "
            f"({session.open_ns})"
        )


def _pick(parameters: dict, *prefixes: str) -> dict:
    # DuckDB refuses named parameters that a statement does not use.
    return {key: value for key, value in parameters.items() if key.startswith(prefixes)}


def _book_fields(book_levels: int) -> list[tuple[str, str]]:
    """(price column, size column) of every kept level, bids then asks."""
    return [
        (f"{side}_px_{level:02d}", f"{side}_sz_{level:02d}")
        for side in ("bid", "ask")
        for level in range(book_levels)
    ]


def _events_sql(source_count: int, book_levels: int) -> str:
    """Session events of every symbol with normalized levels, their bar and their time order."""
    fields = _book_fields(book_levels)
    raw_columns = ", ".join(f"{px} AS raw_{px}, {sz} AS raw_{sz}" for px, sz in fields)
    union = " UNION ALL ".join(
        f"SELECT $symbol_{i} AS symbol, file_row_number, ts_recv, trade_px, trade_sz, "
        f"trade_side, {raw_columns} FROM read_parquet($path_{i}, file_row_number = true)"
        for i in range(source_count)
    )
    levels = ", ".join(
        f"CASE WHEN raw_{sz} > 0 AND isfinite(raw_{px}) THEN raw_{px} END AS {px}, "
        f"CASE WHEN raw_{sz} > 0 AND isfinite(raw_{px}) THEN raw_{sz} END AS {sz}"
        for px, sz in fields
    )
    # A row carries book state when the source filled any best-level field (an empty book
    # after a clear still has sizes 0); trade-only rows leave them all NULL.
    is_book = " OR ".join(
        f"raw_{column} IS NOT NULL"
        for column in ("bid_px_00", "ask_px_00", "bid_sz_00", "ask_sz_00")
    )
    return f"""
        CREATE OR REPLACE TEMP TABLE bar_events AS
        WITH session_rows AS (
            SELECT * FROM ({union})
            WHERE ts_recv >= $open_ns::BIGINT AND ts_recv < $close_ns::BIGINT
        ), normalized AS (
            SELECT
                symbol,
                -- SLIM rows are in arrival order; file order breaks ts_recv ties.
                row_number() OVER (PARTITION BY symbol ORDER BY ts_recv, file_row_number)
                    AS event_order,
                -- Right-closed: (c - interval, c] is bar (c - open) / interval - 1.
                greatest((ts_recv - $open_ns::BIGINT - 1) // $interval_ns::BIGINT, 0)
                    AS bar_index,
                coalesce({is_book}, false) AS is_book,
                coalesce(trade_sz > 0 AND isfinite(trade_px), false) AS is_trade,
                trade_px, trade_sz, trade_side,
                {levels}
            FROM session_rows
        )
        SELECT *, (bid_px_00 + ask_px_00) / 2 AS mid FROM normalized
    """


def _bar_activity_sql() -> str:
    """What happened inside each bar that had events."""
    return """
        CREATE OR REPLACE TEMP TABLE bar_activity AS
        SELECT
            symbol,
            bar_index,
            max(event_order) FILTER (WHERE is_book) AS last_book_event,
            arg_min(mid, event_order) FILTER (WHERE mid IS NOT NULL) AS mid_open,
            max(mid) AS mid_high,
            min(mid) AS mid_low,
            sum(trade_px * trade_sz) FILTER (WHERE is_trade)
                / sum(trade_sz) FILTER (WHERE is_trade) AS vwap,
            count(*) FILTER (WHERE is_trade) AS trade_count,
            sum(trade_sz) FILTER (WHERE is_trade) AS volume,
            sum(trade_sz) FILTER (WHERE is_trade AND trade_side = 'B') AS buy_volume,
            sum(trade_sz) FILTER (WHERE is_trade AND trade_side = 'A') AS sell_volume
        FROM bar_events
        GROUP BY symbol, bar_index
    """


def _order_flow_term(level: int) -> str:
    """e_m of one book event at ``level`` against the previous book event (``prev_`` columns of
    ``lagged`` in :func:`_book_flow_sql`); see the module docstring."""
    bid_px, bid_sz = f"bid_px_{level:02d}", f"bid_sz_{level:02d}"
    ask_px, ask_sz = f"ask_px_{level:02d}", f"ask_sz_{level:02d}"
    defined = " AND ".join(
        f"{column} IS NOT NULL" for column in (bid_px, ask_px, f"prev_{bid_px}", f"prev_{ask_px}")
    )
    return (
        f"CASE WHEN {defined} THEN"
        f" (CASE WHEN {bid_px} >= prev_{bid_px} THEN {bid_sz} ELSE 0 END)"
        f" - (CASE WHEN {bid_px} <= prev_{bid_px} THEN prev_{bid_sz} ELSE 0 END)"
        f" - (CASE WHEN {ask_px} <= prev_{ask_px} THEN {ask_sz} ELSE 0 END)"
        f" + (CASE WHEN {ask_px} >= prev_{ask_px} THEN prev_{ask_sz} ELSE 0 END) END"
    )


def _book_flow_sql(levels: int) -> str:
    """Order-flow imbalance sums and average depths of each bar with book events."""
    fields = [column for pair in _book_fields(levels) for column in pair]
    lags = ", ".join(f"lag({column}) OVER book_events AS prev_{column}" for column in fields)
    terms = ", ".join(f"{_order_flow_term(level)} AS ofi_{level}" for level in range(levels))
    multi = " + ".join(f"coalesce(sum(ofi_{level}), 0)" for level in range(levels))
    depth = " + ".join(
        f"coalesce(bid_sz_{level:02d}, 0) + coalesce(ask_sz_{level:02d}, 0)"
        for level in range(levels)
    )
    return f"""
        CREATE OR REPLACE TEMP TABLE bar_book_flow AS
        WITH lagged AS (
            SELECT symbol, bar_index, {", ".join(fields)}, {lags}
            FROM bar_events
            WHERE is_book
            WINDOW book_events AS (PARTITION BY symbol ORDER BY event_order)
        ), terms AS (
            SELECT symbol, bar_index, {terms}, {depth} AS depth_multi,
                coalesce(bid_sz_00, 0) + coalesce(ask_sz_00, 0) AS depth_1
            FROM lagged
        )
        SELECT
            symbol,
            bar_index,
            coalesce(sum(ofi_0), 0)::DOUBLE AS ofi_flow_1,
            ({multi})::DOUBLE AS ofi_flow_multi,
            avg(depth_1) / 2 AS ofi_depth_1,
            avg(depth_multi) / {2 * levels} AS ofi_depth_multi
        FROM terms
        GROUP BY symbol, bar_index
    """


def _bars_sql(source_count: int, book_levels: int) -> str:
    """The regular grid of every symbol with the book carried forward."""
    symbols = ", ".join(f"($symbol_{i}, $tick_{i})" for i in range(source_count))
    book = ", ".join(f"event.{px}, event.{sz}" for px, sz in _book_fields(book_levels))
    counts = ", ".join(
        f"coalesce(grid.{column}, 0)::BIGINT AS {column}"
        for column in ("trade_count", "volume", "buy_volume", "sell_volume")
    )
    return f"""
        CREATE OR REPLACE TEMP TABLE {BARS_TABLE} AS
        WITH grid AS (
            SELECT
                symbols.symbol,
                symbols.tick_size::DOUBLE AS tick_size,
                slot.range::INTEGER AS bar_index,
                activity.* EXCLUDE (symbol, bar_index),
                -- Event order grows with time, so the running max is the last book event so far.
                max(activity.last_book_event) OVER (
                    PARTITION BY symbols.symbol ORDER BY slot.range ROWS UNBOUNDED PRECEDING
                ) AS book_event
            FROM (VALUES {symbols}) AS symbols(symbol, tick_size)
            CROSS JOIN range($bar_count::BIGINT) AS slot
            LEFT JOIN bar_activity AS activity
                ON activity.symbol = symbols.symbol AND activity.bar_index = slot.range
        ), stamped AS (
            SELECT *, least(
                $open_ns::BIGINT + (bar_index + 1) * $interval_ns::BIGINT,
                $close_ns::BIGINT
            )::BIGINT AS ts
            FROM grid
        )
        SELECT
            grid.symbol,
            grid.bar_index,
            grid.ts,
            (grid.ts - $open_ns::BIGINT)
                / ($close_ns::BIGINT - $open_ns::BIGINT) AS session_fraction,
            grid.tick_size,
            {book},
            event.mid,
            coalesce(grid.mid_open, event.mid) AS mid_open,
            coalesce(grid.mid_high, event.mid) AS mid_high,
            coalesce(grid.mid_low, event.mid) AS mid_low,
            grid.vwap,
            {counts},
            coalesce(flow.ofi_flow_1, 0) AS ofi_flow_1,
            coalesce(flow.ofi_flow_multi, 0) AS ofi_flow_multi,
            flow.ofi_depth_1,
            flow.ofi_depth_multi
        FROM stamped AS grid
        LEFT JOIN bar_events AS event
            ON event.symbol = grid.symbol AND event.event_order = grid.book_event
        LEFT JOIN bar_book_flow AS flow
            ON flow.symbol = grid.symbol AND flow.bar_index = grid.bar_index
    """
