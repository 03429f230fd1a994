"""A session's records per contract while its archives are read, then one SLIM file.

Memory must not grow with the archive (DESIGN.md section 3), and the front contract is known
for sure only once every archive is read (it must be present in the session). So each decoded
chunk's kept records leave memory at once:

- the *expected* front contract (the rule applied to the contracts the symbology lists; right
  whenever that contract has a record in the session) is converted and written as SLIM row
  groups straight away (:class:`StreamedContract`): in the usual case the file is done when
  reading ends, with no second pass;
- every other contract goes to raw DBN spill files, one run per member, unconverted
  (:class:`SpilledContract`), in case it turns out to be the front contract.

The rows end in ``(ts_recv, sequence)`` order, ties by source position (archive name, member
name, position in the member). Databento files are sorted by ``ts_recv`` and archives are
consecutive UTC days, so a one-schema source is usually in order already and is copied as it
is; otherwise (several schemas of one day, ``ts_recv`` going backwards) DuckDB sorts it out of
core within a memory limit, spilling to the temporary folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hft_pipeline.ingest.slim_rows import records_to_slim_table, slim_ts_recv
from hft_pipeline.ingest.slim_schema import SLIM_SCHEMA
from hft_pipeline.layout import atomic_file

# Rows per parquet row group: bounds the writer's memory (~70 MB of MBP-10 columns).
ROW_GROUP_ROWS = 131_072
# Times and sequence numbers are nearly all distinct and grow steadily: delta encoding packs
# them, where a dictionary would overflow and fall back to plain values. Prices, sizes and
# strings repeat, so dictionaries pay there. Statistics only where readers filter (time).
# The metadata is known only at the end, so it goes in the footer's key-value pairs, not in a
# stored Arrow schema (the SLIM types read back the same from the parquet types).
_DELTA_COLUMNS = ("ts_recv", "ts_event", "sequence")
PARQUET_WRITER_OPTIONS = {
    "compression": "zstd",
    "use_dictionary": [name for name in SLIM_SCHEMA.names if name not in _DELTA_COLUMNS],
    "column_encoding": dict.fromkeys(_DELTA_COLUMNS, "DELTA_BINARY_PACKED"),
    "write_statistics": ["ts_recv", "ts_event"],
    "store_schema": False,
}
_POSITION = "source_position"  # the last sort key, so that ties are deterministic
# Rows per batch out of DuckDB's sort: its result batches live outside its memory limit, and a
# whole row group's worth (~70 MB) measurably raised the peak.
_SORTED_BATCH_ROWS = 16_384


@dataclass(frozen=True)
class WrittenRows:
    """What a SLIM file received: row count and the first and last ``ts_recv``."""

    rows: int
    first_ts_recv: int | None
    last_ts_recv: int | None


class SlimParquetWriter:
    """SLIM tables of any sizes -> row groups of exactly ``ROW_GROUP_ROWS`` (the last fewer).

    Row groups are cut by row count only, so the bytes depend on the rows, not on how they
    were chunked on the way: a rerun, or another decoding chunk size, gives the same file.
    """

    def __init__(self, path: Path):
        self._writer = pq.ParquetWriter(path, SLIM_SCHEMA, **PARQUET_WRITER_OPTIONS)
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._rows, self._first, self._last = 0, None, None

    def __enter__(self) -> SlimParquetWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abandon()

    def abandon(self) -> None:
        """Close without the last rows and metadata (after a failure); the caller removes
        the file. Nothing happens once closed."""
        if self._writer.is_open:
            self._writer.close()

    def write(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._pending_rows += table.num_rows
        while self._pending_rows >= ROW_GROUP_ROWS:
            merged = pa.concat_tables(self._pending)
            self._write_group(merged.slice(0, ROW_GROUP_ROWS))
            self._pending = [merged.slice(ROW_GROUP_ROWS)]
            self._pending_rows -= ROW_GROUP_ROWS

    def close(self, metadata: dict[str, str]) -> WrittenRows:
        """Write the last rows and the file metadata (no wall-clock value: reruns match)."""
        if self._pending_rows:
            self._write_group(pa.concat_tables(self._pending))
        self._pending, self._pending_rows = [], 0
        self._writer.add_key_value_metadata(metadata)
        self._writer.close()
        return WrittenRows(self._rows, self._first, self._last)

    def _write_group(self, group: pa.Table) -> None:
        self._writer.write_table(group, row_group_size=ROW_GROUP_ROWS)
        ts_recv = group.column("ts_recv")
        self._first = ts_recv[0].as_py() if self._first is None else self._first
        self._rows, self._last = self._rows + group.num_rows, ts_recv[-1].as_py()


def write_slim_tables(
    tables: Iterable[pa.Table], metadata: dict[str, str], out_path: Path
) -> WrittenRows:
    """Write SLIM tables, in the order given, as one file through an atomic rename.

    A failure leaves the earlier file at ``out_path`` untouched and no partial file.
    """
    with atomic_file(out_path) as temporary, SlimParquetWriter(temporary) as writer:
        for table in tables:
            writer.write(table)
        return writer.close(metadata)


class SourceOrder:
    """How one contract's records came, compared with SLIM's ``(ts_recv, sequence)`` order."""

    def __init__(self) -> None:
        self.in_order = True  # (ts_recv, sequence) never decreased along the records
        self.ts_recv_regressions = 0  # ts_recv decreases within each source stream
        self._last_key: tuple[int, int] | None = None
        self._last_ts_recv: dict[str, int] = {}  # by stream

    def update(self, records: np.ndarray, stream: str) -> None:
        """Take the next records (DBN MBP, trade or OHLCV layout, at least one) of ``stream``.

        Regressions count within a stream, whose members follow each other (consecutive
        days), not between streams (each schema starts again at the session open). Bars are
        ordered by their close, with sequence 0 (they have none).
        """
        ts_recv = slim_ts_recv(records)
        is_bar = "sequence" not in records.dtype.names
        sequence = np.zeros(len(records), np.int64) if is_bar else records["sequence"]
        previous = self._last_ts_recv.get(stream)
        self.ts_recv_regressions += int(np.count_nonzero(ts_recv[1:] < ts_recv[:-1]))
        self.ts_recv_regressions += int(previous is not None and int(ts_recv[0]) < previous)
        self._last_ts_recv[stream] = int(ts_recv[-1])
        ordered = (ts_recv[1:] > ts_recv[:-1]) | (
            (ts_recv[1:] == ts_recv[:-1]) & (sequence[1:] >= sequence[:-1])
        )
        first_key = (int(ts_recv[0]), int(sequence[0]))
        after_last = self._last_key is None or first_key >= self._last_key
        self.in_order = self.in_order and after_last and bool(ordered.all())
        self._last_key = (int(ts_recv[-1]), int(sequence[-1]))


class StreamedContract:
    """The expected front contract: converted and written to a SLIM file as it is read."""

    def __init__(self, folder: Path, contract: str, symbol: str):
        self.contract, self.symbol = contract, symbol
        self.order, self.rows = SourceOrder(), 0
        self._path = folder / "expected_contract.parquet"
        self._writer = SlimParquetWriter(self._path)

    def append(self, records: np.ndarray, stream: str) -> None:
        self.order.update(records, stream)
        self.rows += len(records)
        self._writer.write(records_to_slim_table(records, self.contract, self.symbol))

    def abandon(self) -> None:
        """Another contract is written, or reading failed: close the file, which the
        temporary folder's removal takes away."""
        self._writer.abandon()

    def finish(
        self, metadata: dict[str, str], out_path: Path, sort_folder: Path, sort_memory_mb: int
    ) -> WrittenRows:
        """Write ``out_path``: rename the file when the rows came in order, else sort it."""
        written = self._writer.close(metadata)
        if self.order.in_order:
            os.replace(self._path, out_path)  # the same folder: an atomic rename
            return written
        with _sort_connection(sort_folder, sort_memory_mb) as connection:
            streamed = connection.read_parquet(str(self._path), file_row_number=True)
            streamed.create_view("streamed")
            tables = _sorted(connection, "streamed", "file_row_number", self.rows, sort_memory_mb)
            return write_slim_tables(tables, metadata, out_path)


