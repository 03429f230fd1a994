"""LOBSTER message + orderbook CSV pairs (https://lobsterdata.com/info/DataStructure.php) ->
SLIM rows of one NASDAQ trading day, a chunk of rows at a time.

A pair is ``<TICKER>_<yyyy-mm-dd>_<start ms>_<end ms>_message_<levels>.csv`` and the
``..._orderbook_<levels>.csv`` beside it, without header rows, row *i* of the orderbook being
the book after message *i*:

- message: time (seconds after midnight New York, decimal text), type, order id, size,
  price (USD x 10000), direction (1 buy limit order, -1 sell limit order);
- orderbook: per level ask price, ask size, bid price, bid size; an empty level has ask
  9999999999 / bid -9999999999 and size 0.

SLIM columns: ``ts_recv = ts_event`` = midnight America/New_York of the file's date plus the
message time, to the nanosecond (the text is parsed as a decimal; a time written with more than
9 decimals is rounded half-to-even to the nanosecond); ``sequence`` = the row's 1-based line
number; ``symbol = raw_symbol`` = ticker; book prices in USD (empty levels null, their sizes
0); ``action`` from the message type:

====  ==================================  ======  ====================================
type  LOBSTER event                       action  trade columns
====  ==================================  ======  ====================================
1     submission of a new limit order     A
2     partial cancellation                C
3     deletion of a limit order           C
4     execution of a visible limit order  T       price, size, aggressor side
5     execution of a hidden limit order   T       price, size, aggressor side
6     cross trade (auction)               T       price, size, side N (no aggressor)
7     trading halt / quote / resume       N
====  ==================================  ======  ====================================

The aggressor of an execution is the opposite of the executed limit order's direction: a sell
limit order (-1) is hit by a buyer (``B``), a buy limit order (1) by a seller (``A``). Hidden
orders may execute between cents (midpoint pegs, e.g. 579.405): such trade prices are kept as
they are, and the file's ``hft.trade_tick_size`` (half a cent) tells the tick-grid check of
``slim_parquet`` to hold trades to that grid; book prices stay on the cent.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from hft_pipeline.ingest import slim_schema
from hft_pipeline.ingest.databento_csv import decimal_to_int64
from hft_pipeline.ingest.decode import ByteStream
from hft_pipeline.ingest.slim_schema import SLIM_SCHEMA
from hft_pipeline.partitions import Session, TradingCalendar

__all__ = [
    "LOBSTER_TICK_SIZE",
    "LOBSTER_TRADE_TICK_SIZE",
    "LobsterError",
    "LobsterFileName",
    "LobsterPair",
    "iter_lobster_tables",
    "lobster_metadata",
    "lobster_rows_to_slim",
    "lobster_session",
    "pair_lobster_files",
    "parse_lobster_name",
]

LOBSTER_TICK_SIZE = 0.01  # NASDAQ quotes in cents
# Hidden (midpoint-pegged) orders execute halfway between two cents: trades print on a grid
# of half the quote tick, which the tick-grid check must accept for trades only.
LOBSTER_TRADE_TICK_SIZE = LOBSTER_TICK_SIZE / 2
LOBSTER_CALENDAR = "NASDAQ"  # 09:30-16:00 New York, early closes from the calendar
PRICE_DIVISOR = 10_000  # LOBSTER prices are USD x 10000
EMPTY_ASK, EMPTY_BID = 9_999_999_999, -9_999_999_999
MAX_LEVELS = slim_schema.BOOK_LEVELS
NEW_YORK = "America/New_York"
_NAME = re.compile(
    r"^(?P<ticker>[A-Za-z0-9.\-]+)_(?P<day>\d{4}-\d{2}-\d{2})_(?P<start_ms>\d+)_(?P<end_ms>\d+)_"
    r"(?P<kind>message|orderbook)_(?P<levels>\d+)\.csv$"
)
_MESSAGE_COLUMNS = ["time", "type", "order_id", "size", "price", "direction"]
# Seconds are read with room for stray digits (one sample row has 12 decimals), then rounded.
_TIME_TEXT = pa.decimal128(38, 18)
_NS_DECIMALS = 9
# Message type -> DBN action (index = type; 0 is not a type).
_ACTIONS = np.array(["", "A", "C", "C", "T", "T", "T", "N"])
_EXECUTIONS = (4, 5)
_CROSS_TRADE = 6


class LobsterError(ValueError):
    """A LOBSTER file that cannot be read as documented; names the file, row and problem."""


@dataclass(frozen=True)
class LobsterPair:
    """One trading day of one ticker: the names of its message and orderbook files."""

    ticker: str
    day: dt.date
    start_ms: int  # requested span, milliseconds after midnight New York
    end_ms: int
    levels: int  # 1..10 book levels in the orderbook file
    message: str  # file or ZIP member name
    orderbook: str

    @property
    def midnight_ns(self) -> int:
        """Midnight New York of the day, ns since epoch UTC: times count from it."""
        return int(pd.Timestamp(self.day).tz_localize(NEW_YORK).value)


@dataclass(frozen=True)
class LobsterFileName:
    """The fields of a LOBSTER file name."""

    ticker: str
    day: dt.date
    start_ms: int
    end_ms: int
    kind: str  # "message" or "orderbook"
    levels: int


def parse_lobster_name(name: str) -> LobsterFileName | None:
    """The fields of a LOBSTER file name (folders ignored); None when it is not one."""
    match = _NAME.match(name.rsplit("/", 1)[-1])
    if match is None:
        return None
    return LobsterFileName(
        ticker=match["ticker"],
        day=dt.date.fromisoformat(match["day"]),
        start_ms=int(match["start_ms"]),
        end_ms=int(match["end_ms"]),
        kind=match["kind"],
        levels=int(match["levels"]),
    )


def pair_lobster_files(names: list[str]) -> list[LobsterPair]:
    """Message/orderbook pairs among file names (others ignored), by ticker and day.

    Raises
    ------
    LobsterError
        A message file without its orderbook file or the reverse, or more than 10 levels.
    """
    halves: dict[tuple, dict[str, str]] = {}
    for name in names:
        parsed = parse_lobster_name(name)
        if parsed is not None:
            key = (parsed.ticker, parsed.day, parsed.start_ms, parsed.end_ms, parsed.levels)
            halves.setdefault(key, {})[parsed.kind] = name
    pairs = []
    for (ticker, day, start_ms, end_ms, levels), files in sorted(halves.items()):
        if len(files) != 2:
            (present,) = files.values()
            raise LobsterError(
                f"{present} has no matching {'orderbook' if 'message' in files else 'message'} "
                "file beside it; LOBSTER files come in message + orderbook pairs"
            )
        if not 1 <= levels <= MAX_LEVELS:
            raise LobsterError(f"{files['message']}: {levels} levels, SLIM holds 1..{MAX_LEVELS}")
        pairs.append(
            LobsterPair(ticker, day, start_ms, end_ms, levels, files["message"], files["orderbook"])
        )
    return pairs


def lobster_session(pair: LobsterPair) -> Session:
    """The NASDAQ session of the pair's day (09:30-16:00 New York, early closes included)."""
    try:
        return TradingCalendar(LOBSTER_CALENDAR).session(pair.day)
    except ValueError as error:
        raise LobsterError(f"{pair.message}: {error}") from error


