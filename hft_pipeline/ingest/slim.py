"""One trading day's SLIM parquet file for one root symbol, built from its raw archives.

Steps of :func:`build_slim_day`:
1. read and verify every archive (member names, manifest SHA-256, sidecars);
2. decode each DBN member a chunk at a time, keeping the root's records whose ``ts_recv`` falls
   in the session, converted to SLIM columns at once (one table per chunk and contract);
3. choose the front contract from the previous day's volumes (no look-ahead);
4. sort its rows by ``ts_recv`` then ``sequence`` and write them in bounded row groups, with
   the file metadata, through an atomic rename.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hft_pipeline.ingest import slim_schema
from hft_pipeline.ingest.archive import (
    ArchiveContents,
    ArchiveError,
    degraded_days,
    inspect_archive,
    open_member_stream,
    root_instruments,
)
from hft_pipeline.ingest.dbn_layout import PRICE_SCALE
from hft_pipeline.ingest.decode import DbnFormatError, iter_record_chunks, read_dbn_header
from hft_pipeline.ingest.slim_rows import records_to_slim_table
from hft_pipeline.ingest.slim_schema import SLIM_SCHEMA
from hft_pipeline.instruments import contract_sort_key, root_spec
from hft_pipeline.layout import atomic_file
from hft_pipeline.partitions import Session

__all__ = [
    "ArchiveError",
    "SlimSummary",
    "build_slim_day",
    "choose_front_contract",
    "read_slim_metadata",
    "records_to_slim_table",
]

# Rows per parquet row group: bounds the writer's memory (~70 MB of MBP-10 columns).
ROW_GROUP_ROWS = 131_072
_META_KEYS = frozenset(
    value for name, value in vars(slim_schema).items() if name.startswith("META_")
)


@dataclass(frozen=True)
class SlimSummary:
    """What :func:`build_slim_day` wrote; ``rows == 0`` means the session had no record."""

    path: Path
    rows: int
    contract: str  # chosen front contract, e.g. ESH1
    instrument_id: int
    contract_volumes: dict[str, int]  # this session's traded volume per contract present
    source_files: list[dict]  # [{archive, member, sha256}]
    degraded: bool  # condition.json marks one of the session's UTC days degraded
    partial: bool  # an expected UTC day had no archive
    first_ts_recv: int | None
    last_ts_recv: int | None
    missing_utc_days: list[dt.date] = field(default_factory=list)
    schemas: list[str] = field(default_factory=list)  # DBN schemas read, e.g. ["mbp-10"]


@dataclass
class _SessionRows:
    """The session's rows of the root's contracts, gathered chunk by chunk."""

    tables: defaultdict[str, list[pa.Table]] = field(default_factory=lambda: defaultdict(list))
    # Traded volume per schema, then contract: every schema read sees the same trades.
    volumes: defaultdict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    instruments: dict[int, str] = field(default_factory=dict)  # the root's contracts listed
    covered_days: set[dt.date] = field(default_factory=set)  # UTC days the DBN requests span
    degraded_days: set[dt.date] = field(default_factory=set)
    schemas: set[str] = field(default_factory=set)
    source_files: list[dict] = field(default_factory=list)


def build_slim_day(
    archives: Sequence[Path],
    session: Session,
    symbol: str,
    out_path: Path,
    *,
    expected_utc_days: Sequence[dt.date] | None = None,
    previous_contract_volumes: Mapping[str, int] | None = None,
    chunk_records: int = 65_536,
) -> SlimSummary:
    """Write one trading session of a root symbol's front contract as a SLIM parquet file.

    Parameters
    ----------
    archives : Sequence[Path]
        Local Databento batch ZIPs whose UTC days overlap the session, read in name order.
    session : Session
        The trading day and its [open_ns, close_ns) span; records are kept by ``ts_recv``.
    symbol : str
        Root symbol, e.g. ``ES``; must be in ``instruments.ROOT_SPECS``.
    out_path : Path
        Parquet file to (re)write atomically; an earlier file survives any failure.
    expected_utc_days : Sequence[date], optional
        UTC days the session needs; one that no DBN member covers makes the file ``partial``.
    previous_contract_volumes : Mapping[str, int], optional
        The previous trading day's volume per contract; the largest among the contracts
        present is the front contract. None or empty: the nearest expiry.
    chunk_records : int, default 65_536
        DBN records decoded at a time.

    Returns
    -------
    SlimSummary
        Rows are in ``ts_recv`` order, ties by ``sequence``, then by archive name, member name
        and position in the member. An empty session gives an empty file and ``rows == 0``.

    Raises
    ------
    ArchiveError
        A damaged or unsafe archive, a manifest hash mismatch, a DBN stream that cannot be
        decoded, or an archive with no contract of ``symbol`` in its symbology.
    """
    if not archives:
        raise ValueError(f"no archive given for {symbol} on {session.day}; nothing to build")
    tick_size = root_spec(symbol).tick_size
    gathered = _SessionRows()
    for path in sorted((Path(archive) for archive in archives), key=lambda p: p.name):
        _gather_archive(inspect_archive(path), session, symbol, chunk_records, gathered)

    present = sorted(gathered.tables)
    contract = choose_front_contract(
        present or set(gathered.instruments.values()), previous_contract_volumes, session.day.year
    )
    contract_volumes = {
        name: max((int(volumes[name]) for volumes in gathered.volumes.values()), default=0)
        for name in present
    }
    missing = sorted(set(expected_utc_days or ()) - gathered.covered_days)
    degraded, partial = bool(gathered.degraded_days), bool(missing)
    # Only the chosen contract's rows are written; let the others go before sorting.
    table = _sorted_rows(gathered.tables.pop(contract, []))
    gathered.tables.clear()
    metadata = {
        slim_schema.META_SCHEMA_VERSION: slim_schema.SLIM_SCHEMA_VERSION,
        slim_schema.META_TRADING_DAY: session.day.isoformat(),
        slim_schema.META_SYMBOL: symbol,
        slim_schema.META_TICK_SIZE: repr(tick_size),
        slim_schema.META_PRICE_SCALE: str(PRICE_SCALE),
        slim_schema.META_SOURCE_FILES: json.dumps(gathered.source_files),
        slim_schema.META_CONTRACT: contract,
        slim_schema.META_CONTRACT_VOLUMES: json.dumps(contract_volumes, sort_keys=True),
        slim_schema.META_SESSION_OPEN_NS: str(session.open_ns),
        slim_schema.META_SESSION_CLOSE_NS: str(session.close_ns),
        slim_schema.META_DEGRADED: json.dumps(degraded),
        slim_schema.META_PARTIAL: json.dumps(partial),
    }
    _write_slim(table, metadata, out_path)
    ts_recv = table.column("ts_recv")
    return SlimSummary(
        path=out_path,
        rows=table.num_rows,
        contract=contract,
        instrument_id=min(i for i, name in gathered.instruments.items() if name == contract),
        contract_volumes=contract_volumes,
        source_files=gathered.source_files,
        degraded=degraded,
        partial=partial,
        first_ts_recv=ts_recv[0].as_py() if table.num_rows else None,
        last_ts_recv=ts_recv[-1].as_py() if table.num_rows else None,
        missing_utc_days=missing,
        schemas=sorted(gathered.schemas),
    )


def read_slim_metadata(path: Path) -> dict[str, str]:
    """The SLIM file's ``META_*`` key-value metadata as text (JSON values left as text)."""
    metadata = pq.read_schema(path).metadata or {}
    decoded = {key.decode(): value.decode() for key, value in metadata.items()}
    return {key: value for key, value in decoded.items() if key in _META_KEYS}


