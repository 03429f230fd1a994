"""The function behind ``hft-pipeline ingest ARCHIVE.zip [...] --out DIR``: SLIM files for
whatever local archives a user hands over, outside Dagster.

Steps of :func:`ingest_archives`:
1. inspect every archive (member CRCs, manifest SHA-256) and read its DBN headers: the UTC days
   each one covers, and the root symbols its symbology (or DBN mappings) lists;
2. the trading sessions overlapping those days; a session needing a UTC day that no archive
   covers is still written, flagged ``partial``;
3. one SLIM file per (session, symbol) from the archives overlapping it, sessions in order so
   each one's front contract is chosen from the previous session's volumes (no look-ahead).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hft_pipeline.ingest.archive import ArchiveContents, inspect_archive, open_member_stream
from hft_pipeline.ingest.decode import read_dbn_header
from hft_pipeline.ingest.slim import SlimSummary, build_slim_day
from hft_pipeline.instruments import ROOT_SPECS, contract_root
from hft_pipeline.layout import yyyymmdd
from hft_pipeline.partitions import TradingCalendar

__all__ = ["ArchiveCoverage", "archive_coverage", "ingest_archives", "slim_file_name"]


@dataclass(frozen=True)
class ArchiveCoverage:
    """What one archive holds, from its sidecars and DBN headers."""

    path: Path
    utc_days: frozenset[dt.date]  # the DBN requests' [start, end) in whole UTC days
    roots: frozenset[str]  # root symbols of the outright contracts listed, e.g. {"ES"}


def slim_file_name(day: dt.date, symbol: str) -> str:
    """``live_<yyyymmdd>_<SYM>_SLIM.parquet``, the SLIM file name of :mod:`layout`."""
    return f"live_{yyyymmdd(day)}_{symbol}_SLIM.parquet"


def ingest_archives(
    archives: Sequence[Path],
    out_dir: Path,
    symbols: Sequence[str] | None = None,
    calendar: str = "CME_Equity",
) -> list[SlimSummary]:
    """Write one SLIM parquet file per trading session and root symbol the archives cover.

    Parameters
    ----------
    archives : Sequence[Path]
        Local Databento batch ZIPs, in any order.
    out_dir : Path
        Folder for ``live_<yyyymmdd>_<SYM>_SLIM.parquet`` files (rewritten atomically).
    symbols : Sequence[str], optional
        Root symbols to keep (``["ES"]``); None keeps every root the archives list.
    calendar : str, default "CME_Equity"
        Trading calendar giving the sessions (pandas-market-calendars name or ``24/7``).

    Returns
    -------
    list[SlimSummary]
        By session, then symbol. ``partial`` marks a session whose UTC days the archives do
        not all cover (the range's edges); ``rows`` may then be 0.

    Raises
    ------
    ValueError
        No archive, or none of ``symbols`` in any archive.
    ArchiveError
        An archive that fails verification or cannot be decoded.
    """
    if not archives:
        raise ValueError("no archive given; pass one or more Databento batch ZIP files")
    coverages = [archive_coverage(Path(path)) for path in archives]
    # Roots without a contract specification cannot be converted to SLIM prices.
    present = set().union(*(coverage.roots for coverage in coverages)) & set(ROOT_SPECS)
    wanted = sorted(present if symbols is None else set(symbols) & present)
    if not wanted:
        raise ValueError(
            f"none of the symbols {sorted(symbols or [])} is in the archives, which list "
            f"{sorted(present)}; pick among those"
        )
    days = set().union(*(coverage.utc_days for coverage in coverages))
    trading_calendar = TradingCalendar(calendar)
    lead = dt.timedelta(days=trading_calendar.session_lead_days + 1)
    sessions = [
        session
        for session in trading_calendar.sessions(min(days) - lead, max(days) + lead)
        if days.intersection(session.utc_days)
    ]
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
            summary = build_slim_day(
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


def archive_coverage(path: Path) -> ArchiveCoverage:
    """The UTC days and root symbols of one archive, after verifying it."""
    contents = inspect_archive(path)
    days: set[dt.date] = set()
    symbols: set[str] = set(_symbology_keys(contents))
    for member in contents.dbn_members:
        with open_member_stream(path, member) as stream:
            header = read_dbn_header(stream)
        days.update(header.utc_days)
        symbols.update(header.mappings)
        symbols.update(
            str(interval.get("s", ""))
            for intervals in header.mappings.values()
            for interval in intervals
        )
    roots = {root for symbol in symbols if (root := contract_root(symbol))}
    return ArchiveCoverage(path=path, utc_days=frozenset(days), roots=frozenset(roots))


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
