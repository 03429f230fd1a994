"""Book and flow features: hand-computed order-flow imbalance, VPIN, Kyle's lambda and more."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hft_pipeline.config import FeatureSettings
from hft_pipeline.features.compute import compute_day
from hft_pipeline.features.indicators import vpin
from hft_pipeline.partitions import Session
from hft_pipeline_tests.features.slim_builders import (
    DAY,
    NS,
    OPEN_NS,
    SHORT_SESSION,
    book_event,
    slim_table,
    trade_event,
    write_slim,
)


def _features(tmp_path, rows, session=SHORT_SESSION, bar_seconds=5) -> dict:
    path = write_slim(tmp_path / "es.parquet", slim_table(rows))
    features, _ = compute_day({"ES": path}, session, FeatureSettings(bar_seconds=bar_seconds))
    return features.to_pydict()


def _two_level_book_rows() -> list[dict]:
    return [
        # Bar 0: the first book event; no previous state, so no flow term.
        book_event(OPEN_NS + 1 * NS, [(100.00, 10), (99.75, 20)], [(100.25, 30), (100.50, 10)]),
        # Bar 1, prices unchanged: L1 e = (14 - 10) - (25 - 30) = 9; L2 e = 0.
        book_event(OPEN_NS + 6 * NS, [(100.00, 14), (99.75, 20)], [(100.25, 25), (100.50, 10)]),
        # Bar 1, both sides up one tick: L1 e = +qb 5 + qa' 25 = 30; L2 e = +14 + 10 = 24.
        book_event(OPEN_NS + 7 * NS, [(100.25, 5), (100.00, 14)], [(100.50, 8), (100.75, 6)]),
        # Bar 2: no book event. Bar 3, both sides down one tick: L1 e = -qb' 5 - qa 4 = -9;
        # L2 e = -qb' 14 - qa 9 = -23.
        book_event(OPEN_NS + 16 * NS, [(100.00, 7), (99.75, 3)], [(100.25, 4), (100.50, 9)]),
    ]


def test_ofi_level_1_matches_hand_computed_flow_over_average_best_depth(tmp_path):
    features = _features(tmp_path, _two_level_book_rows())

    # Bar 0: no book before the bar. Bar 1: flow 9 + 30 = 39 over the mean of (14 + 25) / 2
    # and (5 + 8) / 2, 13. Bar 2: no events, flow 0. Bar 3: -9 over (7 + 4) / 2.
    assert features["ofi_1"][0] is None
    assert features["ofi_1"][1:4] == pytest.approx([3.0, 0.0, -9 / 5.5], rel=1e-12)


def test_ofi_multi_level_sums_levels_over_average_level_depth(tmp_path):
    features = _features(tmp_path, _two_level_book_rows())

    # Bar 1: flow 39 + 24 = 63 (levels 3-5 empty, no terms); depth per level and side is the
    # mean of (14 + 20 + 25 + 10) / 10 and (5 + 14 + 8 + 6) / 10, 5.1.
    # Bar 3: flow -9 - 23 = -32 over (7 + 3 + 4 + 9) / 10 = 2.3.
    assert features["ofi_multi_5"][0] is None
    assert features["ofi_multi_5"][1:4] == pytest.approx([63 / 5.1, 0.0, -32 / 2.3], rel=1e-12)


def test_book_depth_and_deep_imbalance_read_all_kept_levels(tmp_path):
    features = _features(tmp_path, _two_level_book_rows())

    assert features["log_depth_bid_10"][1] == math.log(1 + 5 + 14)
    assert features["log_depth_ask_10"][1] == math.log(1 + 8 + 6)
    assert features["obi_3"][1] == pytest.approx((19 - 14) / 33, rel=1e-12)
    assert features["obi_10"][1] == features["obi_3"][1]


def test_book_flow_features_are_null_before_the_first_book_event(tmp_path):
    rows = [trade_event(OPEN_NS + NS, 100.0, 1, "B")]

    features = _features(tmp_path, rows)

    for name in ("ofi_1", "ofi_multi_5", "log_depth_bid_10", "log_depth_ask_10", "obi_10"):
        assert features[name] == [None] * 12, name


def test_vpin_splits_bars_across_buckets_as_hand_computed():
    # Classified volume 4 a bar. At bar 2, V = 0.375 * (4 + 4) = 3: bucket [9, 12] is 3 lots of
    # bar 2 (buy 1.5, sell 1.5) -> 0; bucket [6, 9] is 1 lot of bar 2 (0.5, 0.5) and 2 of bar 1
    # (0, 2) -> |0.5 - 2.5| / 3 = 2/3; VPIN = 1/3. At bar 3, V = 3: [13, 16] is 3 lots of bar 3
    # (0, 3) -> 1; [10, 13] is 1 lot of bar 3 (0, 1) and 2 of bar 2 (1, 1) -> 1/3; VPIN = 2/3.
    buy = np.array([4.0, 0.0, 2.0, 0.0])
    sell = np.array([0.0, 4.0, 2.0, 4.0])

    result = vpin(buy, sell, buckets=2, size_bars=2, bucket_share=0.375)

    np.testing.assert_allclose(result, [np.nan, np.nan, 1 / 3, 2 / 3], rtol=1e-12)


def test_vpin_without_previous_volume_is_nan():
    result = vpin(np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0, 1.0]), 2, 2, 0.5)

    assert np.isnan(result).all()


def test_kyle_lambda_amihud_and_intensity_match_hand_computed_on_one_second_bars(tmp_path):
    # Signed volume x and mid change y (ticks) repeat every 4 bars: y = 2 x + e with e =
    # (1, 1, -1, -1) orthogonal to x = (1, -1, 1, -1) and of mean 0 over any 60 bars (15
    # periods), so the OLS slope is exactly 2 ticks per lot: 200 ticks per 100 lots.
    signed = [1, -1, 1, -1]
    moves = [3, -1, 1, -3]
    bars = 64
    session = Session(DAY, OPEN_NS, OPEN_NS + bars * NS)
    bid_ticks = 400 + np.cumsum([0] + [moves[bar % 4] for bar in range(1, bars)])
    rows = []
    for bar, ticks in enumerate(bid_ticks):
        start = OPEN_NS + bar * NS
        bid = float(ticks) * 0.25
        rows.append(book_event(start + 1, [(bid, 1)], [(bid + 0.25, 1)]))
        rows.append(trade_event(start + 2, bid, 1, "B" if signed[bar % 4] > 0 else "A"))

    features = _features(tmp_path, rows, session, bar_seconds=1)

    assert features["kyle_lambda_60"][:60] == [None] * 60
    assert features["kyle_lambda_60"][60:] == pytest.approx([200.0] * 4, rel=1e-9)
    # One lot a bar: Amihud is 1e4 times the mean |1-bar log return| of the mid.
    mids = (bid_ticks + 0.5) * 0.25
    absolute_returns = np.abs(np.diff(np.log(mids)))
    assert features["amihud_60"][59] is None
    assert features["amihud_60"][60] == pytest.approx(1e4 * absolute_returns[:60].mean())
    # One trade a second.
    assert features["trade_intensity_6"][5:7] == [None, 1.0]
