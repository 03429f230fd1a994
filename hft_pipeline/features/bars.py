"""SLIM rows -> regular time bars: a streaming compiled pass over the events, an Arrow table.

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
(share of the session elapsed at ``ts``), ``minutes_since_open`` and ``minutes_to_close`` (from
``ts`` to the session's bounds), ``day_of_week`` (of the trading day, 0 Monday .. 6 Sunday),
``tick_size``, ``bid_px_LL``/``ask_px_LL`` (float64) and ``bid_sz_LL``/``ask_sz_LL`` (int64) for
LL < book_levels, ``mid`` (close of the mid), ``mid_open``/``mid_high``/``mid_low`` (over the
bar's book events; the carried mid when there are none), ``vwap`` (NULL without trades),
``trade_count``, ``volume``, ``buy_volume``, ``sell_volume`` (aggressor B / A; 0 without
trades), ``session_traded_value`` and ``session_volume`` (sum of trade_px * trade_sz and of
trade_sz over the bars 0..i built for the session; for a previous day's tail, which only warms
up the features, from the tail's first bar), and the order-flow inputs ``ofi_flow_1``,
``ofi_flow_multi`` (0 without book events), ``ofi_depth_1``, ``ofi_depth_multi`` (NULL without
book events) over ``OFI_LEVELS`` levels.

The events are read (``slim_batches.py``) and folded into bars by ``event_scan.py`` (one
streaming pass per file, in the compiled loops of ``fold_kernels.py``, which also defines the
order-flow inputs); this module lays the grid and returns the bars as an Arrow table
(``compute.py`` hands it to DuckDB).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hft_pipeline.features.event_scan import BarAccumulator, book_columns, scan_bar_events
from hft_pipeline.features.quality import bars_per_session
from hft_pipeline.features.registry import BOOK_DEPTH, OFI_LEVELS
from hft_pipeline.features.slim_batches import EVENT_BATCH_ROWS
from hft_pipeline.ingest.slim_schema import (
    BOOK_LEVELS,
    META_SYMBOL,
    META_TICK_SIZE,
    META_TRADING_DAY,
)
from hft_pipeline.partitions import Session

_NS_PER_SECOND = 1_000_000_000
_NS_PER_MINUTE = 60 * _NS_PER_SECOND


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


def bar_table(
    sources: Sequence[SlimSource],
    session: Session,
    bar_seconds: int,
    book_levels: int = BOOK_DEPTH,
    batch_rows: int = EVENT_BATCH_ROWS,
) -> pa.Table:
    """The bars (see the module docstring) of every source, one symbol after the other in the
    order given, each in bar order.

    Parameters
    ----------
    sources : Sequence[SlimSource]
        One SLIM file per symbol; a file with zero rows gives bars with NULL book columns.
    session : Session
        The session whose [open, close) the bars cover.
    bar_seconds : int
        Bar interval in seconds.
    book_levels : int, default BOOK_DEPTH
        Book levels per side kept in the bars (at most the SLIM file's 10).
    batch_rows : int, default EVENT_BATCH_ROWS
        SLIM rows folded at a time. The event pass holds two decoded row groups at most, one
        per worker thread (``slim_batches.py``; the SLIM writer's are ``ROW_GROUP_ROWS`` rows).
    """
    _check_arguments(sources, session, bar_seconds, book_levels)
    return pa.concat_tables(
        _symbol_bars(source, session, bar_seconds, book_levels, batch_rows) for source in sources
    )


def build_bars(
    slim_files: Mapping[str, Path],
    session: Session,
    bar_seconds: int,
    book_levels: int = BOOK_DEPTH,
    batch_rows: int = EVENT_BATCH_ROWS,
) -> pa.Table:
    """The bars of ``slim_files`` (symbol -> SLIM path) as an Arrow table, sorted by symbol
    then bar_index; see :func:`bar_table`."""
    sources = [read_slim_source(symbol, path, session) for symbol, path in slim_files.items()]
    bars = bar_table(sources, session, bar_seconds, book_levels, batch_rows)
    return bars.sort_by([("symbol", "ascending"), ("bar_index", "ascending")])


def _symbol_bars(
    source: SlimSource, session: Session, bar_seconds: int, book_levels: int, batch_rows: int
) -> pa.Table:
    """One symbol's bars, in bar order, with the columns of the module docstring."""
    interval_ns = bar_seconds * _NS_PER_SECOND
    bar_count = bars_per_session(session.open_ns, session.close_ns, bar_seconds)
    accumulator = BarAccumulator(bar_count, book_levels, min(OFI_LEVELS, book_levels))
    events = scan_bar_events(source.path, session, interval_ns, accumulator, batch_rows).columns()
    bar_index = np.arange(bar_count)
    ts = np.minimum(session.open_ns + (bar_index + 1) * interval_ns, session.close_ns)
    integers = {size for _, size in book_columns(book_levels)}
    integers |= {"trade_count", "volume", "buy_volume", "sell_volume", "session_volume"}
    return pa.table(
        {
            "symbol": pa.repeat(source.symbol, bar_count),
            "bar_index": pa.array(bar_index, pa.int32()),
            "ts": pa.array(ts),
            "session_fraction": (ts - session.open_ns) / (session.close_ns - session.open_ns),
            "minutes_since_open": (ts - session.open_ns) / _NS_PER_MINUTE,
            "minutes_to_close": (session.close_ns - ts) / _NS_PER_MINUTE,
            "day_of_week": pa.array(np.full(bar_count, session.day.weekday()), pa.int8()),
            "tick_size": np.full(bar_count, source.tick_size),
            **{
                name: _nullable(values, pa.int64() if name in integers else pa.float64())
                for name, values in events.items()
            },
        }
    )


def _nullable(values: np.ndarray, type_: pa.DataType) -> pa.Array:
    """``values`` as an Arrow array of ``type_``, NaN as NULL."""
    nullable = pa.array(values, from_pandas=True)
    return nullable if nullable.type == type_ else nullable.cast(type_)


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
