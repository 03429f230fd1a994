"""DBN stream -> numpy record arrays, a bounded number of bytes at a time.

A DBN stream is b"DBN", a version byte (1, 2 or 3), a little-endian u32 metadata length, the
metadata, then fixed-size records (layouts in :mod:`hft_pipeline.ingest.dbn_layout`; MBP-10,
MBP-1/TBBO, trade, OHLCV and MBO records are the same in all three versions, and
databento-dbn upgrades v1/v2 metadata). Records are viewed in place with ``np.frombuffer``
over whole records; bytes of a record cut by a chunk boundary are carried to the next chunk.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import databento_dbn
import numpy as np

from hft_pipeline.ingest.dbn_layout import (
    DTYPE_BY_RTYPE,
    PRELUDE_SIZE,
    RTYPE_MBO,
    RTYPE_MBP_0,
    RTYPE_MBP_1,
    RTYPE_MBP_10,
    RTYPE_OHLCV_1D,
    RTYPE_OHLCV_1H,
    RTYPE_OHLCV_1M,
    RTYPE_OHLCV_1S,
)

SUPPORTED_VERSIONS = (1, 2, 3)
# rtype each supported schema's records carry; TBBO records are MBP-1 records.
RTYPE_BY_SCHEMA = {
    "mbp-10": RTYPE_MBP_10,
    "mbp-1": RTYPE_MBP_1,
    "tbbo": RTYPE_MBP_1,
    "trades": RTYPE_MBP_0,
    "ohlcv-1s": RTYPE_OHLCV_1S,
    "ohlcv-1m": RTYPE_OHLCV_1M,
    "ohlcv-1h": RTYPE_OHLCV_1H,
    "ohlcv-1d": RTYPE_OHLCV_1D,
    "mbo": RTYPE_MBO,
}
RECORD_NAMES = {
    RTYPE_MBP_10: "MBP-10",
    RTYPE_MBP_1: "MBP-1",
    RTYPE_MBP_0: "trade",
    RTYPE_OHLCV_1S: "OHLCV-1s",
    RTYPE_OHLCV_1M: "OHLCV-1m",
    RTYPE_OHLCV_1H: "OHLCV-1h",
    RTYPE_OHLCV_1D: "OHLCV-1d",
    RTYPE_MBO: "MBO",
}
# Real metadata is kilobytes (symbol lists, mappings); more is a damaged length field.
_MAX_METADATA_BYTES = 256 * 2**20
_NS_PER_DAY = 86_400 * 10**9
_UNDEF_TIMESTAMP = 2**64 - 1


class ByteStream(Protocol):
    """What the decoder reads from: a file, a ZIP member, a decompressing reader."""

    def read(self, size: int = -1, /) -> bytes: ...


class DbnFormatError(ValueError):
    """A byte stream that is not a DBN stream this decoder reads; says what was found."""


@dataclass(frozen=True)
class DbnHeader:
    """What the DBN metadata says about the records that follow it."""

    version: int  # as found in the stream's prelude, 1..3
    dataset: str  # e.g. GLBX.MDP3
    schema: str | None  # e.g. mbp-10; None for a stream mixing schemas
    start_ns: int  # requested start, ns since epoch UTC (inclusive)
    end_ns: int | None  # requested end (exclusive); None when not recorded
    ts_out: bool  # records carry an extra 8-byte gateway send time
    # Symbology of the request in symbology.json's shape: {raw_symbol: [{d0, d1, s}]}.
    mappings: dict[str, list[dict]] = field(default_factory=dict)
    records_offset: int = 0  # byte position of the first record in the decompressed stream

    @property
    def utc_days(self) -> list[dt.date]:
        """UTC calendar days the request covered: [start, end) in whole days."""
        last_ns = self.start_ns if self.end_ns is None else max(self.start_ns, self.end_ns - 1)
        first, last = self.start_ns // _NS_PER_DAY, last_ns // _NS_PER_DAY
        epoch = dt.date(1970, 1, 1)
        return [epoch + dt.timedelta(days=day) for day in range(first, last + 1)]


def read_dbn_header(stream: ByteStream) -> DbnHeader:
    """Read the prelude and metadata of a DBN stream, leaving the stream at the first record.

    Parameters
    ----------
    stream : binary file-like
        Decompressed DBN bytes, positioned at the start.

    Returns
    -------
    DbnHeader

    Raises
    ------
    DbnFormatError
        No ``DBN`` magic, an unknown version, or a stream that ends within the metadata.
    """
    prelude = read_up_to(stream, PRELUDE_SIZE)
    if len(prelude) < PRELUDE_SIZE or prelude[:3] != b"DBN":
        raise DbnFormatError(
            f"not a DBN stream: starts with {prelude[:8]!r}, expected b'DBN' and a version byte"
        )
    version = prelude[3]
    if version not in SUPPORTED_VERSIONS:
        raise DbnFormatError(
            f"unknown DBN version {version}; this decoder reads versions {SUPPORTED_VERSIONS}"
        )
    (metadata_length,) = struct.unpack("<I", prelude[4:8])
    if metadata_length > _MAX_METADATA_BYTES:
        raise DbnFormatError(f"metadata length {metadata_length} bytes is implausible")
    encoded = read_up_to(stream, metadata_length)
    if len(encoded) < metadata_length:
        raise DbnFormatError(
            f"stream ends within the metadata ({len(encoded)} of {metadata_length} bytes)"
        )
    try:
        # Upgrades v1/v2 metadata to the current layout; the record layouts read here agree.
        metadata = databento_dbn.Metadata.decode(prelude + encoded)
    except databento_dbn.DBNError as error:
        raise DbnFormatError(f"DBN v{version} metadata cannot be decoded ({error})") from error
    end = metadata.end
    return DbnHeader(
        version=version,
        dataset=str(metadata.dataset),
        schema=None if metadata.schema is None else str(metadata.schema),
        start_ns=int(metadata.start),
        end_ns=None if end is None or end == _UNDEF_TIMESTAMP else int(end),
        ts_out=bool(metadata.ts_out),
        mappings={
            str(raw): [
                {"d0": interval["start_date"], "d1": interval["end_date"], "s": interval["symbol"]}
                for interval in intervals
            ]
            for raw, intervals in (metadata.mappings or {}).items()
        },
        records_offset=PRELUDE_SIZE + metadata_length,
    )


def iter_record_chunks(
    stream: ByteStream, header: DbnHeader, chunk_records: int = 65_536
) -> Iterator[np.ndarray]:
    """Yield the stream's records as structured arrays of at most ``chunk_records`` records.

    Parameters
    ----------
    stream : binary file-like
        Positioned at the first record (after :func:`read_dbn_header`).
    header : DbnHeader
        The stream's header.
    chunk_records : int, default 65_536
        Records per yielded array; about ``chunk_records * 368`` bytes are read at a time for
        MBP-10 (56 bytes per record for OHLCV and MBO).

    Yields
    ------
    numpy.ndarray
        Read-only arrays of dtype ``MBP10_DTYPE``, ``MBP1_DTYPE``, ``TRADE_DTYPE``,
        ``OHLCV_DTYPE`` (every bar interval; ``rtype`` says which) or ``MBO_DTYPE`` (order
        events: replay them with :class:`hft_pipeline.ingest.mbo_book.MboBookReplay`).

    Raises
    ------
    DbnFormatError
        An unsupported schema or record type, a record whose length byte disagrees with its
        type, a stream mixing record types, or a stream that ends mid-record.
    """
    if chunk_records < 1:
        raise ValueError(f"chunk_records must be >= 1, found {chunk_records}")
    if header.ts_out:
        raise DbnFormatError("records carry ts_out (live gateway data); request them without it")
    if header.schema is not None and header.schema not in RTYPE_BY_SCHEMA:
        raise DbnFormatError(
            f"schema {header.schema!r} is not decoded here; use one of {sorted(RTYPE_BY_SCHEMA)}"
        )
    first = read_up_to(stream, 2)  # length (in 4-byte words) and rtype of the first record
    if not first:
        return
    dtype, rtype = _record_dtype(first, header), first[1]
    carry, records_before = first, 0
    chunk_bytes = chunk_records * dtype.itemsize
    while True:
        block = carry + read_up_to(stream, chunk_bytes - len(carry))
        whole = len(block) // dtype.itemsize
        if whole:
            records = np.frombuffer(block, dtype=dtype, count=whole)
            _check_record_headers(records, rtype, header.records_offset, records_before)
            yield records
        carry, records_before = block[whole * dtype.itemsize :], records_before + whole
        if len(block) < chunk_bytes:  # a short read means the stream is exhausted
            break
    if carry:
        raise DbnFormatError(
            f"stream ends mid-record: {len(carry)} trailing bytes after {records_before} "
            f"{dtype.itemsize}-byte {RECORD_NAMES[rtype]} records; the file is truncated"
        )


def _record_dtype(first: bytes, header: DbnHeader) -> np.dtype:
    if len(first) < 2:
        raise DbnFormatError("stream ends mid-record: 1 byte after the metadata")
    length_words, rtype = first[0], first[1]
    dtype = DTYPE_BY_RTYPE.get(rtype)
    if dtype is None:
        raise DbnFormatError(
            f"unknown record type 0x{rtype:02x} in the first record; this decoder reads "
            + ", ".join(f"{name} (0x{code:02x})" for code, name in RECORD_NAMES.items())
        )
    if header.schema is not None and RTYPE_BY_SCHEMA[header.schema] != rtype:
        raise DbnFormatError(
            f"metadata says schema {header.schema!r} but the first record has rtype 0x{rtype:02x}"
        )
    if length_words * 4 != dtype.itemsize:
        raise DbnFormatError(
            f"first {RECORD_NAMES[rtype]} record claims {length_words * 4} bytes, "
            f"expected {dtype.itemsize}"
        )
    return dtype


def _check_record_headers(
    records: np.ndarray, rtype: int, records_offset: int, records_before: int
) -> None:
    """Every record must have the first record's type and size: one fixed-size schema."""
    itemsize = records.dtype.itemsize
    bad = (records["rtype"] != rtype) | (records["length"] != itemsize // 4)
    if bad.any():
        index = int(np.argmax(bad))
        position = records_before + index
        raise DbnFormatError(
            f"record {position} (byte {records_offset + position * itemsize}) has rtype "
            f"0x{int(records['rtype'][index]):02x} and {int(records['length'][index]) * 4} bytes, "
            f"expected rtype 0x{rtype:02x} and {itemsize} bytes: unknown or mixed record types "
            "are not decoded"
        )


def read_up_to(stream: ByteStream, size: int) -> bytes:
    """Read ``size`` bytes, fewer only at the end of the stream (decompressors return less)."""
    parts, remaining = [], size
    while remaining > 0:
        part = stream.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)
