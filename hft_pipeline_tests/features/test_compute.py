"""Features and labels of one day: hand-computed values, NULL rules, point-in-time proof."""

from __future__ import annotations

import math
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from hft_pipeline.config import FeatureSettings
from hft_pipeline.features.compute import FEATURES_SCHEMA, KEY_FIELDS, compute_day, write_day
from hft_pipeline.features.labels import labels_schema
from hft_pipeline.features.registry import FEATURE_NAMES
from hft_pipeline.features.schema import KEY_COLUMNS, label_columns
from hft_pipeline.partitions import Session, TradingCalendar
from hft_pipeline_tests.features.slim_builders import (
    DAY,
    NS,
    OPEN_NS,
    SHORT_SESSION,
    book_event,
    random_slim_table,
    slim_table,
    trade_event,
    write_slim,
)

SETTINGS = FeatureSettings(
    bar_seconds=5, horizon_bars=2, horizons_bars=(2,), direction_threshold_ticks=1.0
)
FIVE_LEVEL_BIDS = [(100.00, 10), (99.75, 20), (99.50, 5), (99.25, 5), (99.00, 10)]
FIVE_LEVEL_ASKS = [(100.25, 30), (100.50, 10), (100.75, 5), (101.00, 5), (101.25, 10)]
# Best bid per bar in ticks of 0.25, spread one tick: mid = (bid + 0.5) * 0.25.
LABEL_BID_TICKS = [400, 401, 401, 399, 400, 400, 405, 405, 404, 404, 404, 404]


def _day(tmp_path, rows, settings=SETTINGS, session=SHORT_SESSION):
    path = write_slim(tmp_path / "es.parquet", slim_table(rows))
    features, labels = compute_day({"ES": path}, session, settings)
    return features.to_pydict(), labels.to_pydict()


def _tiny_book_rows() -> list[dict]:
    return [
        book_event(OPEN_NS + 1 * NS, FIVE_LEVEL_BIDS, FIVE_LEVEL_ASKS),
        trade_event(OPEN_NS + 2 * NS, 100.25, 3, "B"),
        trade_event(OPEN_NS + 3 * NS, 100.00, 1, "A"),
        book_event(OPEN_NS + 7 * NS, [(100.25, 5)], [(100.75, 5)]),
        trade_event(OPEN_NS + 32 * NS, 100.25, 2, "A"),
    ]


def test_compute_day_tiny_book_matches_hand_computed_book_features(tmp_path):
    features, _ = _day(tmp_path, _tiny_book_rows())

    assert features["mid"][:2] == [100.125, 100.5]
    assert features["spread_ticks"][:2] == [1.0, 2.0]
    assert features["obi_1"][:2] == [(10 - 30) / 40, 0.0]
    assert features["obi_5"][0] == pytest.approx((50 - 60) / 110, abs=1e-15)
    # microprice (100 * 30 + 100.25 * 10) / 40 = 100.0625, a quarter tick under the mid.
    assert features["microprice_offset_ticks"][:2] == [-0.25, 0.0]


def test_compute_day_tiny_book_matches_hand_computed_returns_and_trades(tmp_path):
    features, _ = _day(tmp_path, _tiny_book_rows())

    assert features["log_ret_1"][:3] == [None, math.log(100.5 / 100.125), 0.0]
    assert features["log_ret_5"][4:6] == [None, math.log(100.5 / 100.125)]
    assert features["trade_imbalance_1"][:2] == [(3 - 1) / 4, None]
    assert features["trade_imbalance_6"][4:7] == [None, (3 - 1) / 4, -1.0]
    assert features["log_trade_count"][:2] == [math.log(3), 0.0]
    assert features["log_volume"][0] == math.log(5)
    # Bar 2 closes 15 s into the 60 s session: a quarter of the way round.
    assert features["time_of_day_sin"][2] == pytest.approx(1.0, abs=1e-15)
    assert features["time_of_day_cos"][2] == pytest.approx(0.0, abs=1e-15)


def test_compute_day_time_features_read_the_session_bounds_and_trading_day(tmp_path):
    features, _ = _day(tmp_path, _tiny_book_rows())

    # Bars of 5 s closing 5, 10, .., 60 s into the 60 s session of Tuesday 2024-01-02.
    assert features["minutes_since_open"] == [5 * (bar + 1) / 60 for bar in range(12)]
    assert features["minutes_to_close"] == [(55 - 5 * bar) / 60 for bar in range(12)]
    assert set(features["day_of_week_sin"]) == {math.sin(2 * math.pi / 7)}
    assert set(features["day_of_week_cos"]) == {math.cos(2 * math.pi / 7)}