def lobster_metadata(pair: LobsterPair, source_files: list[dict]) -> dict[str, str]:
    """SLIM file metadata of a pair; ``partial`` when its time span misses part of the session.

    ``source_files`` is ``[{archive, member, sha256}]`` of the two files read.
    """
    session = lobster_session(pair)
    ms = 1_000_000
    covers = (
        pair.midnight_ns + pair.start_ms * ms <= session.open_ns
        and pair.midnight_ns + pair.end_ms * ms >= session.close_ns
    )
    return {
        slim_schema.META_SCHEMA_VERSION: slim_schema.SLIM_SCHEMA_VERSION,
        slim_schema.META_TRADING_DAY: pair.day.isoformat(),
        slim_schema.META_SYMBOL: pair.ticker,
        slim_schema.META_TICK_SIZE: repr(LOBSTER_TICK_SIZE),
        slim_schema.META_TRADE_TICK_SIZE: repr(LOBSTER_TRADE_TICK_SIZE),
        slim_schema.META_SOURCE_FILES: json.dumps(source_files),
        slim_schema.META_CONTRACT: pair.ticker,
        **slim_schema.session_metadata(session),
        slim_schema.META_DEGRADED: json.dumps(False),
        slim_schema.META_PARTIAL: json.dumps(not covers),
        slim_schema.META_TRADING_HOURS: "rth",
        # Rows out of time order are refused while reading, so none reaches the file.
        slim_schema.META_SOURCE_TS_RECV_REGRESSIONS: "0",
    }


