"""Trade prices checked against ``hft.trade_tick_size`` where a source sets it: LOBSTER's hidden
executions print at midpoints (half a cent), while its book stays on the cent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hft_pipeline.ingest.lobster import LOBSTER_TICK_SIZE, LOBSTER_TRADE_TICK_SIZE
from hft_pipeline.ingest.quality import QualityCheck, run_quality_checks
from hft_pipeline.ingest.slim import read_slim_metadata
from hft_pipeline.ingest.slim_schema import META_TICK_SIZE, META_TRADE_TICK_SIZE
from hft_pipeline.ingest.tools import ingest_archives

LOBSTER = "lobster-nasdaq-2012-06-21"
SAMPLES = [("AAPL", 1), ("AMZN", 5), ("GOOG", 10)]


def tick_grid_check(path: Path) -> QualityCheck:
    tick_size = float(read_slim_metadata(path)[META_TICK_SIZE])
    checks = run_quality_checks(path, tick_size, max_gap_seconds=86_400)
    return next(check for check in checks if check.name == "prices_on_tick_grid")


def with_first_price(path: Path, out: Path, column: str, price: float) -> Path:
    """A copy of a SLIM file, metadata included, whose first price in ``column`` is ``price``."""
    table = pq.read_table(path)
    prices = table.column(column).to_numpy(zero_copy_only=False).copy()
    prices[np.flatnonzero(~np.isnan(prices))[0]] = price
    index = table.schema.get_field_index(column)
    changed = table.set_column(index, column, pa.array(prices, from_pandas=True))
    pq.write_table(changed.replace_schema_metadata(table.schema.metadata), out)
    return out


@pytest.mark.parametrize(("ticker", "levels"), SAMPLES)
def test_real_lobster_day_passes_tick_grid_with_half_cent_trades(
    shared_data, tmp_path, ticker: str, levels: int
):
    archive = shared_data / LOBSTER / f"LOBSTER_SampleFile_{ticker}_2012-06-21_{levels}.zip"

    [summary] = ingest_archives([archive], tmp_path)

    check = tick_grid_check(summary.path)
    metadata = read_slim_metadata(summary.path)
    assert float(metadata[META_TRADE_TICK_SIZE]) == LOBSTER_TRADE_TICK_SIZE == 0.005
    assert float(metadata[META_TICK_SIZE]) == LOBSTER_TICK_SIZE
    assert check.passed, check.detail
    assert "trades of 0.005" in check.description


def test_trade_off_the_half_cent_grid_still_fails(shared_data, tmp_path):
    archive = shared_data / LOBSTER / "LOBSTER_SampleFile_AAPL_2012-06-21_1.zip"
    [summary] = ingest_archives([archive], tmp_path)

    off_grid = with_first_price(summary.path, tmp_path / "off.parquet", "trade_px", 585.123)
    midpoint = with_first_price(summary.path, tmp_path / "mid.parquet", "trade_px", 585.125)

    failed, passed = tick_grid_check(off_grid), tick_grid_check(midpoint)
    assert not failed.passed and failed.violations == 1
    assert passed.passed


def test_book_price_at_a_half_cent_fails_even_with_a_trade_tick(shared_data, tmp_path):
    archive = shared_data / LOBSTER / "LOBSTER_SampleFile_AAPL_2012-06-21_1.zip"
    [summary] = ingest_archives([archive], tmp_path)
    half_cent_bid = with_first_price(summary.path, tmp_path / "b.parquet", "bid_px_00", 585.125)

    check = tick_grid_check(half_cent_bid)

    assert not check.passed and check.violations == 1
