"""Plain OHLCV bar files (CSV, optionally compressed, or parquet) -> SLIM rows per session.

A bar file has a timestamp column and ``open, high, low, close, volume`` (any case), perhaps a
``symbol`` column naming the contract. What the file does not say is inferred from it, or
given in :class:`BarFileOptions`:

- the timestamp: text (ISO-8601; without an offset it is in ``timezone``), integers since the
  epoch (unit from their magnitude unless given) or a parquet timestamp;
- the interval: the most common step between the first chunk's timestamps;
- the label, which end of the bar the timestamp marks: the one that puts more of the first
  chunk's bars inside the calendar's sessions (a bar stamped at its close looks, read as an
  open, as if it ran past the session close); ``open`` on a tie, Databento's convention.

SLIM rows: ``ts_event`` = bar open, ``ts_recv`` = bar close (a bar is known at its close),
``open/high/low/close/volume``, ``sequence`` = the 1-based data row. Prices are parsed as
decimals (CSV) or rounded to 1e-9 from floats (parquet) and must lie on the root's tick grid,
exactly. Rows stream in chunks; each session's rows are emitted once the file moves past it,
so a file spanning many days needs the memory of one session. Bars outside every session
(a holiday's hours, the daily break) are counted and left out.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from hft_pipeline.ingest import slim_schema
from hft_pipeline.ingest.databento_csv import decimal_to_int64
from hft_pipeline.ingest.dbn_layout import PRICE_SCALE
from hft_pipeline.ingest.slim_schema import SLIM_SCHEMA
from hft_pipeline.instruments import contract_root, root_spec
from hft_pipeline.partitions import Session, TradingCalendar

__all__ = ["BarFileError", "BarFileOptions", "BarSession", "bar_metadata", "iter_bar_sessions"]

PRICE_COLUMNS = ("open", "high", "low", "close")
TIMESTAMP_COLUMNS = ("timestamp", "timestamp_utc", "ts_event", "datetime", "time", "date", "ts")
SYMBOL_COLUMN = "symbol"
BAR_FILE_SUFFIXES = (".csv", ".csv.gz", ".csv.zst", ".csv.bz2", ".parquet")
LABELS = ("open", "close")
# Epoch integers below these magnitudes are in s, ms, us; larger ones are ns.
_UNIT_LIMITS = ((10**11, "s"), (10**14, "ms"), (10**17, "us"))
_NS_PER_UNIT = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
_DECIMAL_PRICE = pa.decimal128(38, 9)
_CSV_BLOCK_BYTES = 2**22
_HEADER_BYTES = 2**16


class BarFileError(ValueError):
    """A bar file that cannot be read as bars; names the file, row and problem."""


@dataclass(frozen=True)
class BarFileOptions:
    """How to read a bar file; None means infer it from the file (see the module)."""

    timestamp_column: str | None = None  # default: first of TIMESTAMP_COLUMNS present
    timestamp_unit: str | None = None  # "s", "ms", "us" or "ns" for epoch integers
    timezone: str = "UTC"  # of text timestamps written without an offset
    label: str | None = None  # "open" or "close": which end of the bar is stamped
    interval_ns: int | None = None
    contract: str | None = None  # raw_symbol; default: symbol column, else file name (6EH4...)
    chunk_rows: int = 262_144

    def __post_init__(self) -> None:
        if self.label not in (None, *LABELS):
            raise ValueError(f"label must be 'open' or 'close', found {self.label!r}")
        if self.timestamp_unit not in (None, *_NS_PER_UNIT):
            raise ValueError(f"timestamp_unit must be one of {list(_NS_PER_UNIT)}")
        if self.interval_ns is not None and self.interval_ns <= 0:
            raise ValueError(f"interval_ns must be positive, found {self.interval_ns}")
        if self.chunk_rows < 2:
            raise ValueError(f"chunk_rows must be >= 2, found {self.chunk_rows}")


@dataclass(frozen=True)
class BarSession:
    """One session's bars as SLIM rows, with what its metadata needs."""

    session: Session
    table: pa.Table  # SLIM_SCHEMA rows in time order
    contract: str  # the raw_symbol with the most bars in the session
    interval_ns: int
    partial: bool  # the file starts after the session opens or ends before it closes
    # Bars outside every session between the previous session's bars and this one's; the
    # file's last session also counts those after it.
    skipped_bars: int