def choose_front_contract(
    candidates: Collection[str],
    previous_volumes: Mapping[str, int] | None,
    reference_year: int,
) -> str:
    """The contract with the most volume on the previous trading day, else the nearest expiry.

    Parameters
    ----------
    candidates : Collection[str]
        Contracts present in the session, e.g. ``{"ESH4", "ESM4"}``.
    previous_volumes : Mapping[str, int], optional
        Volumes of the previous trading day; never the session's own (that would look ahead).
    reference_year : int
        The session's year, to read 1-digit contract years (``ESH4``).

    Returns
    -------
    str
        Ties, and candidates without previous volume, go to the nearest expiry.
    """
    if not candidates:
        raise ValueError("no candidate contract to choose a front contract from")
    by_expiry = sorted(candidates, key=lambda name: contract_sort_key(name, reference_year))
    volumes = previous_volumes or {}
    # max() keeps the first of equal volumes: the nearest expiry wins ties.
    busiest = max(by_expiry, key=lambda name: volumes.get(name, 0))
    return busiest if volumes.get(busiest, 0) > 0 else by_expiry[0]


def _gather_archive(
    archive: ArchiveContents,
    session: Session,
    symbol: str,
    chunk_records: int,
    gathered: _SessionRows,
) -> None:
    """Add one archive's session rows, volumes, covered days and condition to ``gathered``."""
    listed = _symbology_instruments(archive, symbol, session)
    gathered.degraded_days.update(degraded_days(archive.condition, session.utc_days))
    for member in archive.dbn_members:
        with open_member_stream(archive.path, member) as stream:
            try:
                header = read_dbn_header(stream)
                # Without symbology.json the DBN metadata's own symbol mappings say the same.
                instruments = listed or _instruments_or_error(
                    header.mappings, symbol, session, archive, member
                )
                schema = header.schema or "mixed"
                for records in iter_record_chunks(stream, header, chunk_records):
                    _add_chunk(records, instruments, session, symbol, schema, gathered)
            except DbnFormatError as error:
                raise ArchiveError(archive.path, member, str(error)) from error
        gathered.instruments.update(instruments)
        gathered.covered_days.update(header.utc_days)
        gathered.schemas.add(schema)
        gathered.source_files.append(
            {"archive": archive.path.name, "member": member, "sha256": archive.sha256[member]}
        )


