"""Point-in-time proof: features computed on the data truncated at t equal, for every bar closing
at or before t, the features computed on the whole day; every feature, both warm-up modes, on
random streams, a simulated CME day and a real NASDAQ day (LOBSTER GOOG, 10 levels)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from hft_pipeline.config import FeatureSettings
from hft_pipeline.features.compute import PreviousDay, compute_day
from hft_pipeline.features.registry import FEATURE_NAMES
from hft_pipeline.ingest.lobster import LOBSTER_CALENDAR
from hft_pipeline.ingest.slim import build_slim_day
from hft_pipeline.ingest.tools import ingest_archives
from hft_pipeline.partitions import Session, TradingCalendar
from hft_pipeline.simulate import simulate_bucket
from hft_pipeline_tests.features.slim_builders import (
    DAY,
    NS,
    OPEN_NS,
    previous_session,
    random_slim_table,
    write_slim,
)

SETTINGS = FeatureSettings(bar_seconds=5, horizon_bars=2, horizons_bars=(2,))
# Two hours of 5 s bars: the slowest feature (5-min volatility over 12 bars) is defined from
# 65 minutes on, so a cut at 70 minutes proves it on values, not only on NULLs.
SESSION = Session(DAY, OPEN_NS, OPEN_NS + 7200 * NS)
SYMBOL_SEEDS = (("ES", 11), ("NQ", 12))


def _write_day(folder, session, seed_offset, cut=None):
    files = {}
    for symbol, seed in SYMBOL_SEEDS:
        table = random_slim_table(seed + seed_offset, 6000, session, symbol, levels=10)
        if cut is not None:
            table = table.filter(pc.less_equal(table["ts_recv"], cut))
        path = folder / f"{symbol}_{session.day:%Y%m%d}_{cut}.parquet"
        files[symbol] = write_slim(path, table, symbol, day=session.day)
    return files


@pytest.mark.parametrize("warmup", ["session", "previous_day"])
def test_compute_day_truncated_at_t_gives_same_features_up_to_t(tmp_path, warmup):
    settings = dataclasses.replace(SETTINGS, warmup=warmup)
    previous = None
    if warmup == "previous_day":
        earlier = previous_session(SESSION)
        previous = PreviousDay(_write_day(tmp_path, earlier, seed_offset=100), earlier)
    full, _ = compute_day(
        _write_day(tmp_path, SESSION, 0), SESSION, settings, previous_day=previous
    )
    rng = np.random.default_rng(5)
    cuts = [OPEN_NS + 4200 * NS, *rng.integers(SESSION.open_ns, SESSION.close_ns, 1)]

    for cut in cuts:
        truncated, _ = compute_day(
            _write_day(tmp_path, SESSION, 0, cut), SESSION, settings, previous_day=previous
        )

        _assert_equal_up_to(cut, truncated, full)

    assert _never_defined_before(max(cuts), full) == []


def _assert_equal_up_to(cut: int, truncated: pa.Table, full: pa.Table) -> None:
    known = pc.less_equal(full["ts"], cut)
    for name in FEATURE_NAMES:
        expected = full[name].filter(known).to_numpy(zero_copy_only=False)
        found = truncated[name].filter(known).to_numpy(zero_copy_only=False)
        np.testing.assert_allclose(found, expected, rtol=0, atol=1e-12, err_msg=name)


def _never_defined_before(cut: int, features: pa.Table) -> list[str]:
    proven = features.filter(pc.less_equal(features["ts"], cut))
    return [name for name in FEATURE_NAMES if proven[name].null_count == len(proven)]


def _truncated_copy(slim_path: Path, cut: int, folder: Path) -> Path:
    """The SLIM file's rows received at or before ``cut``, its metadata kept."""
    table = pq.read_table(slim_path)
    path = folder / f"{slim_path.stem}_{cut}.parquet"
    pq.write_table(table.filter(pc.less_equal(table["ts_recv"], cut)), path)
    return path


def _assert_point_in_time(slim_path: Path, symbol: str, session: Session, cuts, folder: Path):
    settings = FeatureSettings(bar_seconds=5, horizon_bars=12, horizons_bars=(12,))
    full, _ = compute_day({symbol: slim_path}, session, settings)
    for cut in cuts:
        truncated_path = _truncated_copy(slim_path, cut, folder)
        truncated, _ = compute_day({symbol: truncated_path}, session, settings)
        _assert_equal_up_to(cut, truncated, full)
    return full


def test_compute_day_simulated_cme_day_truncated_at_t_gives_same_features_up_to_t(tmp_path):
    day = dt.date(2024, 3, 5)
    session = TradingCalendar("CME_Equity").session(day)
    archives = simulate_bucket(tmp_path / "bucket", day, day, ["ES"], events_per_second=0.5)
    slim_path = tmp_path / "es.parquet"
    build_slim_day(archives, session, "ES", slim_path)
    # Two hours in (every feature defined by then), and a late cut near the close.
    cuts = [session.open_ns + 7200 * NS + 2 * NS, session.close_ns - 1800 * NS - 3 * NS]

    full = _assert_point_in_time(slim_path, "ES", session, cuts, tmp_path)

    assert _never_defined_before(cuts[0], full) == []


def test_compute_day_real_lobster_day_truncated_at_t_gives_same_features_up_to_t(
    tmp_path, shared_data
):
    archive = (
        shared_data / "lobster-nasdaq-2012-06-21" / "LOBSTER_SampleFile_GOOG_2012-06-21_10.zip"
    )
    [written] = ingest_archives([archive], tmp_path, symbols=["GOOG"])
    session = TradingCalendar(LOBSTER_CALENDAR).session(written.day)
    # Cuts inside a burst of activity (mid-morning) and in the afternoon, off the bar grid.
    cuts = [session.open_ns + 5400 * NS + 1_234_567, session.open_ns + 18_000 * NS + 7]

    full = _assert_point_in_time(written.path, "GOOG", session, cuts, tmp_path)

    assert _never_defined_before(cuts[0], full) == []