def iter_bar_sessions(
    path: Path, symbol: str | None, calendar: TradingCalendar, options: BarFileOptions
) -> Iterator[BarSession]:
    """Yield the sessions a bar file covers, in order, each with its SLIM rows.

    Parameters
    ----------
    path : Path
        ``.csv`` (``.gz``/``.zst``/``.bz2`` too) or ``.parquet`` bar file, in time order.
    symbol : str, optional
        Root symbol, e.g. ``6E`` (its tick checks the prices); default: the contract's root.
    calendar : TradingCalendar
        Gives the sessions the bars are split into.
    options : BarFileOptions
        What to read how; see the module for what is inferred.

    Raises
    ------
    BarFileError
        Missing columns, a timestamp or price that does not parse, a price off the tick grid,
        bars out of order or overlapping, or no way to tell the symbol or interval.
    """
    chunks = _read_chunks(Path(path), options)
    first = next(chunks, None)
    if first is None:
        return
    # The contract: as given, else the symbol column's per row, else the file name's.
    contract = options.contract
    if contract is None and SYMBOL_COLUMN not in first.column_names:
        contract = _contract_from_name(path)
    root = symbol or contract_root(contract or "") or _symbol_column_root(first)
    if root is None:
        raise BarFileError(f"{path.name}: no root symbol given and none in its name or rows")
    tick = _tick_fixed_point(root)
    stamps = _timestamps_ns(first, path, options, 0)
    interval = options.interval_ns or _infer_interval(stamps, path)
    label = options.label or _infer_label(stamps, interval, calendar)
    shift = interval if label == "close" else 0
    pieces: list[pa.Table] = []  # the current session's rows so far
    current: Session | None = None
    # Bars outside every session: before the current session's first bar, and since then.
    skipped_before, skipped = 0, 0
    first_open, last_open, rows_before = None, None, 0
    for table in itertools.chain([first], chunks):
        rows = _slim_rows(table, path, options, tick, interval, shift, rows_before, root, contract)
        rows_before += table.num_rows
        open_ns = rows.column("ts_event").to_numpy()
        _check_order(open_ns, last_open, interval, path, rows_before - table.num_rows)
        first_open = open_ns[0] if first_open is None else first_open
        last_open = int(open_ns[-1])
        sessions = _sessions_around(open_ns, calendar)
        index = _session_index(open_ns, interval, sessions)
        for start, stop in _runs(index):
            if index[start] < 0:
                skipped += stop - start
                continue
            if sessions[index[start]] != current:
                if current is not None:
                    yield _bar_session(current, pieces, interval, first_open, None, skipped_before)
                current, pieces, skipped_before, skipped = sessions[index[start]], [], skipped, 0
            pieces.append(rows.slice(start, stop - start))
    if current is not None:
        yield _bar_session(
            current, pieces, interval, first_open, last_open, skipped_before + skipped
        )


def bar_metadata(rows: BarSession, symbol: str, source_files: list[dict]) -> dict[str, str]:
    """SLIM file metadata of one session of a bar file."""
    return {
        slim_schema.META_SCHEMA_VERSION: slim_schema.SLIM_SCHEMA_VERSION,
        slim_schema.META_TRADING_DAY: rows.session.day.isoformat(),
        slim_schema.META_SYMBOL: symbol,
        slim_schema.META_TICK_SIZE: repr(root_spec(symbol).tick_size),
        slim_schema.META_SOURCE_FILES: json.dumps(source_files),
        slim_schema.META_CONTRACT: rows.contract,
        **slim_schema.session_metadata(rows.session),
        slim_schema.META_DEGRADED: json.dumps(False),
        slim_schema.META_PARTIAL: json.dumps(rows.partial),
        slim_schema.META_BAR_INTERVAL_NS: str(rows.interval_ns),
        # Rows out of time order are refused while reading, so none reaches the file.
        slim_schema.META_SOURCE_TS_RECV_REGRESSIONS: "0",
    }


def _read_chunks(path: Path, options: BarFileOptions) -> Iterator[pa.Table]:
    """The file's rows as tables of at most ``chunk_rows``: text timestamps as strings, CSV
    prices as decimals; column names lower-cased."""
    if path.name.endswith(".parquet"):
        batches = pq.ParquetFile(path).iter_batches(batch_size=options.chunk_rows)
    elif path.name.endswith(BAR_FILE_SUFFIXES):
        batches = _csv_batches(path, options)
    else:
        raise BarFileError(f"{path.name}: not a bar file; expected one of {BAR_FILE_SUFFIXES}")
    try:
        for batch in batches:
            table = pa.Table.from_batches([batch])
            table = table.rename_columns([name.lower() for name in table.column_names])
            for start in range(0, table.num_rows, options.chunk_rows):
                yield table.slice(start, options.chunk_rows)
    except pa.ArrowInvalid as error:
        raise BarFileError(f"{path.name}: a row does not parse ({error})") from error