@dataclass(frozen=True)
class _SpillRun:
    """Raw DBN records of one layout, in source order, in one file."""

    path: Path
    dtype: np.dtype


class SpilledContract:
    """Any other contract: raw DBN records in spill files, converted only if it is chosen."""

    def __init__(self, prefix: Path, contract: str, symbol: str):
        self.contract, self.symbol = contract, symbol
        self.order, self.rows = SourceOrder(), 0
        self._prefix = prefix  # run files are <prefix>.run<n>.dbn
        self._runs: list[_SpillRun] = []
        self._run_ended = True

    def append(self, records: np.ndarray, stream: str) -> None:
        self.order.update(records, stream)
        self.rows += len(records)
        if self._run_ended or self._runs[-1].dtype != records.dtype:
            path = self._prefix.with_name(f"{self._prefix.name}.run{len(self._runs)}.dbn")
            self._runs.append(_SpillRun(path, records.dtype))
            self._run_ended = False
        with self._runs[-1].path.open("ab") as file:
            file.write(np.ascontiguousarray(records).view(np.uint8))

    def end_run(self) -> None:
        """A member ends: the next records start a new run."""
        self._run_ended = True

    def finish(
        self, metadata: dict[str, str], out_path: Path, sort_folder: Path, sort_memory_mb: int
    ) -> WrittenRows:
        """Write ``out_path`` from the spill: copied when in order, else sorted."""
        if self.order.in_order:
            return write_slim_tables(self._tables(), metadata, out_path)
        with_position = SLIM_SCHEMA.append(pa.field(_POSITION, pa.int64()))
        with _sort_connection(sort_folder, sort_memory_mb) as connection:
            connection.register(
                "spill", pa.RecordBatchReader.from_batches(with_position, self._numbered())
            )
            tables = _sorted(connection, "spill", _POSITION, self.rows, sort_memory_mb)
            return write_slim_tables(tables, metadata, out_path)

    def _tables(self) -> Iterator[pa.Table]:
        """The spill as SLIM tables in source order, a row group's worth at a time."""
        for run in self._runs:
            with run.path.open("rb") as file:
                while block := file.read(ROW_GROUP_ROWS * run.dtype.itemsize):
                    records = np.frombuffer(block, dtype=run.dtype)
                    yield records_to_slim_table(records, self.contract, self.symbol)

    def _numbered(self) -> Iterator[pa.RecordBatch]:
        """The spill's rows with their source position."""
        start = 0
        for table in self._tables():
            position = pa.array(np.arange(start, start + table.num_rows, dtype=np.int64))
            start += table.num_rows
            yield from table.append_column(_POSITION, position).to_batches()


