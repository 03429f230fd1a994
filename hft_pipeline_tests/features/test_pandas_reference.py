"""The pandas + ta reference of the benchmark agrees with compute_day, feature by feature."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from hft_pipeline.config import FeatureSettings
from hft_pipeline.features.compute import compute_day
from hft_pipeline.features.families.flow import KYLE_BARS
from hft_pipeline.features.schema import KEY_COLUMNS
from hft_pipeline.ingest.slim import build_slim_day
from hft_pipeline.partitions import Session, TradingCalendar
from hft_pipeline.simulate import simulate_bucket
from hft_pipeline_tests.features.pandas_reference import compare_columns, reference_day
from hft_pipeline_tests.features.slim_builders import (
    DAY,
    NS,
    OPEN_NS,
    random_slim_table,
    write_slim,
)

HOUR_SESSION = Session(DAY, OPEN_NS, OPEN_NS + 3600 * NS)
SIMULATED_DAY = dt.date(2024, 3, 5)
RTOL = 1e-9
# pandas' rolling std and cov update running sums (add the new bar, remove the old), so their
# rounding grows along the session: ~1e-7 ticks over these days, 1e-3 over the benchmark's
# 82,800 bars (compute_day's two-pass std is exact to 1e-11). Those features are held to an
# absolute tolerance in their unit; values near 0 make the relative one meaningless there.
ROLLING_STD_FEATURES = ("bb_upper_dist_ticks", "bb_lower_dist_ticks", "bb_pct_b", "bb_width")
PANDAS_DRIFT_ATOL = {**dict.fromkeys(ROLLING_STD_FEATURES, 1e-6), f"kyle_lambda_{KYLE_BARS}": 1e-9}


def _both_paths(
    slim_path: Path, session: Session, settings: FeatureSettings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """compute_day's features and labels side by side, and the reference's."""
    features, labels = compute_day({"ES": slim_path}, session, settings)
    ours = pd.concat(
        [features.to_pandas(), labels.to_pandas().drop(columns=list(KEY_COLUMNS))], axis=1
    )
    return ours, reference_day(slim_path, session, settings)


def _disagreements(ours: pd.DataFrame, reference: pd.DataFrame) -> dict[str, tuple[int, float]]:
    """Column -> (NULL mismatches, max abs diff) of every column outside its tolerance."""
    assert ours["ts"].tolist() == reference["ts"].tolist()
    comparisons = compare_columns(ours, reference, RTOL)
    assert {found.name for found in comparisons} == set(reference.columns)
    return {
        found.name: (found.null_mismatches, found.max_abs_diff)
        for found in comparisons
        if not found.equal
        and (found.null_mismatches or found.max_abs_diff > PANDAS_DRIFT_ATOL.get(found.name, 0))
    }


@pytest.mark.parametrize("bar_seconds", [1, 5])
def test_reference_day_random_stream_matches_compute_day(tmp_path, bar_seconds):
    # Empty ask sides, trade-only rows and unclassified trades: the NULL rules all run.
    path = write_slim(tmp_path / "es.parquet", random_slim_table(5, 20_000, HOUR_SESSION))
    settings = FeatureSettings(bar_seconds=bar_seconds, horizon_bars=12, horizons_bars=(12, 30))

    ours, reference = _both_paths(path, HOUR_SESSION, settings)

    assert set(ours.columns) - set(KEY_COLUMNS) <= set(reference.columns)
    assert _disagreements(ours, reference) == {}


def test_reference_day_simulated_session_matches_compute_day(tmp_path):
    session = TradingCalendar("CME_Equity").session(SIMULATED_DAY)
    archives = simulate_bucket(
        tmp_path / "bucket", SIMULATED_DAY, SIMULATED_DAY, ["ES"], events_per_second=0.3
    )
    path = tmp_path / "es.parquet"
    build_slim_day(archives, session, "ES", path)

    ours, reference = _both_paths(path, session, FeatureSettings(bar_seconds=5))

    assert _disagreements(ours, reference) == {}