def _csv_batches(path: Path, options: BarFileOptions) -> Iterator[pa.RecordBatch]:
    with pa.input_stream(path) as stream:  # decompresses by the name's suffix
        header = stream.read(_HEADER_BYTES).decode(errors="replace").splitlines()[0].split(",")
    by_lower = {name.lower(): name for name in header}
    time_column = _timestamp_column(list(by_lower), path, options)
    types = {by_lower[time_column]: pa.string()}
    types |= {by_lower[name]: _DECIMAL_PRICE for name in PRICE_COLUMNS if name in by_lower}
    with pa.input_stream(path) as stream:
        yield from pa_csv.open_csv(
            stream,
            read_options=pa_csv.ReadOptions(block_size=_CSV_BLOCK_BYTES),
            convert_options=pa_csv.ConvertOptions(column_types=types),
        )


def _timestamp_column(names: list[str], path: Path, options: BarFileOptions) -> str:
    wanted = [options.timestamp_column.lower()] if options.timestamp_column else TIMESTAMP_COLUMNS
    found = [name for name in wanted if name in names]
    if not found:
        raise BarFileError(
            f"{path.name}: no timestamp column among {names}; expected one of {list(wanted)} "
            "(set the timestamp column option)"
        )
    return found[0]


def _timestamps_ns(
    table: pa.Table, path: Path, options: BarFileOptions, rows_before: int
) -> np.ndarray:
    """The timestamp column as int64 ns UTC."""
    column = table.column(_timestamp_column(table.column_names, path, options))
    if pa.types.is_integer(column.type):
        return _epoch_ns(column.to_numpy(), options.timestamp_unit)
    if pa.types.is_timestamp(column.type):
        parsed = pd.Series(column.to_pandas())
    else:
        text = column.to_pandas()
        if text.str.fullmatch(r"\d+").all():
            return _epoch_ns(text.astype("int64").to_numpy(), options.timestamp_unit)
        parsed = pd.to_datetime(text, format="ISO8601", errors="coerce")
        if parsed.isna().any():
            bad = int(parsed.isna().argmax())
            raise BarFileError(
                f"{path.name} row {rows_before + bad + 1}: timestamp {text.iloc[bad]!r} is not "
                "ISO-8601 text or epoch integers"
            )
    if parsed.dt.tz is None:
        try:
            parsed = parsed.dt.tz_localize(options.timezone)
        except (ValueError, KeyError) as error:  # DST gaps and repeats, unknown zones
            raise BarFileError(
                f"{path.name} rows {rows_before + 1}..{rows_before + len(parsed)}: timestamps "
                f"cannot be read as {options.timezone} local time ({error})"
            ) from error
    return parsed.dt.tz_convert("UTC").dt.as_unit("ns").astype("int64").to_numpy()


def _epoch_ns(values: np.ndarray, unit: str | None) -> np.ndarray:
    if unit is None:
        magnitude = int(np.abs(values[0])) if len(values) else 0
        unit = next((u for limit, u in _UNIT_LIMITS if magnitude < limit), "ns")
    return values.astype(np.int64) * _NS_PER_UNIT[unit]


def _infer_interval(stamps: np.ndarray, path: Path) -> int:
    steps = np.diff(stamps)
    steps = steps[steps > 0]
    if not len(steps):
        raise BarFileError(f"{path.name}: fewer than two bars; give the bar interval")
    values, counts = np.unique(steps, return_counts=True)
    return int(values[np.argmax(counts)])


def _infer_label(stamps: np.ndarray, interval: int, calendar: TradingCalendar) -> str:
    sessions = _sessions_around(stamps, calendar)
    inside = {
        label: int((_session_index(stamps - shift, interval, sessions) >= 0).sum())
        for label, shift in (("open", 0), ("close", interval))
    }
    return "close" if inside["close"] > inside["open"] else "open"


def _slim_rows(
    table: pa.Table,
    path: Path,
    options: BarFileOptions,
    tick: int,
    interval: int,
    shift: int,
    rows_before: int,
    symbol: str,
    contract: str | None,
) -> pa.Table:
    """A chunk of the file -> SLIM rows, prices checked against the tick grid; ``shift`` is
    subtracted from the timestamps to give bar opens."""
    missing = [name for name in (*PRICE_COLUMNS, "volume") if name not in table.column_names]
    if missing:
        raise BarFileError(f"{path.name}: no column {missing}; found {table.column_names}")
    count = table.num_rows
    rows = np.arange(rows_before + 1, rows_before + count + 1)
    open_ns = _timestamps_ns(table, path, options, rows_before) - shift
    volume = table.column("volume")
    if volume.null_count or not pa.types.is_integer(volume.type):
        raise BarFileError(f"{path.name}: volume must be whole numbers, found {volume.type}")
    if SYMBOL_COLUMN in table.column_names and contract is None:
        contracts = table.column(SYMBOL_COLUMN).cast(pa.string())
    else:
        contracts = pa.repeat(pa.scalar(contract or symbol), count)
    columns = {
        "ts_event": pa.array(open_ns),
        "ts_recv": pa.array(open_ns + interval),
        "sequence": pa.array(rows),
        "symbol": pa.repeat(pa.scalar(symbol), count),
        "raw_symbol": contracts,
        "volume": volume.cast(pa.int64()),
    }
    for name in PRICE_COLUMNS:
        fixed = _fixed_point(table.column(name), path, name, rows)
        off_grid = fixed % tick != 0
        if off_grid.any():
            at = int(np.argmax(off_grid))
            raise BarFileError(
                f"{path.name} row {rows[at]}: {name} {int(fixed[at]) / PRICE_SCALE!r} is not a "
                f"multiple of the tick {tick / PRICE_SCALE!r}"
            )
        columns[name] = pa.array(fixed / PRICE_SCALE)
    arrays = [columns.get(field.name, pa.nulls(count, field.type)) for field in SLIM_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=SLIM_SCHEMA)