def test_compute_day_realized_volatility_is_null_in_warm_up_then_root_sum_of_squares(tmp_path):
    session = Session(DAY, OPEN_NS, OPEN_NS + 120 * NS)
    bid_ticks = [400 + (bar * 7) % 5 for bar in range(24)]
    rows = [
        book_event(OPEN_NS + (5 * bar + 1) * NS, [(ticks * 0.25, 1)], [(ticks * 0.25 + 0.25, 1)])
        for bar, ticks in enumerate(bid_ticks)
    ]

    features, _ = _day(tmp_path, rows, session=session)

    mids = (np.array(bid_ticks) + 0.5) * 0.25
    returns = np.log(mids[1:] / mids[:-1])
    expected_bar_12 = math.sqrt(np.sum(returns[:12] ** 2))
    assert features["realized_vol_1m"][:12] == [None] * 12
    assert features["realized_vol_1m"][12] == pytest.approx(expected_bar_12, rel=1e-12)


def _quote(ts_recv: int, bid_ticks: int) -> dict:
    return book_event(ts_recv, [(bid_ticks * 0.25, 1)], [(bid_ticks * 0.25 + 0.25, 1)])


def test_compute_day_candle_is_the_mid_path_over_the_interval(tmp_path):
    # Bar 0 closes at bid 400; bar 1 runs 400 -> 403 -> 399 -> 401; bar 2 holds still.
    rows = [
        _quote(OPEN_NS + 1 * NS, 400),
        _quote(OPEN_NS + 6 * NS, 403),
        _quote(OPEN_NS + 7 * NS, 399),
        _quote(OPEN_NS + 8 * NS, 401),
    ]

    features, _ = _day(tmp_path, rows)

    assert features["range_ticks"][:3] == [None, 4.0, 0.0]
    assert features["bar_direction"][:3] == [None, 1.0, 0.0]
    assert features["body_ratio"][1] == pytest.approx(1 / 4, rel=1e-12)
    assert features["upper_wick_ratio"][1] == pytest.approx(2 / 4, rel=1e-12)
    assert features["lower_wick_ratio"][1] == pytest.approx(1 / 4, rel=1e-12)
    # A candle that never moved has no shape.
    assert [features[name][2] for name in ("body_ratio", "upper_wick_ratio")] == [None, None]


def test_compute_day_clock_windows_count_bars_of_the_interval(tmp_path):
    # Twenty minutes of 5-s bars: the mid steps up one tick per bar, 3 contracts trade in each
    # bar and 9 in bar 200; momentum over 1, 5 and 15 minutes spans 12, 60 and 180 bars.
    session = Session(DAY, OPEN_NS, OPEN_NS + 1200 * NS)
    rows = []
    for bar in range(240):
        rows.append(_quote(OPEN_NS + (5 * bar + 1) * NS, 400 + bar))
        rows.append(trade_event(OPEN_NS + (5 * bar + 2) * NS, 100.0, 9 if bar == 200 else 3, "B"))

    features, _ = _day(tmp_path, rows, session=session)

    for name, bars in (("momentum_1m", 12), ("momentum_5m", 60), ("momentum_15m", 180)):
        assert features[name][:bars] == [None] * bars, name
        assert features[name][bars:] == [float(bars)] * (240 - bars), name
    mids = (400 + np.arange(240) + 0.5) * 0.25
    assert features["ret_5"][5] == pytest.approx(mids[5] / mids[0] - 1, rel=1e-12)
    assert features["relative_volume_5m"][:60] == [None] * 60
    assert features["relative_volume_5m"][60] == pytest.approx(1.0, rel=1e-12)
    assert features["relative_volume_5m"][200] == pytest.approx(3.0, rel=1e-12)
    assert features["relative_volume_5m"][201] == pytest.approx(3 / (3 + 6 / 60), rel=1e-12)


def test_compute_day_labels_match_hand_computed_and_last_horizon_is_null(tmp_path):
    rows = [
        book_event(OPEN_NS + (5 * bar + 1) * NS, [(ticks * 0.25, 1)], [(ticks * 0.25 + 0.25, 1)])
        for bar, ticks in enumerate(LABEL_BID_TICKS)
    ]

    _, labels = _day(tmp_path, rows)

    mids = [(ticks + 0.5) * 0.25 for ticks in LABEL_BID_TICKS]
    expected_return = math.log(mids[2] / mids[0])
    expected_volatility = math.hypot(math.log(mids[1] / mids[0]), math.log(mids[2] / mids[1]))
    assert labels["fwd_ret_h2"][0] == pytest.approx(expected_return, rel=1e-12)
    assert labels["fwd_rv_h2"][0] == pytest.approx(expected_volatility, rel=1e-12)
    # Moves over 2 bars (ticks): +1 -2 -1 +1 +5 +5 -1 -1 0 0, then the session ends.
    assert labels["direction_h2"] == [2, 0, 0, 2, 2, 2, 0, 0, 1, 1, None, None]
    assert labels["fwd_ret_h2"][-2:] == labels["fwd_rv_h2"][-2:] == [None, None]


