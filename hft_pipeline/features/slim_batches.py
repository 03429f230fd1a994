"""One SLIM file as time-ordered Arrow record batches of the row groups a session needs.

The reader behind ``event_scan.py``: only the columns asked for, only the row groups whose
``ts_recv`` statistics overlap the session, the next batch decoded in a worker thread while the
caller works on this one, and every batch checked to continue the ``ts_recv`` order (which the
``slim_parquet`` check ``ts_recv_ordered`` guarantees upstream; the fold relies on it).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hft_pipeline.ingest.slim_spill import ROW_GROUP_ROWS
from hft_pipeline.partitions import Session

# Rows per record batch: one row group of the SLIM writer, about 50 MB of decoded columns.
EVENT_BATCH_ROWS = ROW_GROUP_ROWS


def ordered_batches(
    path: Path, session: Session, columns: list[str], batch_rows: int = EVENT_BATCH_ROWS
) -> Iterator[pa.RecordBatch]:
    """Record batches of ``columns`` (``ts_recv`` among them) of the row groups of ``path`` that
    may hold rows of ``session``, in file order.

    Raises
    ------
    ValueError
        When ``ts_recv`` goes back in time from one row read to the next, naming the file.
    """
    file = pq.ParquetFile(path)
    position = file.schema_arrow.get_field_index("ts_recv")
    kept = [
        group
        for group in range(file.metadata.num_row_groups)
        if _may_hold_session(file.metadata.row_group(group).column(position).statistics, session)
    ]
    last_ts: int | None = None
    row_offset = 0
    # One decoding thread, _read_ahead's, beside the caller's: Arrow's own pool would add
    # threads that a later fork (the multiprocess executor) may inherit mid-work, for no gain.
    decoded = file.iter_batches(
        batch_size=batch_rows, row_groups=kept, columns=columns, use_threads=False
    )
    for batch in _read_ahead(decoded):
        ts = batch.column("ts_recv").to_numpy()
        _check_order(path, ts, last_ts, row_offset)
        if ts.size:
            last_ts, row_offset = int(ts[-1]), row_offset + ts.size
        yield batch


def _read_ahead(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``batches``, each decoded in a worker thread while the caller folds the one before: the
    parquet decoder releases the GIL, so decoding and folding overlap (about a third of the
    pass on two cores)."""
    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(next, batches, None)
        while (batch := pending.result()) is not None:
            pending = reader.submit(next, batches, None)
            yield batch


def _may_hold_session(statistics: pq.Statistics | None, session: Session) -> bool:
    if statistics is None or not statistics.has_min_max:
        return True
    return statistics.max >= session.open_ns and statistics.min < session.close_ns


def _check_order(path: Path, ts: np.ndarray, last_ts: int | None, row_offset: int) -> None:
    """Raises when ``ts`` (the batch starting at row ``row_offset`` of the rows read) goes back
    in time, within itself or from ``last_ts``, the previous batch's last value."""
    if last_ts is None:
        joined, first_row = ts, row_offset
    else:
        joined, first_row = np.r_[last_ts, ts], row_offset - 1
    backwards = np.flatnonzero(joined[1:] < joined[:-1])
    if backwards.size:
        at = backwards[0]
        raise ValueError(
            f"{path}: ts_recv goes back from {joined[at]} to {joined[at + 1]} at row "
            f"{first_row + at + 1} of the row groups read; SLIM rows must be in ts_recv order, "
            "re-materialize its slim_parquet partition (check ts_recv_ordered)"
        )
