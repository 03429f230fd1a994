"""The data members of a Databento batch ZIP as record chunks, whatever their encoding.

DBN members (versions 1-3; schema and UTC days from the DBN metadata) and Databento CSV members
(schema and UTC day from the file name, e.g. ``glbx-mdp3-20240102.mbp-10.csv.zst``, else from
metadata.json's query) yield the same numpy record arrays, so the SLIM build reads both alike.
DBN members of schema ``definition`` are not record data: :func:`archive_definitions` reads
them as instrument facts (tick size, ``instrument_id -> raw_symbol``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa

from hft_pipeline.ingest.archive import (
    DEFAULT_MAX_COMPRESSION_RATIO,
    DEFAULT_MAX_UNCOMPRESSED_GB,
    ArchiveContents,
    ArchiveError,
    open_member_stream,
)
from hft_pipeline.ingest.databento_csv import DatabentoCsvError, iter_csv_chunks
from hft_pipeline.ingest.decode import DbnFormatError, iter_record_chunks, read_dbn_header
from hft_pipeline.ingest.definitions import InstrumentDefinition, read_definitions
from hft_pipeline.instruments import contract_root

DEFINITION_SCHEMA = "definition"
# Databento's per-day file names: <dataset>-<yyyymmdd>.<schema>.csv[.zst]
_CSV_NAME = re.compile(r"(?P<day>\d{8})\.(?P<schema>[a-z0-9-]+)\.csv(?:\.zst)?$")
_NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class ArchiveCaps:
    """Zip-bomb caps handed to every archive read (see :func:`archive.inspect_archive`)."""

    max_uncompressed_gb: float = DEFAULT_MAX_UNCOMPRESSED_GB
    max_compression_ratio: float = DEFAULT_MAX_COMPRESSION_RATIO

    def as_kwargs(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RecordChunk:
    """Consecutive records of one member, with their CSV ``symbol`` column when it has one."""

    records: np.ndarray  # a dbn_layout dtype, e.g. MBP10_DTYPE
    symbols: pa.Array | None = None  # raw symbol per record (CSV with map_symbols)


@dataclass(frozen=True)
class MemberRecords:
    """One data member opened for reading: what it is, and its records chunk by chunk."""

    member: str
    schema: str  # e.g. "mbp-10"; "mixed" for a DBN stream whose metadata names no schema
    utc_days: list[dt.date]  # UTC days the member's request covers
    mappings: dict[str, list[dict]]  # the DBN metadata's symbology; empty for CSV
    chunks: Iterator[RecordChunk]


def member_schemas(archive: ArchiveContents, caps: ArchiveCaps) -> dict[str, str]:
    """Schema of each DBN and CSV member, by name (DBN headers are read, not their records)."""
    schemas = {}
    for member in archive.dbn_members:
        with _member_errors(archive, member, caps) as stream:
            schemas[member] = read_dbn_header(stream).schema or "mixed"
    for member in archive.csv_members:
        schemas[member] = csv_member_facts(archive, member)[0]
    return schemas


def archive_definitions(
    archive: ArchiveContents, members: list[str], root: str, caps: ArchiveCaps
) -> list[InstrumentDefinition]:
    """Definitions of ``root``'s instruments in the ``definition`` DBN ``members``."""
    definitions = []
    for member in members:
        with _member_errors(archive, member, caps) as stream:
            source = f"{archive.path.name}:{member}"
            definitions += read_definitions(stream, asset=root, source=source)
    return definitions


@contextlib.contextmanager
def open_member_records(
    archive: ArchiveContents, member: str, chunk_records: int, caps: ArchiveCaps
) -> Iterator[MemberRecords]:
    """Open a DBN or CSV data member; decoding errors surface as :class:`ArchiveError`."""
    with _member_errors(archive, member, caps) as stream:
        if member in archive.csv_members:
            schema, utc_days = csv_member_facts(archive, member)
            chunks = (
                RecordChunk(chunk.records, chunk.symbols)
                for chunk in iter_csv_chunks(stream, schema, chunk_records)
            )
            yield MemberRecords(member, schema, utc_days, {}, chunks)
        else:
            header = read_dbn_header(stream)
            chunks = (
                RecordChunk(records)
                for records in iter_record_chunks(stream, header, chunk_records)
            )
            schema = header.schema or "mixed"
            yield MemberRecords(member, schema, header.utc_days, header.mappings, chunks)


def csv_member_facts(archive: ArchiveContents, member: str) -> tuple[str, list[dt.date]]:
    """(schema, UTC days) of a CSV member: from its Databento file name, else metadata.json."""
    named = _CSV_NAME.search(PurePosixPath(member).name)
    if named is not None:
        day = dt.datetime.strptime(named["day"], "%Y%m%d").date()
        return named["schema"], [day]
    metadata = archive.metadata if isinstance(archive.metadata, Mapping) else {}
    query = metadata.get("query", metadata)
    schema, start, end = (query.get(key) for key in ("schema", "start", "end"))
    if not schema or start is None:
        raise ArchiveError(
            archive.path,
            member,
            "cannot tell the CSV file's schema and day: name it like Databento does "
            "(glbx-mdp3-20240102.mbp-10.csv.zst) or keep the archive's metadata.json "
            "(query.schema, query.start)",
        )
    first = _as_ns(start) // _NS_PER_DAY
    last = first if end is None else max(first, (_as_ns(end) - 1) // _NS_PER_DAY)
    epoch = dt.date(1970, 1, 1)
    return str(schema), [epoch + dt.timedelta(days=day) for day in range(first, last + 1)]


def chunk_instruments(chunk: RecordChunk, root: str) -> dict[int, str]:
    """``instrument_id -> raw_symbol`` of ``root``'s outright contracts named in the chunk's
    CSV ``symbol`` column; empty when the chunk has none."""
    if chunk.symbols is None or not len(chunk.records):
        return {}
    instruments, first_rows = np.unique(chunk.records["instrument_id"], return_index=True)
    names = chunk.symbols.take(pa.array(first_rows)).to_pylist()
    return {
        int(instrument): name
        for instrument, name in zip(instruments, names, strict=True)
        if name is not None and contract_root(name) == root
    }


@contextlib.contextmanager
def _member_errors(archive: ArchiveContents, member: str, caps: ArchiveCaps) -> Iterator[Any]:
    """The member's stream; a decoding error names the archive and member."""
    with open_member_stream(archive.path, member, **caps.as_kwargs()) as stream:
        try:
            yield stream
        except (DbnFormatError, DatabentoCsvError) as error:
            raise ArchiveError(archive.path, member, str(error)) from error


def _as_ns(value: Any) -> int:
    """metadata.json time: ns since epoch (number or digits) or an ISO 8601 UTC text."""
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    moment = dt.datetime.fromisoformat(str(value))
    moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return round(moment.timestamp()) * 10**9
