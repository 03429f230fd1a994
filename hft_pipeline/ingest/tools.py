"""The function behind ``hft-pipeline ingest PATH [...] --out DIR``: SLIM files for whatever
local sources a user hands over, outside Dagster.

Each path is read according to what it is (:func:`source_kind`):

- a Databento batch ZIP (steps below);
- LOBSTER files: a ZIP of message + orderbook CSV pairs, or the CSVs themselves (one given,
  its partner is taken from beside it): one SLIM file per ticker and day;
- a plain OHLCV bar file (CSV or parquet): one SLIM file per session it covers.

Steps for Databento ZIPs:
1. inspect every archive (member CRCs, manifest SHA-256) and read its DBN headers: the UTC days
   each one covers, and the root symbols its symbology (or DBN mappings) lists;
2. the trading sessions overlapping those days; a session needing a UTC day that no archive
   covers is still written, flagged ``partial``;
3. one SLIM file per (session, symbol) from the archives overlapping it, sessions in order so
   each one's front contract is chosen from the previous session's volumes (no look-ahead).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hft_pipeline.config import DataSettings
from hft_pipeline.ingest.archive import (
    ArchiveContents,
    ArchiveError,
    inspect_archive,
    open_member_stream,
)
from hft_pipeline.ingest.bar_files import (
    BAR_FILE_SUFFIXES,
    BarFileOptions,
    bar_metadata,
    iter_bar_sessions,
)
from hft_pipeline.ingest.decode import ByteStream, read_dbn_header
from hft_pipeline.ingest.lobster import (
    LobsterPair,
    iter_lobster_tables,
    lobster_metadata,
    pair_lobster_files,
    parse_lobster_name,
)
from hft_pipeline.ingest.slim import SlimSummary, build_slim_day
from hft_pipeline.ingest.slim_members import (
    DEFINITION_SCHEMA,
    ArchiveCaps,
    csv_member_facts,
    open_member_records,
)
from hft_pipeline.ingest.slim_schema import META_PARTIAL
from hft_pipeline.ingest.slim_spill import write_slim_tables
from hft_pipeline.instruments import ROOT_SPECS, contract_root
from hft_pipeline.layout import yyyymmdd
from hft_pipeline.partitions import TradingCalendar

__all__ = [
    "ArchiveCoverage",
    "SourceSummary",
    "archive_coverage",
    "ingest_archives",
    "slim_file_name",
    "source_kind",
]

DATABENTO, LOBSTER, BARS = "databento", "lobster", "bars"
_HASH_BLOCK_BYTES = 2**20
# CSV rows read to learn which contracts a member without symbology.json holds.
_PEEK_RECORDS = 4_096


@dataclass(frozen=True)
class ArchiveCoverage:
    """What one archive holds, from its sidecars and DBN headers."""

    path: Path
    utc_days: frozenset[dt.date]  # the DBN requests' [start, end) in whole UTC days
    roots: frozenset[str]  # root symbols of the outright contracts listed, e.g. {"ES"}


@dataclass(frozen=True)
class SourceSummary:
    """What one SLIM file written from a LOBSTER pair or a bar file holds."""

    path: Path
    rows: int
    source: str  # LOBSTER or BARS
    day: dt.date
    symbol: str  # ticker (LOBSTER) or root symbol (bars)
    contract: str
    partial: bool  # the source's span misses part of the session
    source_files: list[dict]  # [{archive, member, sha256}]
    skipped_rows: int = 0  # bars outside every session, left out
    first_ts_recv: int | None = None
    last_ts_recv: int | None = None


def slim_file_name(day: dt.date, symbol: str) -> str:
    """``live_<yyyymmdd>_<SYM>_SLIM.parquet``, the SLIM file name of :mod:`layout`."""
    return f"live_{yyyymmdd(day)}_{symbol}_SLIM.parquet"


def ingest_archives(
    archives: Sequence[Path],
    out_dir: Path,
    symbols: Sequence[str] | None = None,
    calendar: str | TradingCalendar = "CME_Equity",
    bar_options: BarFileOptions | None = None,
    caps: ArchiveCaps | None = None,
    *,
    front_contract_rule: str = DataSettings.front_contract_rule,
    memory_mb: int = DataSettings.ingest_memory_mb,
) -> list[SlimSummary | SourceSummary]:
    """Write one SLIM parquet file per trading session and symbol the given sources cover.

    Parameters
    ----------
    archives : Sequence[Path]
        Databento batch ZIPs, LOBSTER ZIPs or CSVs, bar files; in any order and mix.
    out_dir : Path
        Folder for ``live_<yyyymmdd>_<SYM>_SLIM.parquet`` files (rewritten atomically).
    symbols : Sequence[str], optional
        Root symbols (or LOBSTER tickers) to keep (``["ES"]``); None keeps every one present.
        A single symbol is also the root of bar files that do not name their contract.
    calendar : str or TradingCalendar, default "CME_Equity"
        Trading calendar giving the sessions of Databento and bar sources (pandas-market-
        calendars name or ``24/7``, whole electronic sessions; or a calendar with its trading
        hours, e.g. ``TradingCalendar.from_settings``); LOBSTER days use NASDAQ's.
    bar_options : BarFileOptions, optional
        How to read bar files; default: infer everything (see :mod:`bar_files`).
    caps : ArchiveCaps, optional
        Zip-bomb caps of every ZIP read; default: ``DataSettings``' defaults.
    front_contract_rule : str, default DataSettings.front_contract_rule
        How each Databento session's front contract is chosen (see :func:`build_slim_day`).
    memory_mb : int, default DataSettings.ingest_memory_mb
        Working memory bound of each Databento SLIM build.

    Returns
    -------
    list[SlimSummary | SourceSummary]
        Databento files by session, then symbol; then LOBSTER files; then bar files, each by
        session. ``partial`` marks a session the sources do not wholly cover (for Databento,
        a UTC day without archive; ``rows`` may then be 0).

    Raises
    ------
    ValueError
        No path, a path of no known kind, or none of ``symbols`` in the Databento archives.
    ArchiveError, LobsterError, BarFileError
        A source that fails verification or cannot be read.
    """
    if not archives:
        raise ValueError("no archive given; pass Databento ZIPs, LOBSTER files or bar files")
    by_kind: dict[str, list[Path]] = {DATABENTO: [], LOBSTER: [], BARS: []}
    for path in archives:
        by_kind[source_kind(Path(path))].append(Path(path))
    caps = caps or ArchiveCaps()
    if isinstance(calendar, str):
        calendar = TradingCalendar(calendar)
    summaries: list[SlimSummary | SourceSummary] = []
    if by_kind[DATABENTO]:
        build = functools.partial(
            build_slim_day,
            front_contract_rule=front_contract_rule,
            trading_hours=calendar.hours.kind,
            memory_mb=memory_mb,
            **caps.as_kwargs(),
        )
        summaries += _ingest_databento(by_kind[DATABENTO], out_dir, symbols, calendar, build, caps)
    summaries += _ingest_lobster(by_kind[LOBSTER], out_dir, symbols, caps)
    for path in by_kind[BARS]:
        root = symbols[0] if symbols and len(symbols) == 1 else None
        options = bar_options or BarFileOptions()
        summaries += _ingest_bar_file(path, out_dir, root, calendar, options)
    return summaries


def source_kind(path: Path) -> str:
    """``databento``, ``lobster`` or ``bars``: how a path is read (by name and ZIP members)."""
    if parse_lobster_name(path.name) is not None:
        return LOBSTER
    if path.name.endswith(BAR_FILE_SUFFIXES):
        return BARS
    if path.suffix == ".zip":
        return LOBSTER if _lobster_members(path) else DATABENTO
    raise ValueError(
        f"{path}: not a source this command reads; give Databento batch ZIPs, LOBSTER ZIPs or "
        f"message/orderbook CSVs, or bar files ending in {BAR_FILE_SUFFIXES}"
    )


def _ingest_databento(
    archives: list[Path],
    out_dir: Path,
    symbols: Sequence[str] | None,
    calendar: TradingCalendar,
    build: Callable[..., SlimSummary],
    caps: ArchiveCaps,
) -> list[SlimSummary]:
    """Databento ZIPs -> SLIM files (the module's steps); ``build`` is :func:`build_slim_day`
    with the options of every session."""
    coverages = [archive_coverage(path, caps) for path in archives]
    # Roots without a contract specification cannot be converted to SLIM prices.
    present = set().union(*(coverage.roots for coverage in coverages)) & set(ROOT_SPECS)
    wanted = sorted(present if symbols is None else set(symbols) & present)
    if not wanted:
        raise ValueError(
            f"none of the symbols {sorted(symbols or [])} is in the archives, which list "
            f"{sorted(present)}; pick among those"
        )
    days = set().union(*(coverage.utc_days for coverage in coverages))
    lead = dt.timedelta(days=calendar.session_lead_days + 1)
    sessions = [
        session
        for session in calendar.sessions(min(days) - lead, max(days) + lead)
        if days.intersection(session.utc_days)
    ]
    if not sessions:
        raise ValueError(
            f"{', '.join(path.name for path in archives)}: UTC day(s) "
            f"{[day.isoformat() for day in sorted(days)]} overlap no trading session of "
            f"calendar {calendar.name!r} (a weekend or an exchange holiday); nothing to write"
        )
    summaries = []
    previous_volumes: dict[str, Mapping[str, int] | None] = dict.fromkeys(wanted)
    for session in sessions:
        for symbol in wanted:
            inputs = [
                coverage.path
                for coverage in coverages
                if symbol in coverage.roots and coverage.utc_days.intersection(session.utc_days)
            ]
            if not inputs:
                continue
            summary = build(
                inputs,
                session,
                symbol,
                out_dir / slim_file_name(session.day, symbol),
                expected_utc_days=session.utc_days,
                previous_contract_volumes=previous_volumes[symbol],
            )
            previous_volumes[symbol] = summary.contract_volumes or previous_volumes[symbol]
            summaries.append(summary)
    return summaries


def _ingest_lobster(
    paths: list[Path], out_dir: Path, symbols: Sequence[str] | None, caps: ArchiveCaps
) -> list[SourceSummary]:
    """LOBSTER ZIPs and loose CSV pairs -> one SLIM file per ticker and day."""
    summaries = []
    loose = {p: p for path in paths if path.suffix != ".zip" for p in _with_partner(path)}
    for archive in [path for path in paths if path.suffix == ".zip"]:
        for pair in pair_lobster_files(_lobster_members(archive)):
            if symbols is None or pair.ticker in symbols:
                summaries.append(_write_lobster_pair(pair, out_dir, archive, caps))
    for pair in pair_lobster_files([str(path) for path in sorted(loose)]):
        if symbols is None or pair.ticker in symbols:
            summaries.append(_write_lobster_pair(pair, out_dir, None, caps))
    return summaries


def _write_lobster_pair(
    pair: LobsterPair, out_dir: Path, archive: Path | None, caps: ArchiveCaps
) -> SourceSummary:
    """One LOBSTER pair (ZIP members when ``archive`` is given, else files) -> its SLIM file."""
    sources = [_source_file(archive, name, caps) for name in (pair.message, pair.orderbook)]
    metadata = lobster_metadata(pair, sources)
    out_path = out_dir / slim_file_name(pair.day, pair.ticker)
    with (
        _open_source(archive, pair.message, caps) as message,
        _open_source(archive, pair.orderbook, caps) as orderbook,
    ):
        tables = iter_lobster_tables(message, orderbook, pair)
        written = write_slim_tables(tables, metadata, out_path)
    return SourceSummary(
        path=out_path,
        rows=written.rows,
        source=LOBSTER,
        day=pair.day,
        symbol=pair.ticker,
        contract=pair.ticker,
        partial=json.loads(metadata[META_PARTIAL]),
        source_files=sources,
        first_ts_recv=written.first_ts_recv,
        last_ts_recv=written.last_ts_recv,
    )


def _ingest_bar_file(
    path: Path,
    out_dir: Path,
    root: str | None,
    calendar: TradingCalendar,
    options: BarFileOptions,
) -> list[SourceSummary]:
    """One bar file -> one SLIM file per session it covers, written as the file streams by."""
    sources = [_source_file(None, str(path), ArchiveCaps())]
    summaries = []
    for bars in iter_bar_sessions(path, root, calendar, options):
        symbol = bars.table.column("symbol")[0].as_py()
        out_path = out_dir / slim_file_name(bars.session.day, symbol)
        metadata = bar_metadata(bars, symbol, sources)
        written = write_slim_tables([bars.table], metadata, out_path)
        summaries.append(
            SourceSummary(
                path=out_path,
                rows=written.rows,
                source=BARS,
                day=bars.session.day,
                symbol=symbol,
                contract=bars.contract,
                partial=bars.partial,
                source_files=sources,
                skipped_rows=bars.skipped_bars,
                first_ts_recv=written.first_ts_recv,
                last_ts_recv=written.last_ts_recv,
            )
        )
    return summaries


def _lobster_members(archive: Path) -> list[str]:
    """The LOBSTER message/orderbook file names in a ZIP (none for a Databento ZIP)."""
    try:
        with zipfile.ZipFile(archive) as opened:
            names = opened.namelist()
    except (zipfile.BadZipFile, OSError) as error:
        raise ArchiveError(archive, None, f"not a readable ZIP file ({error})") from error
    return [name for name in names if parse_lobster_name(name) is not None]


def _with_partner(path: Path) -> list[Path]:
    """A LOBSTER CSV and, when it lies beside it, the other file of its pair."""
    parsed = parse_lobster_name(path.name)
    other = "orderbook" if parsed.kind == "message" else "message"
    partner = path.with_name(path.name.replace(f"_{parsed.kind}_", f"_{other}_"))
    return [path, partner] if partner.is_file() else [path]


@contextlib.contextmanager
def _open_source(archive: Path | None, name: str, caps: ArchiveCaps) -> Iterator[ByteStream]:
    """A ZIP member's bytes (checked as archive.py checks every member) or a file's."""
    if archive is None:
        with Path(name).open("rb") as stream:
            yield stream
    else:
        with open_member_stream(archive, name, **caps.as_kwargs()) as stream:
            yield stream


def _source_file(archive: Path | None, name: str, caps: ArchiveCaps) -> dict:
    """``{archive, member, sha256}`` of a ZIP member's or a file's bytes as extracted."""
    digest = hashlib.sha256()
    with _open_source(archive, name, caps) as stream:
        while block := stream.read(_HASH_BLOCK_BYTES):
            digest.update(block)
    if archive is None:
        return {"archive": Path(name).name, "member": None, "sha256": digest.hexdigest()}
    return {"archive": archive.name, "member": name, "sha256": digest.hexdigest()}


def archive_coverage(path: Path, caps: ArchiveCaps | None = None) -> ArchiveCoverage:
    """The UTC days and root symbols of one archive's data members, after verifying it."""
    caps = caps or ArchiveCaps()
    contents = inspect_archive(path, **caps.as_kwargs())
    days: set[dt.date] = set()
    symbols: set[str] = set(_symbology_keys(contents))
    for member in contents.dbn_members:
        with open_member_stream(path, member, **caps.as_kwargs()) as stream:
            header = read_dbn_header(stream)
        if header.schema != DEFINITION_SCHEMA:  # definitions name contracts, not data days
            days.update(header.utc_days)
        symbols.update(header.mappings)
        symbols.update(
            str(interval.get("s", ""))
            for intervals in header.mappings.values()
            for interval in intervals
        )
    for member in contents.csv_members:
        days.update(csv_member_facts(contents, member)[1])
        if contents.symbology is None:
            symbols.update(_csv_symbols(contents, member, caps))
    roots = {root for symbol in symbols if (root := contract_root(symbol))}
    return ArchiveCoverage(path=path, utc_days=frozenset(days), roots=frozenset(roots))


def _csv_symbols(contents: ArchiveContents, member: str, caps: ArchiveCaps) -> set[str]:
    """The raw symbols in a CSV member's first rows (its ``symbol`` column, when present)."""
    with open_member_records(contents, member, _PEEK_RECORDS, caps) as data:
        first = next(data.chunks, None)
    if first is None or first.symbols is None:
        return set()
    return {name for name in first.symbols.unique().to_pylist() if name}


def _symbology_keys(contents: ArchiveContents) -> list[str]:
    """Raw symbols (and mapped values) named in symbology.json's ``result``."""
    symbology = contents.symbology
    result = symbology.get("result", symbology) if isinstance(symbology, Mapping) else {}
    names = []
    for key, intervals in result.items() if isinstance(result, Mapping) else []:
        if isinstance(intervals, list):
            names.append(str(key))
            names += [str(i.get("s", "")) for i in intervals if isinstance(i, Mapping)]
    return names
