"""Data-quality checks of one SLIM file, computed in DuckDB (pure: file in, verdicts out).

Row rules are evaluated in one pass over the file (plus one pass for duplicates); each
verdict keeps its violation count, the row count, what the rule means and the first offending
``ts_recv`` so that a user can find the problem. Missing prices are null and never violate a
rule. Quiet time inside the session's scheduled breaks (from the file's metadata) is not a
gap: no data arrives during CME's former daily maintenance halt. Verdicts are stored beside
the SLIM file by ``check_records.py``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from hft_pipeline.config import DataSettings
from hft_pipeline.ingest.slim_schema import (
    BOOK_LEVELS,
    META_SESSION_BREAKS_NS,
    META_SESSION_CLOSE_NS,
    META_SESSION_OPEN_NS,
    META_SOURCE_TS_RECV_REGRESSIONS,
    META_TRADE_TICK_SIZE,
)

if TYPE_CHECKING:
    from hft_pipeline.partitions import Break  # no Dagster import at run time: a pure module


@dataclass(frozen=True)
class QualityCheck:
    """One rule's verdict over one SLIM file; it passes with no violation."""

    name: str
    passed: bool
    violations: int
    rows: int
    description: str
    example_ts_recv: int | None = None  # the first offending row's ts_recv, in file order
    detail: str = ""  # where to look: first offence, largest gap, what was not checked


QUALITY_CHECKS = (
    "session_complete",
    "not_empty",
    "book_not_crossed",
    "book_not_locked",
    "prices_on_tick_grid",
    "ts_event_not_after_ts_recv",
    "ts_recv_ordered",
    "source_ts_recv_monotonic",
    "no_duplicate_records",
    "no_gaps_over_threshold",
    "bar_range_contains_open_close",
    "bar_volume_not_negative",
)
# Prices checked against the tick; trade prices against the trade tick when the file has one.
PRICE_COLUMNS = (
    *(f"{side}_px_{level:02d}" for side in ("bid", "ask") for level in range(BOOK_LEVELS)),
    "open",
    "high",
    "low",
    "close",
)
TRADE_PRICE_COLUMN = "trade_px"
# Rows that end an event: DBN's F_LAST flag (the records of one event share ts_recv, and the
# book may cross between them, e.g. an aggressor's add before its fills); rows without flags
# (bars, LOBSTER) are whole events.
_EVENT_COMPLETE = "coalesce((flags & 128) <> 0, true)"
# A price is on the grid when price / tick is within this of an integer (float64 rounding).
_TICK_TOLERANCE = 1e-6


def run_quality_checks(
    slim_path: Path,
    tick_size: float,
    missing_utc_days: int = 0,
    *,
    max_gap_seconds: float = DataSettings.max_gap_seconds,
) -> list[QualityCheck]:
    """Count violations of each rule of ``QUALITY_CHECKS`` over the file's rows.

    Parameters
    ----------
    slim_path : Path
        A SLIM parquet file.
    tick_size : float
        The contract's tick, in currency units: every price must be a multiple of it, except
        trade prices when the file's metadata has ``hft.trade_tick_size`` (then a multiple of
        that: LOBSTER's hidden executions print at midpoints).
    missing_utc_days : int, default 0
        UTC days of the session that had no archive: a partial session is written (to be
        inspected) but fails `session_complete`.
    max_gap_seconds : float, default DataSettings.max_gap_seconds (300)
        Longest quiet time allowed between consecutive records, and between the session's
        open or close (from the file's metadata, when recorded) and the nearest record. The
        part of a quiet time inside one of the session's breaks (``hft.session_breaks_ns``,
        when recorded) does not count: a gap spanning a break is measured without it.

    Returns
    -------
    list[QualityCheck]
        One verdict per name of ``QUALITY_CHECKS``, in that order.

    Raises
    ------
    ValueError
        The file cannot be read as SLIM parquet, or its metadata holds a malformed value.
    """
    metadata = _file_metadata(slim_path)
    session_open = _metadata_int(slim_path, metadata, META_SESSION_OPEN_NS)
    session_close = _metadata_int(slim_path, metadata, META_SESSION_CLOSE_NS)
    breaks = _metadata_breaks(slim_path, metadata)
    trade_tick_size = _metadata_float(slim_path, metadata, META_TRADE_TICK_SIZE) or tick_size
    max_gap_ns = round(max_gap_seconds * 1e9)
    record_rules = _record_rules(tick_size, trade_tick_size)
    sequence_rules = _sequence_rules(max_gap_ns)
    path_text = _sql_text(slim_path.as_posix())
    try:
        with duckdb.connect() as connection:
            connection.execute("SET enable_progress_bar = false")  # none drawn into the logs
            scan = _scan_rules(
                connection, path_text, record_rules, sequence_rules, session_open, breaks
            )
            duplicates, duplicate_example = connection.execute(
                _DUPLICATES_SQL.format(path=path_text)
            ).fetchone()
    except duckdb.Error as error:
        raise ValueError(f"{slim_path.name}: cannot run the quality checks ({error})") from error

    rows = scan["rows"]
    checks = {
        name: _row_check(name, scan[name], rows, description, scan[f"{name}_example"])
        for name, (_, description) in {**record_rules, **sequence_rules}.items()
    }
    checks["no_gaps_over_threshold"] = _with_session_edges(
        checks["no_gaps_over_threshold"], scan, (session_open, session_close), breaks, max_gap_ns
    )
    checks["session_complete"] = QualityCheck(
        "session_complete",
        missing_utc_days == 0,
        missing_utc_days,
        rows,
        "every UTC day the session overlaps had an archive",
    )
    checks["not_empty"] = QualityCheck(
        "not_empty", rows > 0, int(rows == 0), rows, "the session has at least one record"
    )
    checks["source_ts_recv_monotonic"] = _source_regressions_check(slim_path, metadata, rows)
    checks["no_duplicate_records"] = _row_check(
        "no_duplicate_records",
        int(duplicates or 0),
        rows,
        "no row repeats another in every column",
        duplicate_example,
    )
    return [checks[name] for name in QUALITY_CHECKS]


