"""Databento's CSV encoding -> the numpy record arrays of the DBN decoder, a chunk at a time.

Databento writes CSV (batch downloads with ``encoding=csv``, ``DBNStore.to_csv``) as a header
row then one row per record, columns named after the record's fields (levels flattened to
``bid_px_00, ask_px_00, bid_sz_00, ...``), without the record header's ``length``. Two options
change the text, and both are recognised from the first data row:

- ``pretty_px``: prices as decimals (``3702.250000000``, undefined -> empty) instead of int64
  fixed-point 1e-9 integers (undefined -> ``9223372036854775807``);
- ``pretty_ts``: timestamps as ISO-8601 UTC (``2020-12-28T00:00:00.006150193Z``) instead of
  integer nanoseconds.

``map_symbols`` adds a trailing ``symbol`` column, returned beside the records. Decimal prices
are parsed as decimals and their unscaled integers taken as-is, so no float ever rounds them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from hft_pipeline.ingest.dbn_layout import (
    MBO_DTYPE,
    MBP1_DTYPE,
    MBP10_DTYPE,
    OHLCV_DTYPE,
    RTYPE_MBO,
    RTYPE_MBP_0,
    RTYPE_MBP_1,
    RTYPE_MBP_10,
    RTYPE_OHLCV_1D,
    RTYPE_OHLCV_1H,
    RTYPE_OHLCV_1M,
    RTYPE_OHLCV_1S,
    TRADE_DTYPE,
    UNDEF_PRICE,
)
from hft_pipeline.ingest.decode import ByteStream, read_up_to

__all__ = [
    "CsvChunk",
    "DatabentoCsvError",
    "decimal_to_int64",
    "iter_csv_chunks",
    "iter_csv_record_chunks",
]

# schema -> (record layout, rtype its rows carry); TBBO rows are MBP-1 records.
CSV_SCHEMAS: dict[str, tuple[np.dtype, int]] = {
    "mbp-10": (MBP10_DTYPE, RTYPE_MBP_10),
    "mbp-1": (MBP1_DTYPE, RTYPE_MBP_1),
    "tbbo": (MBP1_DTYPE, RTYPE_MBP_1),
    "trades": (TRADE_DTYPE, RTYPE_MBP_0),
    "ohlcv-1s": (OHLCV_DTYPE, RTYPE_OHLCV_1S),
    "ohlcv-1m": (OHLCV_DTYPE, RTYPE_OHLCV_1M),
    "ohlcv-1h": (OHLCV_DTYPE, RTYPE_OHLCV_1H),
    "ohlcv-1d": (OHLCV_DTYPE, RTYPE_OHLCV_1D),
    "mbo": (MBO_DTYPE, RTYPE_MBO),  # order events, replayed into books like DBN MBO
}
SYMBOL_COLUMN = "symbol"
_TIMESTAMP_COLUMNS = frozenset({"ts_recv", "ts_event"})
_PRICE_FIELDS = frozenset({"price", "open", "high", "low", "close", "bid_px", "ask_px"})
_CHARACTER_FIELDS = frozenset({"action", "side"})
_UNDEF_TIMESTAMP = np.iinfo(np.uint64).max
# Decimal text of int64 fixed-point prices: 10 integer digits and 9 decimals fit in 38.
_DECIMAL_PRICE = pa.decimal128(38, 9)
# Text bytes per record relative to the binary record: sizes the reader's blocks.
_TEXT_PER_RECORD_BYTE = 3
_PEEK_BYTES = 2**16


class DatabentoCsvError(ValueError):
    """CSV text that is not Databento's encoding of the expected schema; says what was found."""


@dataclass(frozen=True)
class CsvChunk:
    """Records decoded from consecutive CSV rows, with their ``symbol`` column when present."""

    records: np.ndarray  # the schema's DBN layout, e.g. MBP10_DTYPE
    symbols: pa.Array | None  # string per record (map_symbols), None when the file has none


@dataclass(frozen=True)
class _Column:
    """Where one CSV column goes in the record array."""

    name: str
    field: str  # top-level dtype field
    level_field: str | None = None  # e.g. "bid_px" inside "levels"
    level: int = 0


def iter_csv_record_chunks(
    stream: ByteStream, schema: str, chunk_records: int = 65_536
) -> Iterator[np.ndarray]:
    """Yield a Databento CSV file's records as DBN structured arrays.

    Parameters
    ----------
    stream : binary file-like
        Decompressed CSV bytes from the start (header row first).
    schema : str
        One of ``CSV_SCHEMAS``: ``mbp-10``, ``mbp-1``, ``tbbo``, ``trades``, ``ohlcv-1s``,
        ``ohlcv-1m``, ``ohlcv-1h``, ``ohlcv-1d``, ``mbo``.
    chunk_records : int, default 65_536
        Most records per yielded array.

    Yields
    ------
    numpy.ndarray
        Arrays of the dtype :func:`decode.iter_record_chunks` yields for the schema's DBN file,
        equal to it field by field (``length`` is filled from the record size).

    Raises
    ------
    DatabentoCsvError
        An unknown schema, a header that is not the schema's, a row whose rtype differs, a
        value that does not parse (e.g. a price with more than 9 decimals), or a missing value.
    """
    for chunk in iter_csv_chunks(stream, schema, chunk_records):
        yield chunk.records


