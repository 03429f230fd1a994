"""Warm-up across days: long look-backs restart every session, or start in the previous trading
day's tail; the files say which."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hft_pipeline.config import FeatureSettings
from hft_pipeline.features.compute import META_WARMUP, PreviousDay, compute_day
from hft_pipeline.features.registry import FEATURES
from hft_pipeline.partitions import Session
from hft_pipeline_tests.features.slim_builders import (
    DAY,
    NS,
    OPEN_NS,
    previous_session,
    random_slim_table,
    write_slim,
)

SESSION = Session(DAY, OPEN_NS, OPEN_NS + 1800 * NS)  # 360 bars of 5 s
SETTINGS = FeatureSettings(bar_seconds=5, horizon_bars=12, horizons_bars=(12,))
LONG_LOOKBACKS = ("ema_200_dist_ticks", "log_ret_60", "tf1m_log_ret_5", "tf5m_log_ret_1")
# Windows (not recursive filters): once warmed up in both modes, they read the same bars.
WINDOWED = ("log_ret_60", "realized_vol_5m", "kyle_lambda_60", "tf1m_log_ret_5", "tf1m_obi_1")


def _slim(folder, session, seed):
    table = random_slim_table(seed, 3000, session, levels=10)
    return {"ES": write_slim(folder / f"es_{seed}.parquet", table, day=session.day)}


@pytest.fixture
def both_modes(tmp_path):
    today = _slim(tmp_path, SESSION, seed=1)
    earlier = previous_session(SESSION)
    previous = PreviousDay(_slim(tmp_path, earlier, seed=2), earlier)
    carried = dataclasses.replace(SETTINGS, warmup="previous_day")
    return (
        compute_day(today, SESSION, SETTINGS),
        compute_day(today, SESSION, carried, previous_day=previous),
    )


def test_compute_day_session_warmup_is_null_until_each_warm_up_ends(both_modes):
    (features, labels), _ = both_modes

    for name in LONG_LOOKBACKS:
        spec = next(spec for spec in FEATURES if spec.name == name)
        warmup = spec.warmup_bars(SETTINGS.bar_seconds)
        assert features[name].to_pylist()[:warmup] == [None] * warmup, name
    assert features.schema.metadata[META_WARMUP.encode()] == b"session"
    assert labels.schema.metadata[META_WARMUP.encode()] == b"session"


def test_compute_day_previous_day_warmup_defines_long_lookbacks_from_the_open(both_modes):
    _, (features, labels) = both_modes

    # Defined from the open; the few NULLs left follow bars without a mid (empty ask side).
    for name in LONG_LOOKBACKS:
        spec = next(spec for spec in FEATURES if spec.name == name)
        assert features[name][0].is_valid, name
        assert features[name].null_count < spec.warmup_bars(SETTINGS.bar_seconds), name
    assert features["bar_index"].to_pylist() == list(range(360))
    assert features.schema.metadata[META_WARMUP.encode()] == b"previous_day"
    assert labels.schema.metadata[META_WARMUP.encode()] == b"previous_day"


def test_compute_day_warmup_modes_agree_once_windows_are_warm(both_modes):
    (session_features, session_labels), (carried_features, carried_labels) = both_modes

    for name in WINDOWED:
        spec = next(spec for spec in FEATURES if spec.name == name)
        warm = slice(spec.warmup_bars(SETTINGS.bar_seconds) + 1, None)
        np.testing.assert_allclose(
            carried_features[name].to_numpy(zero_copy_only=False)[warm],
            session_features[name].to_numpy(zero_copy_only=False)[warm],
            rtol=0,
            atol=1e-12,
            err_msg=name,
        )
    # The session VWAP restarts at the open in both modes; labels never look back.
    assert carried_features["session_vwap"].equals(session_features["session_vwap"])
    assert carried_labels.equals(session_labels)


def test_compute_day_previous_day_warmup_without_previous_files_raises(tmp_path):
    settings = dataclasses.replace(SETTINGS, warmup="previous_day")

    with pytest.raises(ValueError, match="needs the SLIM files of the trading day before"):
        compute_day(_slim(tmp_path, SESSION, seed=1), SESSION, settings)