def _fixed_point(column: pa.ChunkedArray, path: Path, name: str, rows: np.ndarray) -> np.ndarray:
    """Prices in 1e-9 units: decimals exactly, floats rounded (their error is far below 1e-9)."""
    if column.null_count:
        at = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
        raise BarFileError(f"{path.name} row {rows[at]}: no {name} price")
    if pa.types.is_decimal(column.type):
        return decimal_to_int64(column.cast(_DECIMAL_PRICE))
    if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
        return np.rint(column.to_numpy().astype(np.float64) * PRICE_SCALE).astype(np.int64)
    raise BarFileError(f"{path.name}: {name} prices of type {column.type} are not numbers")


def _check_order(
    open_ns: np.ndarray, last_open: int | None, interval: int, path: Path, rows_before: int
) -> None:
    """Bars must start at least one interval after the previous bar: sorted, no overlap."""
    previous = open_ns[0] - interval if last_open is None else last_open
    steps = np.diff(open_ns, prepend=previous)
    bad = steps < interval
    if bad.any():
        at = int(np.argmax(bad))
        raise BarFileError(
            f"{path.name} row {rows_before + at + 1}: bar opens {int(steps[at])} ns after the "
            f"previous one, less than the {interval} ns interval: rows out of order, duplicated "
            "or overlapping (sort the file, or give the right interval)"
        )


def _sessions_around(open_ns: np.ndarray, calendar: TradingCalendar) -> list[Session]:
    first, last = (pd.Timestamp(int(v), tz="UTC").date() for v in (open_ns[0], open_ns[-1]))
    lead = pd.Timedelta(days=calendar.session_lead_days + 1)
    return calendar.sessions(first - lead, last + lead)


def _session_index(open_ns: np.ndarray, interval: int, sessions: list[Session]) -> np.ndarray:
    """Index of the session holding each bar [open, open + interval], -1 where none does."""
    opens = np.array([s.open_ns for s in sessions], dtype=np.int64)
    closes = np.array([s.close_ns for s in sessions], dtype=np.int64)
    index = np.searchsorted(opens, open_ns, side="right") - 1
    inside = (index >= 0) & (open_ns + interval <= closes[np.maximum(index, 0)])
    return np.where(inside, index, -1)


def _runs(index: np.ndarray) -> Iterator[tuple[int, int]]:
    """[start, stop) of each run of equal values."""
    bounds = [0, *(np.flatnonzero(np.diff(index)) + 1).tolist(), len(index)]
    return zip(bounds[:-1], bounds[1:], strict=True)


def _bar_session(
    session: Session,
    pieces: list[pa.Table],
    interval: int,
    file_first_open: int,
    file_last_open: int | None,
    skipped: int,
) -> BarSession:
    """One session's rows; ``file_last_open`` is given for the file's last session only."""
    table = pa.concat_tables(pieces)
    counts = table.column("raw_symbol").value_counts()
    busiest = counts.field("values")[int(np.argmax(counts.field("counts").to_numpy()))]
    ends_early = file_last_open is not None and file_last_open + interval < session.close_ns
    return BarSession(
        session=session,
        table=table,
        contract=busiest.as_py(),
        interval_ns=interval,
        partial=bool(file_first_open > session.open_ns or ends_early),
        skipped_bars=skipped,
    )


def _tick_fixed_point(root: str) -> int:
    tick = root_spec(root).tick * PRICE_SCALE
    if tick != int(tick):
        raise BarFileError(f"the {root} tick {root_spec(root).tick} is finer than 1e-9")
    return int(tick)


def _contract_from_name(path: Path) -> str | None:
    """``6EH4.XCME_1min_bars.csv.gz`` -> ``6EH4``: a leading futures contract code."""
    leading = re.split(r"[._\-\s]", Path(path).name, maxsplit=1)[0]
    return leading if contract_root(leading) else None


def _symbol_column_root(table: pa.Table) -> str | None:
    if SYMBOL_COLUMN not in table.column_names or not table.num_rows:
        return None
    return contract_root(str(table.column(SYMBOL_COLUMN)[0]))
