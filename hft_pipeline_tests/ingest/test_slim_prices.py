"""Prices survive DBN -> SLIM exactly on grids that are not binary fractions of a point:
ZN's 1/64 and 6E's 0.00005 ticks, every book level and trade, across many ticks."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pyarrow.parquet as pq
import pytest

from hft_pipeline.ingest.dbn_layout import MBP10_DTYPE, PRICE_SCALE
from hft_pipeline.ingest.quality import run_quality_checks
from hft_pipeline.ingest.slim import build_slim_day, read_slim_metadata
from hft_pipeline.ingest.slim_schema import META_TICK_SIZE
from hft_pipeline.instruments import root_spec
from hft_pipeline_tests.ingest.dbn_builders import (
    SESSION,
    dbn_stream,
    make_records,
    session_times,
    symbology,
    write_archive,
)

TICKS = 2_000  # rows, each one tick above the last: every residue of the grid comes up
PRICE_COLUMNS = [f"{side}_px_{level:02d}" for side in ("bid", "ask") for level in range(10)]


def grid_records(base_fixed: int, tick_fixed: int) -> np.ndarray:
    """MBP-10 trades whose price and book levels sit on consecutive ticks from ``base``."""
    records = make_records(MBP10_DTYPE, session_times(TICKS), instrument_ids=42, actions=b"T")
    steps = np.arange(TICKS, dtype=np.int64)
    records["price"] = base_fixed + steps * tick_fixed
    for depth in range(10):
        records["levels"]["bid_px"][:, depth] = base_fixed + (steps - depth - 1) * tick_fixed
        records["levels"]["ask_px"][:, depth] = base_fixed + (steps + depth) * tick_fixed
    return records


@pytest.mark.parametrize(
    ("root", "contract", "base_points"),
    [("ZN", "ZNH1", Fraction(110)), ("6E", "6EH1", Fraction(108, 100))],
)
def test_build_slim_day_prices_on_fractional_ticks_round_trip_exactly(
    tmp_path, root, contract, base_points
):
    tick = root_spec(root).tick
    tick_fixed = tick * PRICE_SCALE
    assert tick_fixed.denominator == 1  # 15_625_000 (ZN) and 50_000 (6E) fixed-point units
    records = grid_records(int(base_points * PRICE_SCALE), int(tick_fixed))
    archive = write_archive(
        tmp_path / f"{root}.zip",
        {"glbx-mdp3-20210105.mbp-10.dbn.zst": dbn_stream(records, "mbp-10")},
        symbology_json=symbology({contract: 42}),
    )

    summary = build_slim_day([archive], SESSION, root, tmp_path / "slim.parquet")

    table = pq.read_table(summary.path)
    sources = {"trade_px": records["price"]}
    for depth in range(10):
        sources[f"bid_px_{depth:02d}"] = records["levels"]["bid_px"][:, depth]
        sources[f"ask_px_{depth:02d}"] = records["levels"]["ask_px"][:, depth]
    for column in ["trade_px", *PRICE_COLUMNS]:
        prices = table.column(column).to_numpy()
        # Back to fixed-point: the source integers, every one.
        np.testing.assert_array_equal(
            np.round(prices * PRICE_SCALE).astype(np.int64), sources[column]
        )
        # On the grid: price / tick is a whole number of ticks, and that many ticks is the
        # source price exactly (in rational arithmetic, no float).
        ticks = np.round(prices / summary.tick_size).astype(np.int64)
        assert np.abs(prices / summary.tick_size - ticks).max() < 1e-6
        assert all(
            count * tick == Fraction(int(fixed), PRICE_SCALE)
            for count, fixed in zip(ticks, sources[column], strict=True)
        )
    assert float(read_slim_metadata(summary.path)[META_TICK_SIZE]) == float(tick)
    checks = {check.name: check for check in run_quality_checks(summary.path, summary.tick_size)}
    assert checks["prices_on_tick_grid"].passed
    assert summary.rows == TICKS