def _add_chunk(
    records: np.ndarray,
    instruments: Mapping[int, str],
    session: Session,
    symbol: str,
    schema: str,
    gathered: _SessionRows,
) -> None:
    """Keep the chunk's records of the root's contracts received within the session."""
    ts_recv, instrument_ids = records["ts_recv"], records["instrument_id"]
    keep = (ts_recv >= session.open_ns) & (ts_recv < session.close_ns)
    keep &= np.isin(instrument_ids, np.fromiter(instruments, np.uint32))
    if not keep.any():
        return
    # Opaque fixed-size items: selecting them is a plain memcpy, not a field-by-field copy.
    opaque = records.view(np.dtype((np.void, records.dtype.itemsize)))
    for instrument in np.unique(instrument_ids[keep]):
        rows = opaque[keep & (instrument_ids == instrument)].view(records.dtype)
        contract = instruments[int(instrument)]
        gathered.tables[contract].append(records_to_slim_table(rows, contract, symbol))
        traded = rows["size"][rows["action"] == b"T"]
        gathered.volumes[schema][contract] += int(traded.sum(dtype=np.int64))


def _symbology_instruments(
    archive: ArchiveContents, symbol: str, session: Session
) -> dict[int, str]:
    """The root's contracts from symbology.json; empty when the archive has none."""
    if archive.symbology is None:
        return {}
    symbology = archive.symbology
    result = symbology.get("result", symbology) if isinstance(symbology, Mapping) else {}
    return _instruments_or_error(result, symbol, session, archive, "symbology.json")


def _instruments_or_error(
    mappings: Mapping, symbol: str, session: Session, archive: ArchiveContents, member: str
) -> dict[int, str]:
    try:
        instruments = root_instruments(mappings, symbol, session.utc_days)
    except ValueError as error:
        raise ArchiveError(archive.path, member, str(error)) from error
    if not instruments:
        shown = sorted(map(str, mappings))[:10]
        raise ArchiveError(
            archive.path,
            member,
            f"no {symbol} contract (like {symbol}H4) mapped to an instrument_id on UTC days "
            f"{[day.isoformat() for day in session.utc_days]}; symbols found: {shown}. "
            "Request the data with stype_in=raw_symbol or a parent symbol mapped to raw symbols",
        )
    return instruments


def _sorted_rows(tables: list[pa.Table]) -> pa.Table:
    """Rows in arrival order: ``ts_recv``, ties by ``sequence``; stable otherwise."""
    if not tables:
        return SLIM_SCHEMA.empty_table()
    table = pa.concat_tables(tables)
    ts_recv = table.column("ts_recv").to_numpy()
    sequence = table.column("sequence").to_numpy()
    later, same_time = np.diff(ts_recv) > 0, np.diff(ts_recv) == 0
    if np.all(later | (same_time & (np.diff(sequence) >= 0))):
        return table  # one sorted member, or days in order: the usual case, no copy
    return table.combine_chunks().take(np.lexsort((sequence, ts_recv)))


def _write_slim(table: pa.Table, metadata: dict[str, str], out_path: Path) -> None:
    """Write in row groups of ``ROW_GROUP_ROWS``; no wall-clock value, so reruns are identical."""
    schema = SLIM_SCHEMA.with_metadata(metadata)
    with (
        atomic_file(out_path) as temporary,
        pq.ParquetWriter(temporary, schema, compression="zstd") as writer,
    ):
        for start in range(0, table.num_rows, ROW_GROUP_ROWS):
            writer.write_table(table.slice(start, ROW_GROUP_ROWS))
