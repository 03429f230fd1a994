"""Technical indicators: parity with the ``ta`` package, NULL rules, session VWAP by hand."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest
from ta.momentum import RSIIndicator
from ta.trend import MACD, EMAIndicator
from ta.volatility import AverageTrueRange, BollingerBands

from hft_pipeline.config import FeatureSettings
from hft_pipeline.features import indicators
from hft_pipeline.features.bars import build_bars
from hft_pipeline.features.compute import compute_day
from hft_pipeline.features.registry import EMA_SPANS, FEATURES
from hft_pipeline.partitions import Session
from hft_pipeline_tests.features.slim_builders import (
    DAY,
    ES_TICK,
    NS,
    OPEN_NS,
    book_event,
    random_slim_table,
    slim_table,
    trade_event,
    write_slim,
)

SETTINGS = FeatureSettings(
    bar_seconds=5, horizon_bars=2, horizons_bars=(2,), direction_threshold_ticks=1.0
)
HOUR_SESSION = Session(DAY, OPEN_NS, OPEN_NS + 3600 * NS)  # 720 bars of 5 s
PARITY_ATOL = 1e-9
LOOKBACK = {spec.name: spec.lookback_bars for spec in FEATURES}


@pytest.fixture(scope="module")
def parity_day(tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(features, bars) of one hour of seeded events whose book never has an empty side, so
    that the mid is defined at every bar after the first book event."""
    table = random_slim_table(21, 8000, HOUR_SESSION)
    full_book = pc.or_(pc.is_valid(table["ask_px_00"]), pc.is_null(table["bid_px_00"]))
    path = write_slim(tmp_path_factory.mktemp("parity") / "es.parquet", table.filter(full_book))
    features, _ = compute_day({"ES": path}, HOUR_SESSION, SETTINGS)
    bars = build_bars({"ES": path}, HOUR_SESSION, SETTINGS.bar_seconds)
    features, bars = features.to_pandas(), bars.to_pandas()
    first = int(bars["mid"].first_valid_index())
    assert bars["mid"].iloc[first:].notna().all()
    return features.iloc[first:].reset_index(drop=True), bars.iloc[first:].reset_index(drop=True)


def _assert_parity(found: pd.Series, expected: pd.Series, lookback: int, name: str) -> None:
    assert found.iloc[:lookback].isna().all(), f"{name}: defined during its warm-up"
    np.testing.assert_allclose(
        found.iloc[lookback:].to_numpy(dtype=float),
        expected.iloc[lookback:].to_numpy(dtype=float),
        rtol=0,
        atol=PARITY_ATOL,
        err_msg=name,
    )


@pytest.mark.parametrize("span", EMA_SPANS)
def test_ema_matches_ta_after_warm_up(parity_day, span):
    features, bars = parity_day

    expected = EMAIndicator(bars["mid"], window=span).ema_indicator()

    _assert_parity(features[f"ema_{span}"], expected, span - 1, f"ema_{span}")
    distance = (bars["mid"] - expected) / ES_TICK
    _assert_parity(features[f"ema_{span}_dist_ticks"], distance, span - 1, "ema distance")


def test_rsi_matches_ta_after_warm_up(parity_day):
    features, bars = parity_day

    expected = RSIIndicator(bars["mid"], window=14).rsi()

    _assert_parity(features["rsi_14"], expected, LOOKBACK["rsi_14"], "rsi_14")


def test_macd_matches_ta_after_warm_up(parity_day):
    features, bars = parity_day

    expected = MACD(bars["mid"], window_slow=26, window_fast=12, window_sign=9)

    line, signal, hist = (
        features[f"{name}_ticks"] * ES_TICK for name in ("macd", "macd_signal", "macd_hist")
    )
    _assert_parity(line, expected.macd(), LOOKBACK["macd_ticks"], "macd")
    _assert_parity(signal, expected.macd_signal(), LOOKBACK["macd_signal_ticks"], "signal")
    _assert_parity(hist, expected.macd_diff(), LOOKBACK["macd_hist_ticks"], "histogram")


def test_bollinger_matches_ta_after_warm_up(parity_day):
    features, bars = parity_day
    mid = bars["mid"]

    expected = BollingerBands(mid, window=20, window_dev=2)

    lookback = LOOKBACK["bb_pct_b"]
    upper = mid + features["bb_upper_dist_ticks"] * ES_TICK
    lower = mid - features["bb_lower_dist_ticks"] * ES_TICK
    _assert_parity(upper, expected.bollinger_hband(), lookback, "upper band")
    _assert_parity(lower, expected.bollinger_lband(), lookback, "lower band")
    _assert_parity(features["bb_pct_b"], expected.bollinger_pband(), lookback, "%b")
    _assert_parity(features["bb_width"] * 100, expected.bollinger_wband(), lookback, "width")