def iter_csv_chunks(
    stream: ByteStream, schema: str, chunk_records: int = 65_536
) -> Iterator[CsvChunk]:
    """Like :func:`iter_csv_record_chunks`, with each chunk's ``symbol`` column beside it."""
    if chunk_records < 1:
        raise ValueError(f"chunk_records must be >= 1, found {chunk_records}")
    if schema not in CSV_SCHEMAS:
        raise DatabentoCsvError(
            f"schema {schema!r} is not read from CSV here; use one of {sorted(CSV_SCHEMAS)}"
        )
    dtype, rtype = CSV_SCHEMAS[schema]
    peeked = read_up_to(stream, _PEEK_BYTES)
    header, first_row = _first_rows(peeked)
    if not header:
        return
    columns = _expected_columns(dtype)
    _check_header(header, columns, schema)
    pretty_px, pretty_ts = _text_forms(dict(zip(header, first_row, strict=False)), columns)
    read_options = pa_csv.ReadOptions(
        block_size=max(_PEEK_BYTES, chunk_records * dtype.itemsize * _TEXT_PER_RECORD_BYTE)
    )
    convert_options = pa_csv.ConvertOptions(
        column_types=_arrow_types(columns, pretty_px, pretty_ts), strings_can_be_null=False
    )
    source = _PrefixedStream(peeked, stream)
    for rows_before, batch in _read_batches(source, read_options, convert_options, schema):
        for start in range(0, batch.num_rows, chunk_records):
            piece = batch.slice(start, chunk_records)
            records = _to_records(piece, columns, dtype, rtype, rows_before + start, schema)
            symbols = piece.column(SYMBOL_COLUMN) if SYMBOL_COLUMN in piece.schema.names else None
            yield CsvChunk(records, symbols)


