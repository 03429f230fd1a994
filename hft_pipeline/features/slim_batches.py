"""One SLIM file as time-ordered Arrow record batches of the row groups a session needs.

The reader behind ``event_scan.py``: only the columns asked for, only the row groups whose
``ts_recv`` statistics overlap the session, the next row groups decoded in worker threads while
the caller works on this one, and every batch checked to continue the ``ts_recv`` order (which the
``slim_parquet`` check ``ts_recv_ordered`` guarantees upstream; the fold relies on it).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hft_pipeline.ingest.slim_spill import ROW_GROUP_ROWS
from hft_pipeline.partitions import Session

# Row groups decoded at once, each by its own worker thread: one per core of the project
# machines, so that with the caller's fold both cores stay busy.
_DECODERS = 2
# Rows per record batch: one row group of the SLIM writer, about 50 MB of decoded columns.
EVENT_BATCH_ROWS = ROW_GROUP_ROWS


def ordered_batches(
    path: Path,
    session: Session,
    columns: list[str],
    batch_rows: int = EVENT_BATCH_ROWS,
    dictionaries: Sequence[str] = (),
) -> Iterator[pa.RecordBatch]:
    """Record batches of ``columns`` (``ts_recv`` among them) of the row groups of ``path`` that
    may hold rows of ``session``, in file order; the ``dictionaries`` columns dictionary-encoded.

    Raises
    ------
    ValueError
        When ``ts_recv`` goes back in time from one row read to the next, naming the file.
    """
    file = pq.ParquetFile(path, read_dictionary=dictionaries)
    position = file.schema_arrow.get_field_index("ts_recv")
    kept = [
        group
        for group in range(file.metadata.num_row_groups)
        if _may_hold_session(file.metadata.row_group(group).column(position).statistics, session)
    ]
    last_ts: int | None = None
    row_offset = 0
    for group in _decoded_groups(path, kept, columns, dictionaries):
        for batch in group.to_batches(max_chunksize=batch_rows):
            ts = batch.column("ts_recv").to_numpy()
            _check_order(path, ts, last_ts, row_offset)
            if ts.size:
                last_ts, row_offset = int(ts[-1]), row_offset + ts.size
            yield batch


def _decoded_groups(
    path: Path, groups: list[int], columns: list[str], dictionaries: Sequence[str]
) -> Iterator[pa.Table]:
    """The row groups ``groups`` of ``path``, in order, decoded ``_DECODERS`` at a time in
    worker threads while the caller works on the one before. The parquet decoder releases the
    GIL, so on two cores decoding and folding overlap; each worker decodes whole row groups on
    its own (Arrow's own thread pool spent a fifth more CPU on the same decode), with its own
    file handle."""
    local = threading.local()

    def decode(group: int) -> pa.Table:
        if not hasattr(local, "file"):
            local.file = pq.ParquetFile(path, read_dictionary=dictionaries)
        return local.file.read_row_group(group, columns=columns, use_threads=False)

    with ThreadPoolExecutor(max_workers=_DECODERS) as decoders:
        pending = deque(decoders.submit(decode, group) for group in groups[:_DECODERS])
        for group in groups[_DECODERS:]:
            decoded = pending.popleft().result()
            pending.append(decoders.submit(decode, group))
            yield decoded
        while pending:
            yield pending.popleft().result()


def _may_hold_session(statistics: pq.Statistics | None, session: Session) -> bool:
    if statistics is None or not statistics.has_min_max:
        return True
    return statistics.max >= session.open_ns and statistics.min < session.close_ns


def _check_order(path: Path, ts: np.ndarray, last_ts: int | None, row_offset: int) -> None:
    """Raises when ``ts`` (the batch starting at row ``row_offset`` of the rows read) goes back
    in time, within itself or from ``last_ts``, the previous batch's last value."""
    if last_ts is not None and ts.size and ts[0] < last_ts:
        _raise_backwards(path, last_ts, ts[0], row_offset)
    backwards = np.flatnonzero(ts[1:] < ts[:-1])
    if backwards.size:
        at = backwards[0]
        _raise_backwards(path, ts[at], ts[at + 1], row_offset + at + 1)


def _raise_backwards(path: Path, before: int, after: int, row: int) -> None:
    raise ValueError(
        f"{path}: ts_recv goes back from {before} to {after} at row {row} of the row groups "
        "read; SLIM rows must be in ts_recv order, re-materialize its slim_parquet partition "
        "(check ts_recv_ordered)"
    )