def test_atr_matches_ta_after_warm_up(parity_day):
    features, bars = parity_day

    expected = AverageTrueRange(bars["mid_high"], bars["mid_low"], bars["mid"], window=14)

    atr = features["atr_14_ticks"] * ES_TICK
    _assert_parity(atr, expected.average_true_range(), LOOKBACK["atr_14_ticks"], "atr")


def test_indicators_skip_a_bar_without_mid_and_match_ta_on_the_other_bars(tmp_path):
    # One-second bars with a book update each; bar 40 has an empty ask side, so no mid.
    bar_count, gap = 80, 40
    session = Session(DAY, OPEN_NS, OPEN_NS + bar_count * NS)
    rows = []
    for bar in range(bar_count):
        bid = 100.0 + 0.25 * ((bar * 7) % 5)
        asks = [] if bar == gap else [(bid + 0.25 * (1 + bar % 2), 4)]
        rows.append(book_event(OPEN_NS + bar * NS + 1, [(bid, 5)], asks))
    path = write_slim(tmp_path / "es.parquet", slim_table(rows))

    features = compute_day({"ES": path}, session, FeatureSettings(bar_seconds=1))[0].to_pandas()

    assert pd.isna(features["mid"].iloc[gap])
    mid = features["mid"].drop(index=gap).reset_index(drop=True)
    for name in ("ema_9", "rsi_14", "macd_ticks", "atr_14_ticks", "bb_pct_b"):
        assert pd.isna(features[name].iloc[gap]), name
    found = features.drop(index=gap).reset_index(drop=True)
    _assert_parity(found["ema_9"], EMAIndicator(mid, window=9).ema_indicator(), 8, "ema_9")
    _assert_parity(found["rsi_14"], RSIIndicator(mid, window=14).rsi(), 13, "rsi_14")
    line = MACD(mid).macd()
    _assert_parity(found["macd_ticks"] * ES_TICK, line, 25, "macd")


def test_per_session_restarts_the_filter_at_each_session_and_skips_nan():
    ema_3 = partial(indicators.ema, span=3)
    first = np.array([1.0, 2.0, np.nan, 4.0, 8.0])
    second = np.array([10.0, 20.0, 30.0])

    result = indicators.per_session(ema_3, [np.r_[first, second]], np.array([0, 5]))

    expected_first = indicators.ema(np.array([1.0, 2.0, 4.0, 8.0]), 3)
    np.testing.assert_array_equal(result[:5], np.insert(expected_first, 2, np.nan))
    np.testing.assert_array_equal(result[5:], indicators.ema(second, 3))
    # ema[0] = 10, ema[1] = 15, ema[2] = 22.5; the first span - 1 = 2 bars are warm-up.
    assert np.isnan(result[5:7]).all() and result[7] == 22.5


def test_rsi_without_any_move_is_null_not_100():
    flat = np.full(20, 100.0)

    result = indicators.rsi(flat, 14)

    assert np.isnan(result).all()


def test_session_vwap_matches_hand_computation_and_is_null_before_the_first_trade(tmp_path):
    session = Session(DAY, OPEN_NS, OPEN_NS + 30 * NS)  # six 5-second bars
    rows = [
        book_event(OPEN_NS + 1 * NS, [(100.00, 10)], [(100.25, 10)]),
        trade_event(OPEN_NS + 7 * NS, 100.25, 3, "B"),
        trade_event(OPEN_NS + 8 * NS, 100.00, 1, "A"),
        book_event(OPEN_NS + 9 * NS, [(100.50, 10)], [(100.75, 10)]),
        trade_event(OPEN_NS + 21 * NS, 100.75, 2, "B"),
    ]
    path = write_slim(tmp_path / "es.parquet", slim_table(rows))

    features = compute_day({"ES": path}, session, SETTINGS)[0].to_pydict()

    after_bar_1 = (100.25 * 3 + 100.00 * 1) / 4
    after_bar_4 = (100.25 * 3 + 100.00 * 1 + 100.75 * 2) / 6
    expected = [None, after_bar_1, after_bar_1, after_bar_1, after_bar_4, after_bar_4]
    assert features["session_vwap"][0] is None
    assert features["session_vwap"][1:] == pytest.approx(expected[1:], rel=1e-15)
    assert features["vwap_dist_ticks"][0] is None
    assert features["vwap_dist_ticks"][1] == pytest.approx((100.625 - after_bar_1) / ES_TICK)
    assert features["vwap_dist_ticks"][5] == pytest.approx((100.625 - after_bar_4) / ES_TICK)