def _record_rules(tick_size: float, trade_tick_size: float) -> dict[str, tuple[str, str]]:
    """Check name -> (SQL condition true on an offending row, what the rule means), for rules
    that read one row."""
    off_grid = " OR ".join(
        [_off_grid(column, tick_size) for column in PRICE_COLUMNS]
        + [_off_grid(TRADE_PRICE_COLUMN, trade_tick_size)]
    )
    trades = "" if trade_tick_size == tick_size else f", trades of {trade_tick_size}"
    return {
        "book_not_crossed": (
            f"bid_px_00 > ask_px_00 AND {_EVENT_COMPLETE}",
            "best bid is not above best ask once each event is complete",
        ),
        "book_not_locked": (
            f"bid_px_00 = ask_px_00 AND {_EVENT_COMPLETE}",
            "best bid does not equal best ask once each event is complete",
        ),
        "prices_on_tick_grid": (
            off_grid,
            f"every book level, trade and bar price is a multiple of the tick ({tick_size}"
            f"{trades})",
        ),
        "ts_event_not_after_ts_recv": (
            "ts_event > ts_recv",
            "the venue's event time is not after our receive time",
        ),
        "bar_range_contains_open_close": (
            "high < greatest(open, close) OR low > least(open, close)",
            "each bar's high is at least its open and close, its low at most both",
        ),
        "bar_volume_not_negative": ("volume < 0", "each bar's volume is not negative"),
    }


def _off_grid(column: str, tick_size: float) -> str:
    """SQL condition: ``column`` is not a multiple of ``tick_size`` (null: not off the grid)."""
    tick = repr(float(tick_size))
    return f"abs({column} / {tick} - round({column} / {tick})) > {_TICK_TOLERANCE}"


def _sequence_rules(max_gap_ns: int) -> dict[str, tuple[str, str]]:
    """The same for rules that also read ``previous_ts_recv``, the ts_recv of the row before in
    file order (the session open for the first row, when recorded), and ``quiet_ns``, the time
    since then outside the session's breaks."""
    return {
        "ts_recv_ordered": (
            "ts_recv < previous_ts_recv AND file_row_number > 0",
            "rows are in arrival (ts_recv) order",
        ),
        "no_gaps_over_threshold": (
            f"quiet_ns > {max_gap_ns}",
            f"no quiet time over {max_gap_ns / 1e9:g} s between records or from the session's "
            "open and to its close, not counting the session's scheduled breaks",
        ),
    }


