"""The feature registry: names, model inputs, and look-backs that match the computed warm-up."""

from __future__ import annotations

import pytest

from hft_pipeline.config import FeatureSettings
from hft_pipeline.features.compute import compute_day
from hft_pipeline.features.families.base import BOOK_DEPTH
from hft_pipeline.features.registry import (
    FEATURE_NAMES,
    FEATURES,
    MODEL_FEATURES,
    FeatureSpec,
    max_warmup_bars,
)
from hft_pipeline.features.schema import KEY_COLUMNS, label_columns
from hft_pipeline.partitions import Session
from hft_pipeline_tests.features.slim_builders import (
    DAY,
    NS,
    OPEN_NS,
    book_event,
    slim_table,
    trade_event,
    write_slim,
)


def test_registry_names_are_unique_identifiers_apart_from_keys_and_labels():
    reserved = set(KEY_COLUMNS) | {
        name for horizon in FeatureSettings().horizons_bars for name in label_columns(horizon)
    }

    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert all(name.isidentifier() and name.islower() for name in FEATURE_NAMES)
    assert not reserved & set(FEATURE_NAMES)


def test_registry_model_features_exclude_raw_price_levels():
    assert "mid" in FEATURE_NAMES
    assert "mid" not in MODEL_FEATURES
    assert [name for name in FEATURE_NAMES if name in MODEL_FEATURES] == list(MODEL_FEATURES)


def test_registry_book_level_features_are_the_lob_transformer_contract():
    expected = [
        f"{side}_{quantity}_{level:02d}"
        for level in range(BOOK_DEPTH)
        for quantity, side in (
            ("offset_ticks", "bid"),
            ("offset_ticks", "ask"),
            ("log_size", "bid"),
            ("log_size", "ask"),
        )
    ]

    assert [name for name in MODEL_FEATURES if name[4:].startswith(("offset", "log_size"))] == (
        expected
    )


def test_registry_multi_timeframe_features_cover_both_timeframes_alike():
    one_minute = [name[len("tf1m_") :] for name in FEATURE_NAMES if name.startswith("tf1m_")]
    five_minutes = [name[len("tf5m_") :] for name in FEATURE_NAMES if name.startswith("tf5m_")]

    assert one_minute == five_minutes
    assert {"log_ret_1", "realized_vol_12", "obi_1", "trade_imbalance"} <= set(one_minute)


def test_registry_warm_up_of_a_5_minute_feature_counts_bars_of_the_interval():
    spec = next(spec for spec in FEATURES if spec.name == "tf5m_log_ret_1")

    # Two 5-minute bars must have closed: 600 s, i.e. bar 119 of 5 s or bar 599 of 1 s.
    assert (spec.warmup_bars(5), spec.warmup_bars(1)) == (119, 599)


def test_registry_warmup_bars_is_the_warm_up_of_each_feature(tmp_path):
    # One-second bars, each with a ten-level book update, a buy and a sell: nothing is undefined
    # except the warm-up, which must last exactly warmup_bars bars.
    bars = max_warmup_bars(1) + 30
    session = Session(DAY, OPEN_NS, OPEN_NS + bars * NS)
    rows = []
    for bar in range(bars):
        bid = 100.0 + 0.25 * (bar % 7)
        start = OPEN_NS + bar * NS
        bids = [(bid - 0.25 * level, 5 + bar % 3) for level in range(BOOK_DEPTH)]
        asks = [(bid + 0.25 * (level + 1), 4) for level in range(BOOK_DEPTH)]
        rows += [
            book_event(start + 1, bids, asks),
            trade_event(start + 2, bid + 0.25, 2, "B"),
            trade_event(start + 3, bid, 1 + bar % 2, "A"),
        ]
    path = write_slim(tmp_path / "es.parquet", slim_table(rows))

    features, _ = compute_day({"ES": path}, session, FeatureSettings(bar_seconds=1))

    for spec in FEATURES:
        warmup = spec.warmup_bars(1)
        values = features[spec.name].to_pylist()
        assert values[:warmup] == [None] * warmup, spec.name
        assert None not in values[warmup:], spec.name


@pytest.mark.parametrize(
    ("name", "bar_seconds", "bars"),
    [("momentum_5m", 1, 300), ("momentum_5m", 5, 60), ("realized_vol_30s", 60, 1)],
)
def test_feature_spec_at_clock_window_counts_bars_rounded_up(name, bar_seconds, bars):
    spec = next(spec for spec in FEATURES if spec.name == name)

    concrete = spec.at(bar_seconds)

    assert (concrete.lookback_bars, concrete.warmup_bars(bar_seconds)) == (bars, bars)
    assert "{window_bars}" not in concrete.sql + concrete.formula
    assert f"{bars}" in concrete.sql


def test_feature_spec_clock_window_and_lookback_bars_together_raise():
    with pytest.raises(ValueError, match="momentum_x: a clock-time window"):
        FeatureSpec("momentum_x", "f", 3, "ticks", "d", "mid", window_seconds=60)