def _read_batches(
    source: io.RawIOBase,
    read_options: pa_csv.ReadOptions,
    convert_options: pa_csv.ConvertOptions,
    schema: str,
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(data rows before it, batch) for each block the CSV reader parses."""
    rows_before = 0
    try:
        # Opening already parses the first block, so its errors are caught here too.
        reader = pa_csv.open_csv(source, read_options=read_options, convert_options=convert_options)
        for batch in reader:
            yield rows_before, batch
            rows_before += batch.num_rows
    except pa.ArrowInvalid as error:
        raise DatabentoCsvError(
            f"{schema} CSV: a row after data row {rows_before} does not parse ({error})"
        ) from error


def _expected_columns(dtype: np.dtype) -> list[_Column]:
    """The CSV columns of a record layout (all its fields but ``length``)."""
    columns = []
    for name in dtype.names:
        if name == "length":
            continue
        if name != "levels":
            columns.append(_Column(name, name))
            continue
        depth = dtype["levels"].shape[0]
        for level in range(depth):
            for pair in (("bid_px", "ask_px"), ("bid_sz", "ask_sz"), ("bid_ct", "ask_ct")):
                columns += [_Column(f"{f}_{level:02d}", "levels", f, level) for f in pair]
    return columns


def _check_header(header: list[str], columns: list[_Column], schema: str) -> None:
    """The schema's columns, each once, in any order, and perhaps ``symbol``."""
    expected = {column.name for column in columns}
    found = set(header) - {SYMBOL_COLUMN}
    repeated = sorted({name for name in header if header.count(name) > 1})
    if found != expected or repeated:
        raise DatabentoCsvError(
            f"header is not Databento's {schema} CSV: missing {sorted(expected - found)}, "
            f"unexpected {sorted(found - expected)}, repeated {repeated}; "
            f"found {header[:8]}..."
        )


def _text_forms(first_row: dict[str, str], columns: list[_Column]) -> tuple[bool, bool]:
    """(pretty_px, pretty_ts) of the file, from its first data row."""
    prices = [first_row.get(c.name, "") for c in columns if _is_price(c)]
    # Fixed-point text is never empty (undefined is i64::MAX); decimal text has a point.
    pretty_px = any(cell == "" or "." in cell for cell in prices)
    pretty_ts = not first_row.get("ts_event", "0").isdigit()
    return pretty_px, pretty_ts


def _arrow_types(
    columns: list[_Column], pretty_px: bool, pretty_ts: bool
) -> dict[str, pa.DataType]:
    types: dict[str, pa.DataType] = {SYMBOL_COLUMN: pa.string()}
    for column in columns:
        if column.name in _TIMESTAMP_COLUMNS:
            types[column.name] = pa.timestamp("ns", "UTC") if pretty_ts else pa.uint64()
        elif _is_price(column):
            types[column.name] = _DECIMAL_PRICE if pretty_px else pa.int64()
        elif column.field in _CHARACTER_FIELDS:
            types[column.name] = pa.string()
        else:
            types[column.name] = pa.int64()
    return types


def _is_price(column: _Column) -> bool:
    return (column.level_field or column.field) in _PRICE_FIELDS


def _to_records(
    batch: pa.RecordBatch,
    columns: list[_Column],
    dtype: np.dtype,
    rtype: int,
    rows_before: int,
    schema: str,
) -> np.ndarray:
    records = np.zeros(batch.num_rows, dtype=dtype)
    records["length"] = dtype.itemsize // 4
    for column in columns:
        values = _column_values(batch.column(column.name), column, rows_before, schema)
        if column.level_field is None:
            records[column.field] = values
        else:
            records["levels"][column.level_field][:, column.level] = values
    bad = records["rtype"] != rtype
    if bad.any():
        row = rows_before + int(np.argmax(bad)) + 1
        raise DatabentoCsvError(
            f"{schema} CSV data row {row} has rtype {int(records['rtype'][bad][0])}, expected "
            f"{rtype}: a file mixing record types or of another schema"
        )
    return records


def _column_values(array: pa.Array, column: _Column, rows_before: int, schema: str) -> np.ndarray:
    """One CSV column as numpy values of its record field; empty prices/times -> undefined."""
    if pa.types.is_decimal(array.type):
        try:
            return decimal_to_int64(array)
        except ValueError as error:
            raise DatabentoCsvError(
                f"{schema} CSV rows {rows_before + 1}..{rows_before + len(array)}: a price in "
                f"{column.name} is not int64 fixed-point 1e-9 ({error})"
            ) from error
    if pa.types.is_timestamp(array.type):
        nanoseconds = array.cast(pa.int64()).cast(pa.uint64())
        return nanoseconds.fill_null(_UNDEF_TIMESTAMP).to_numpy()
    if array.null_count:
        row = rows_before + array.is_null().to_numpy(zero_copy_only=False).argmax() + 1
        raise DatabentoCsvError(f"{schema} CSV data row {row} has no value for {column.name}")
    if pa.types.is_string(array.type):
        return _single_characters(array, column, rows_before, schema)
    return array.to_numpy()


def _single_characters(array: pa.Array, column: _Column, rows_before: int, schema: str):
    """One-character strings -> ``S1`` bytes, read straight from the string data buffer."""
    wrong = pc.binary_length(array).to_numpy() != 1
    if wrong.any():
        row = rows_before + int(np.argmax(wrong)) + 1
        raise DatabentoCsvError(
            f"{schema} CSV data row {row} has {column.name} {array[int(np.argmax(wrong))]}, "
            "expected one character"
        )
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)
    characters = np.frombuffer(array.buffers()[2], dtype="S1")
    return characters[offsets[array.offset : array.offset + len(array)]]


def decimal_to_int64(
    array: pa.Array | pa.ChunkedArray, null_value: int = UNDEF_PRICE
) -> np.ndarray:
    """A decimal128 array's unscaled integers, exact: scale 9 gives 1e-9 units.

    Parameters
    ----------
    array : pyarrow decimal128 array
        E.g. prices parsed as ``decimal128(38, 9)``.
    null_value : int, default UNDEF_PRICE
        What a null becomes.

    Raises
    ------
    ValueError
        An unscaled value outside int64.
    """
    array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    # Little-endian 128-bit integers: (low, high) words; the low word is the value whenever
    # the high word only extends its sign, which the bounds check below makes sure of.
    words = np.frombuffer(array.buffers()[1], dtype="<i8").reshape(-1, 2)
    words = words[array.offset : array.offset + len(array)]
    low, high = words[:, 0], words[:, 1]
    valid = ~array.is_null().to_numpy(zero_copy_only=False)
    if np.any(valid & (high != (low >> 63))):
        largest = max(abs(value) for value in array.to_pylist() if value is not None)
        raise ValueError(f"{largest} does not fit int64 at scale {array.type.scale}")
    return np.where(valid, low, null_value)


def _first_rows(peeked: bytes) -> tuple[list[str], list[str]]:
    """Header and first data row from the stream's first bytes (empty lists when absent)."""
    lines = peeked.decode("utf-8", errors="replace").splitlines()
    rows = list(csv.reader(lines[:2]))
    header = rows[0] if rows else []
    return header, rows[1] if len(rows) > 1 else []


class _PrefixedStream(io.RawIOBase):
    """Bytes already read from a stream, then the rest of it: what the CSV reader consumes."""

    def __init__(self, prefix: bytes, rest: ByteStream):
        self._prefix = memoryview(prefix)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._prefix:
            size = min(len(buffer), len(self._prefix))
            buffer[:size] = self._prefix[:size]
            self._prefix = self._prefix[size:]
            return size
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