def _sort_connection(folder: Path, memory_mb: int) -> duckdb.DuckDBPyConnection:
    """One thread, ``memory_mb`` of memory, beyond which the sort spills to ``folder``; no
    progress bar (DuckDB draws one on stdout for long queries, even into a log)."""
    config = {"memory_limit": f"{memory_mb}MB", "temp_directory": str(folder), "threads": 1}
    connection = duckdb.connect(config=config)
    connection.execute("SET enable_progress_bar = false")  # a session setting, not a config
    return connection


def _sorted(
    connection: duckdb.DuckDBPyConnection, view: str, position: str, rows: int, memory_mb: int
) -> Iterator[pa.Table]:
    """Rows of ``view`` (SLIM columns plus ``position``) in SLIM order, without ``position``.

    Raises
    ------
    MemoryError
        The sort needs more than its ``memory_mb`` (its merge grows with the rows sorted).
    """
    try:
        ordered = connection.sql(
            f"SELECT * EXCLUDE ({position}) FROM {view} ORDER BY ts_recv, sequence, {position}"
        ).to_arrow_reader(_SORTED_BATCH_ROWS)
        for batch in ordered:
            # DuckDB's columns are all nullable: give them the SLIM schema's fields.
            slim_batch = pa.RecordBatch.from_arrays(batch.columns, schema=SLIM_SCHEMA)
            yield pa.Table.from_batches([slim_batch])
    except (duckdb.OutOfMemoryException, OSError) as error:
        if "Out of Memory" not in str(error):
            raise
        duckdb_says = str(error).splitlines()[0]  # not its advice, which is about DuckDB's SETs
        raise MemoryError(
            f"sorting {rows:,} out-of-order rows needs more than the sort's {memory_mb} MiB "
            f"({duckdb_says}); raise ingest_memory_mb (HFT_INGEST_MEMORY_MB) by a few hundred MiB"
        ) from error