def iter_lobster_tables(
    message: ByteStream, orderbook: ByteStream, pair: LobsterPair, block_bytes: int = 2**22
) -> Iterator[pa.Table]:
    """Yield the pair's SLIM rows, in file order, a few megabytes of CSV at a time.

    Parameters
    ----------
    message, orderbook : binary file-like
        The pair's two CSV files, from their first byte.
    pair : LobsterPair
        Their names, day and level count.
    block_bytes : int, default 4 MiB
        CSV bytes parsed at a time from each file: bounds the memory held.

    Yields
    ------
    pyarrow.Table
        Rows of ``SLIM_SCHEMA``; ``ts_recv`` never decreases.

    Raises
    ------
    LobsterError
        Files of different lengths, a row that does not parse, an unknown message type, a
        time going backwards, or an orderbook of another width than ``4 x levels``.
    """
    book_columns = [
        f"{side}_{kind}_{level:02d}"
        for level in range(pair.levels)
        for side, kind in (("ask", "px"), ("ask", "sz"), ("bid", "px"), ("bid", "sz"))
    ]
    messages = _read_csv(message, pair.message, _MESSAGE_COLUMNS, {"time": _TIME_TEXT}, block_bytes)
    books = _read_csv(orderbook, pair.orderbook, book_columns, {}, block_bytes)
    rows_before, last_ts = 0, pair.midnight_ns
    for message_rows, book_rows in _aligned(messages, books, pair):
        table = lobster_rows_to_slim(message_rows, book_rows, pair, rows_before, last_ts)
        rows_before += table.num_rows
        last_ts = table.column("ts_recv")[-1].as_py()
        yield table


