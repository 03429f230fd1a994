"""Small SLIM files for the quality checks: the columns a test names, a valid book otherwise."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from hft_pipeline.ingest.slim_schema import SLIM_SCHEMA


def write_quality_slim(path: Path, metadata: dict[str, str] | None = None, **columns: list) -> Path:
    """A SLIM file of the given columns (ts_recv required); ts_event = ts_recv and a valid book
    (100 / 100.25) unless given; every other column null."""
    rows = len(columns["ts_recv"])
    values = {
        "ts_event": columns["ts_recv"],
        "symbol": ["ES"] * rows,
        "bid_px_00": [100.0] * rows,
        "ask_px_00": [100.25] * rows,
        **columns,
    }
    arrays = {
        field.name: pa.array(values[field.name], field.type)
        if field.name in values
        else pa.nulls(rows, field.type)
        for field in SLIM_SCHEMA
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(arrays, schema=SLIM_SCHEMA.with_metadata(metadata or {})), path)
    return path