def _scan_rules(
    connection: duckdb.DuckDBPyConnection,
    path_text: str,
    record_rules: dict[str, tuple[str, str]],
    sequence_rules: dict[str, tuple[str, str]],
    session_open: int | None,
    breaks: tuple[Break, ...],
) -> dict[str, int | None]:
    """One pass: rows, each rule's violations and first offence, the largest gap and last row.

    Record rules become booleans before the window, so that only they, ``ts_recv`` and the row
    number are carried through the window's sort, not the file's ~80 columns.
    """
    first_previous = "NULL" if session_open is None else str(session_open)

    def flags(rules: dict[str, tuple[str, str]]) -> str:
        return ", ".join(
            f'coalesce({condition}, false) AS "{name}"' for name, (condition, _) in rules.items()
        )

    aggregates = ", ".join(
        f'count(*) FILTER (WHERE "{name}") AS "{name}", '
        f'arg_min(ts_recv, file_row_number) FILTER (WHERE "{name}") AS "{name}_example"'
        for name in (*record_rules, *sequence_rules)
    )
    sql = f"""
        WITH flagged AS (
            SELECT file_row_number, ts_recv, {flags(record_rules)}
            FROM read_parquet('{path_text}', file_row_number = true)
        ), ordered AS (
            SELECT *, coalesce(lag(ts_recv) OVER (ORDER BY file_row_number), {first_previous})
                AS previous_ts_recv
            FROM flagged
        ), measured AS (
            SELECT *, {_quiet_sql(breaks)} AS quiet_ns FROM ordered
        ), judged AS (
            SELECT *, {flags(sequence_rules)} FROM measured
        )
        SELECT count(*) AS rows,
               max(quiet_ns) AS largest_gap_ns,
               arg_max(ts_recv, quiet_ns) AS largest_gap_end,
               arg_max(ts_recv, file_row_number) AS last_ts_recv,
               {aggregates}
        FROM judged
    """
    cursor = connection.execute(sql)
    names = [column[0] for column in cursor.description]
    return dict(zip(names, cursor.fetchone(), strict=True))


def _quiet_sql(breaks: tuple[Break, ...]) -> str:
    """SQL: ``ts_recv - previous_ts_recv`` less its overlap with each break (as `_quiet_ns`)."""
    overlaps = "".join(
        f" - greatest(0, least(ts_recv, {end}) - greatest(previous_ts_recv, {start}))"
        for start, end in breaks
    )
    return f"ts_recv - previous_ts_recv{overlaps}"


def _quiet_ns(start: int, end: int, breaks: tuple[Break, ...]) -> int:
    """Nanoseconds of [start, end) outside ``breaks``."""
    inside = sum(max(0, min(end, stop) - max(start, begin)) for begin, stop in breaks)
    return end - start - inside


# Rows identical in every column agree on these: rows sharing them with another row are the
# only candidates, so the exact comparison of every column runs on few rows, not the file.
_DUPLICATE_KEY = (
    "ts_recv, ts_event, sequence, instrument_id, action, flags, bid_px_00, ask_px_00, "
    "bid_sz_00, ask_sz_00, trade_px, trade_sz, close, volume"
)
# Identical rows share their ts_recv: the smallest is the first duplicate's (rows are sorted).
_DUPLICATES_SQL = f"""
    SELECT sum(copies - 1), min(ts_recv)
    FROM (
        SELECT *, count(*) AS copies
        FROM (
            SELECT * FROM read_parquet('{{path}}')
            QUALIFY count(*) OVER (PARTITION BY {_DUPLICATE_KEY}) > 1
        )
        GROUP BY ALL
    )
    WHERE copies > 1
"""


def _row_check(
    name: str, violations: int, rows: int, description: str, example: int | None
) -> QualityCheck:
    return QualityCheck(
        name, violations == 0, violations, rows, description, example, _first_offence(example)
    )


def _first_offence(example: int | None) -> str:
    return "" if example is None else f"first offence at {_utc_text(example)} (ts_recv {example})"


