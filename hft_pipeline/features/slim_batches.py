"""One SLIM file's row groups of a session, each decoded and folded in a worker thread.

The reader behind ``event_scan.py``: only the columns asked for, only the row groups whose
``ts_recv`` statistics overlap the session, each decoded and handed (as Arrow record batches of
its rows inside the session) to the caller's fold in a worker thread, the results returned in
file order. Every row is checked to continue the ``ts_recv`` order (which the ``slim_parquet``
check ``ts_recv_ordered`` guarantees upstream; the fold relies on it).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hft_pipeline.ingest.slim_spill import ROW_GROUP_ROWS
from hft_pipeline.partitions import Session

# Row groups decoded and folded at once, each by its own worker thread: one per core of the
# project machines. The parquet decoder and the compiled folds release the GIL.
_WORKERS = 2
# Row groups in flight: besides those being worked on, finished ones wait as folded results
# (one value per bar they touch), so that a worker never waits for the caller.
_IN_FLIGHT = 2 * _WORKERS
# Rows per record batch: one row group of the SLIM writer, about 50 MB of decoded columns.
EVENT_BATCH_ROWS = ROW_GROUP_ROWS

Folded = TypeVar("Folded")


@dataclass(frozen=True)
class _FoldedGroup(Generic[Folded]):
    """A row group's fold, with its first and last ``ts_recv`` and its first row's number among
    the rows read, to check the order across groups."""

    value: Folded
    first_ts: int | None
    last_ts: int | None
    first_row: int


def fold_row_groups(
    path: Path,
    session: Session,
    columns: list[str],
    fold: Callable[[list[pa.RecordBatch]], Folded],
    batch_rows: int = EVENT_BATCH_ROWS,
    dictionaries: Sequence[str] = (),
) -> Iterator[Folded]:
    """``fold(batches)`` of each row group of ``path`` that may hold rows of ``session``, in file
    order; ``batches`` are the group's rows with ``session.open_ns <= ts_recv <
    session.close_ns``, in record batches of at most ``batch_rows`` rows of ``columns``
    (``ts_recv`` among them; the ``dictionaries`` columns dictionary-encoded), an empty list
    when it has none. Memory: ``_WORKERS`` decoded row groups and ``_IN_FLIGHT`` folds.

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
    first_rows = accumulate((file.metadata.row_group(group).num_rows for group in kept), initial=0)
    local = threading.local()

    def decode_and_fold(group: int, first_row: int) -> _FoldedGroup[Folded]:
        if not hasattr(local, "file"):
            local.file = pq.ParquetFile(path, read_dictionary=dictionaries)
        rows = local.file.read_row_group(group, columns=columns, use_threads=False)
        ts = rows.column("ts_recv").to_numpy()
        _check_order(path, ts, first_row)
        start, stop = np.searchsorted(ts, [session.open_ns, session.close_ns])
        batches = rows.slice(start, stop - start).to_batches(max_chunksize=batch_rows)
        value = fold([batch for batch in batches if batch.num_rows])
        first_ts, last_ts = (int(ts[0]), int(ts[-1])) if ts.size else (None, None)
        return _FoldedGroup(value, first_ts, last_ts, first_row)

    last_ts: int | None = None
    with ThreadPoolExecutor(max_workers=_WORKERS) as workers:
        pending: deque = deque()
        for group, first_row in zip(kept, first_rows, strict=False):
            pending.append(workers.submit(decode_and_fold, group, first_row))
            if len(pending) == _IN_FLIGHT:
                last_ts = yield from _in_order(path, pending.popleft().result(), last_ts)
        while pending:
            last_ts = yield from _in_order(path, pending.popleft().result(), last_ts)


def _in_order(path: Path, folded: _FoldedGroup[Folded], last_ts: int | None) -> Iterator[Folded]:
    """Yields ``folded.value`` once its group is checked to start at or after ``last_ts``, the
    last ``ts_recv`` of the groups before; returns the last ``ts_recv`` so far."""
    if folded.first_ts is None:
        return last_ts
    if last_ts is not None and folded.first_ts < last_ts:
        _raise_backwards(path, last_ts, folded.first_ts, folded.first_row)
    yield folded.value
    return folded.last_ts


def _may_hold_session(statistics: pq.Statistics | None, session: Session) -> bool:
    if statistics is None or not statistics.has_min_max:
        return True
    return statistics.max >= session.open_ns and statistics.min < session.close_ns


def _check_order(path: Path, ts: np.ndarray, first_row: int) -> None:
    """Raises when ``ts``, the rows read from row ``first_row`` on, goes back in time."""
    backwards = np.flatnonzero(ts[1:] < ts[:-1])
    if backwards.size:
        at = backwards[0]
        _raise_backwards(path, ts[at], ts[at + 1], first_row + at + 1)


def _raise_backwards(path: Path, before: int, after: int, row: int) -> None:
    raise ValueError(
        f"{path}: ts_recv goes back from {before} to {after} at row {row} of the row groups "
        "read; SLIM rows must be in ts_recv order, re-materialize its slim_parquet partition "
        "(check ts_recv_ordered)"
    )