def test_compute_day_tables_keep_features_and_labels_apart(tmp_path):
    features, labels = _day(tmp_path, _tiny_book_rows())

    assert list(features) == [*KEY_COLUMNS, *FEATURE_NAMES]
    assert list(labels) == [*KEY_COLUMNS, *label_columns(SETTINGS.horizon_bars)]
    assert features["bar_index"] == labels["bar_index"] == list(range(12))


def test_compute_day_two_symbols_sorted_by_symbol_with_their_own_tick(tmp_path):
    es_rows = [book_event(OPEN_NS + NS, [(100.00, 1)], [(100.25, 1)])]
    zn_rows = [book_event(OPEN_NS + NS, [(110.0, 1)], [(110.0 + 2 / 64, 1)])]
    zn = write_slim(tmp_path / "zn.parquet", slim_table(zn_rows, "ZN"), "ZN", tick_size=1 / 64)
    es = write_slim(tmp_path / "es.parquet", slim_table(es_rows))

    features, labels = compute_day({"ZN": zn, "ES": es}, SHORT_SESSION, SETTINGS)

    assert features.schema == FEATURES_SCHEMA
    assert labels.schema == labels_schema(KEY_FIELDS, SETTINGS.horizons_bars)
    assert features["symbol"].to_pylist() == ["ES"] * 12 + ["ZN"] * 12
    assert features["spread_ticks"].to_pylist()[::12] == [1.0, 2.0]


def test_compute_day_first_bar_of_each_symbol_looks_back_at_nothing(tmp_path):
    # Both symbols quote from the open; the second symbol's first bar follows the first
    # symbol's last bar in the bar table, and must not read its mid as the previous one.
    es_rows = [book_event(OPEN_NS, [(100.00, 1)], [(100.25, 1)])]
    zn_rows = [book_event(OPEN_NS, [(110.0, 1)], [(110.0 + 2 / 64, 1)])]
    zn = write_slim(tmp_path / "zn.parquet", slim_table(zn_rows, "ZN"), "ZN", tick_size=1 / 64)
    es = write_slim(tmp_path / "es.parquet", slim_table(es_rows))

    features = compute_day({"ES": es, "ZN": zn}, SHORT_SESSION, SETTINGS)[0].to_pydict()

    first_bars = [features["symbol"].index(symbol) for symbol in ("ES", "ZN")]
    for name in ("log_ret_1", "ret_1", "bar_direction", "range_ticks"):
        assert [features[name][row] for row in first_bars] == [None, None], name
    assert [features["log_ret_1"][row + 1] for row in first_bars] == [0.0, 0.0]


def test_compute_day_empty_slim_file_gives_null_book_features(tmp_path):
    features, labels = _day(tmp_path, [])

    for name in ("mid", "log_ret_1", "spread_ticks", "obi_1", "microprice_offset_ticks"):
        assert features[name] == [None] * 12, name
    assert features["log_volume"] == [0.0] * 12
    assert labels["direction_h2"] == [None] * 12


def test_write_day_writes_zstd_parquet_atomically(tmp_path):
    features, labels = compute_day(
        {"ES": write_slim(tmp_path / "es.parquet", slim_table(_tiny_book_rows()))},
        SHORT_SESSION,
        SETTINGS,
    )
    features_path = tmp_path / "out" / "features_20240102.parquet"
    labels_path = tmp_path / "out" / "labels_20240102.parquet"

    write_day(features, labels, features_path, labels_path)

    assert pq.read_table(features_path).equals(features)
    assert pq.read_table(labels_path).equals(labels)
    assert pq.ParquetFile(features_path).metadata.row_group(0).column(4).compression == "ZSTD"
    assert sorted(path.name for path in features_path.parent.iterdir()) == [
        features_path.name,
        labels_path.name,
    ]


def test_compute_day_speed_on_one_day_of_two_symbols_is_printed(tmp_path, capsys):
    session = TradingCalendar("CME_Equity").session(DAY)
    files = {
        symbol: write_slim(
            tmp_path / f"{symbol}.parquet",
            random_slim_table(seed, 200_000, session, symbol),
            symbol,
        )
        for seed, symbol in ((1, "ES"), (2, "NQ"))
    }

    started = time.perf_counter()
    features, _ = compute_day(files, session, FeatureSettings(bar_seconds=5))
    elapsed = time.perf_counter() - started

    with capsys.disabled():
        print(
            f"\ncompute_day: 2 x 200k events -> {features.num_rows} bars of 5 s in "
            f"{elapsed:.2f} s: {features.num_rows / elapsed:,.0f} bars/s, "
            f"{400_000 / elapsed:,.0f} events/s"
        )
    assert features.num_rows == 2 * 16_560