def _with_session_edges(
    gaps: QualityCheck,
    scan: dict[str, int | None],
    session: tuple[int | None, int | None],
    breaks: tuple[Break, ...],
    max_gap_ns: int,
) -> QualityCheck:
    """Add the quiet time from the last record (or the open, when empty) to the session close,
    and say where the largest gap ends and which breaks were not counted; a gap's offence is
    the record (or close) ending it, the closing gap's is the last record."""
    session_open, session_close = session
    violations, example = gaps.violations, gaps.example_ts_recv
    largest, largest_end = scan["largest_gap_ns"], scan["largest_gap_end"]
    last = scan["last_ts_recv"] if scan["rows"] else session_open
    if session_close is not None and last is not None:
        closing_gap = _quiet_ns(last, session_close, breaks)
        if closing_gap > max_gap_ns:
            violations += 1
            example = last if example is None else example
        if largest is None or closing_gap > largest:
            largest, largest_end = closing_gap, session_close
    if largest is None:
        return gaps
    end = "the session close" if largest_end == session_close else "the record"
    detail = f"largest gap {largest / 1e9:.3f} s, ending at {end} at {_utc_text(largest_end)}"
    if example is not None:
        detail += f"; {_first_offence(example)}"
    if breaks:
        spans = ", ".join(f"{_utc_text(start)} to {_utc_text(end)}" for start, end in breaks)
        detail += f"; not counted: the session's break(s) {spans}"
    return dataclasses.replace(
        gaps, passed=violations == 0, violations=violations, example_ts_recv=example, detail=detail
    )


def _source_regressions_check(slim_path: Path, metadata: dict[str, str], rows: int) -> QualityCheck:
    """Read from the metadata the SLIM builder records; a file without it (a source or a
    builder that does not count) passes, saying it was not checked, rather than failing every
    day for a fact that is unknown."""
    name = "source_ts_recv_monotonic"
    description = "ts_recv never decreased between consecutive source records (before sorting)"
    if META_SOURCE_TS_RECV_REGRESSIONS not in metadata:
        detail = f"not checked: the file has no {META_SOURCE_TS_RECV_REGRESSIONS} metadata"
        return QualityCheck(name, True, 0, rows, description, detail=detail)
    regressions = _metadata_int(slim_path, metadata, META_SOURCE_TS_RECV_REGRESSIONS)
    return QualityCheck(name, regressions == 0, regressions, rows, description)


def _file_metadata(slim_path: Path) -> dict[str, str]:
    try:
        metadata = pq.read_schema(slim_path).metadata or {}
    except pa.ArrowInvalid as error:
        raise ValueError(f"{slim_path.name}: not a readable parquet file ({error})") from error
    return {key.decode(): value.decode() for key, value in metadata.items()}


def _metadata_int(slim_path: Path, metadata: dict[str, str], key: str) -> int | None:
    """The integer value of ``key`` (text or JSON), None when absent."""
    if key not in metadata:
        return None
    try:
        return int(json.loads(metadata[key]))
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"{slim_path.name}: metadata {key} is {metadata[key]!r}, expected an integer"
        ) from error


def _metadata_breaks(slim_path: Path, metadata: dict[str, str]) -> tuple[Break, ...]:
    """The session's breaks (JSON ``[[start_ns, end_ns], ...]``), none when absent."""
    if META_SESSION_BREAKS_NS not in metadata:
        return ()
    text = metadata[META_SESSION_BREAKS_NS]
    try:
        breaks = tuple((int(start), int(end)) for start, end in json.loads(text))
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"{slim_path.name}: metadata {META_SESSION_BREAKS_NS} is {text!r}, expected "
            "[[start_ns, end_ns], ...]"
        ) from error
    if any(start >= end for start, end in breaks):
        raise ValueError(
            f"{slim_path.name}: metadata {META_SESSION_BREAKS_NS} is {text!r}: each break must "
            "start before it ends"
        )
    return breaks


def _metadata_float(slim_path: Path, metadata: dict[str, str], key: str) -> float | None:
    """The positive number of ``key``, None when absent."""
    if key not in metadata:
        return None
    try:
        value = float(metadata[key])
    except ValueError as error:
        raise ValueError(
            f"{slim_path.name}: metadata {key} is {metadata[key]!r}, expected a number"
        ) from error
    if not value > 0:
        raise ValueError(f"{slim_path.name}: metadata {key} is {value}, expected it positive")
    return value


def _sql_text(text: str) -> str:
    """``text`` inside a single-quoted SQL literal."""
    return text.replace("'", "''")


def _utc_text(ts_ns: int) -> str:
    """ns since the epoch -> ISO 8601 UTC to the microsecond."""
    seconds, nanoseconds = divmod(ts_ns, 10**9)
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC) + dt.timedelta(
        microseconds=nanoseconds // 1000
    )
    return moment.isoformat().replace("+00:00", "Z")