def lobster_rows_to_slim(
    messages: pa.Table, books: pa.Table, pair: LobsterPair, rows_before: int, previous_ts: int
) -> pa.Table:
    """Equal-length message and orderbook rows -> SLIM rows (see the module's table).

    ``rows_before`` numbers the rows (``sequence``, errors); ``previous_ts`` is the time of the
    row before them, which none may precede.
    """
    count = messages.num_rows
    ts = pair.midnight_ns + _nanoseconds_after_midnight(messages.column("time"))
    backwards = np.diff(ts, prepend=previous_ts) < 0
    if backwards.any():
        row = rows_before + int(np.argmax(backwards)) + 1
        raise LobsterError(f"{pair.message} row {row}: time goes backwards")
    kind = messages.column("type").to_numpy()
    unknown = (kind < 1) | (kind >= len(_ACTIONS))
    if unknown.any():
        row = rows_before + int(np.argmax(unknown)) + 1
        raise LobsterError(
            f"{pair.message} row {row}: message type {kind[unknown][0]} is not one of "
            f"1..{len(_ACTIONS) - 1}"
        )
    is_trade = np.isin(kind, [*_EXECUTIONS, _CROSS_TRADE])
    direction = messages.column("direction").to_numpy()
    aggressor = np.where(kind == _CROSS_TRADE, "N", np.where(direction == -1, "B", "A"))
    columns: dict[str, pa.Array] = {
        "ts_recv": pa.array(ts),
        "ts_event": pa.array(ts),
        "sequence": pa.array(np.arange(rows_before + 1, rows_before + count + 1)),
        "symbol": pa.repeat(pa.scalar(pair.ticker), count),
        "raw_symbol": pa.repeat(pa.scalar(pair.ticker), count),
        "action": pa.array(_ACTIONS[kind], pa.string()),
        "trade_px": pa.array(messages.column("price").to_numpy() / PRICE_DIVISOR, mask=~is_trade),
        "trade_sz": pa.array(messages.column("size").to_numpy(), mask=~is_trade),
        "trade_side": pa.array(aggressor, pa.string(), mask=~is_trade),
    }
    for level in range(pair.levels):
        for side, empty in (("ask", EMPTY_ASK), ("bid", EMPTY_BID)):
            price = books.column(f"{side}_px_{level:02d}").to_numpy()
            columns[f"{side}_px_{level:02d}"] = pa.array(price / PRICE_DIVISOR, mask=price == empty)
            columns[f"{side}_sz_{level:02d}"] = books.column(f"{side}_sz_{level:02d}")
    arrays = [columns.get(field.name, pa.nulls(count, field.type)) for field in SLIM_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=SLIM_SCHEMA)


def _nanoseconds_after_midnight(seconds: pa.ChunkedArray) -> np.ndarray:
    """Decimal seconds -> int64 ns, exact to 9 decimals, half-to-even beyond."""
    rounded = pc.round(seconds, ndigits=_NS_DECIMALS, round_mode="half_to_even")
    return decimal_to_int64(rounded.cast(pa.decimal128(38, _NS_DECIMALS)))


def _read_csv(
    stream: ByteStream,
    name: str,
    columns: list[str],
    types: dict[str, pa.DataType],
    block_bytes: int,
) -> Iterator[pa.Table]:
    """A header-less CSV as tables of its named columns (int64 unless typed otherwise)."""
    column_types = {column: types.get(column, pa.int64()) for column in columns}
    rows_before = 0
    try:
        reader = pa_csv.open_csv(
            stream,
            read_options=pa_csv.ReadOptions(column_names=columns, block_size=block_bytes),
            convert_options=pa_csv.ConvertOptions(column_types=column_types),
        )
        for batch in reader:
            yield pa.Table.from_batches([batch])
            rows_before += batch.num_rows
    except pa.ArrowInvalid as error:
        raise LobsterError(
            f"{name}: a row after row {rows_before} does not parse as {len(columns)} numbers "
            f"({error})"
        ) from error


def _aligned(
    messages: Iterator[pa.Table], books: Iterator[pa.Table], pair: LobsterPair
) -> Iterator[tuple[pa.Table, pa.Table]]:
    """Equal-length pieces of the two files' row streams (their blocks end at other rows)."""
    message_rows = next(messages, None)
    book_rows = next(books, None)
    rows_before = 0
    while message_rows is not None and book_rows is not None:
        count = min(message_rows.num_rows, book_rows.num_rows)
        if count:
            yield message_rows.slice(0, count), book_rows.slice(0, count)
        rows_before += count
        message_rows = _rest_or_next(message_rows.slice(count), messages)
        book_rows = _rest_or_next(book_rows.slice(count), books)
    if message_rows is not None or book_rows is not None:
        longer = pair.message if message_rows is not None else pair.orderbook
        raise LobsterError(
            f"{longer} has more rows than its partner, which ends after row {rows_before}; "
            "message and orderbook files must have one row per event each"
        )


def _rest_or_next(rest: pa.Table, stream: Iterator[pa.Table]) -> pa.Table | None:
    return rest if rest.num_rows else next(stream, None)
