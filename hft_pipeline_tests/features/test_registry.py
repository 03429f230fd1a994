"""The feature registry: names, model inputs, and look-backs that match the computed warm-up."""

from __future__ import annotations

from hft_pipeline.config import FeatureSettings
from hft_pipeline.features.compute import compute_day
from hft_pipeline.features.registry import (
    FEATURE_NAMES,
    FEATURES,
    MAX_LOOKBACK_BARS,
    MODEL_FEATURES,
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
    reserved = set(KEY_COLUMNS) | set(label_columns(FeatureSettings().horizon_bars))

    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert all(name.isidentifier() and name.islower() for name in FEATURE_NAMES)
    assert not reserved & set(FEATURE_NAMES)


def test_registry_model_features_exclude_raw_price_levels():
    assert "mid" in FEATURE_NAMES
    assert "mid" not in MODEL_FEATURES
    assert [name for name in FEATURE_NAMES if name in MODEL_FEATURES] == list(MODEL_FEATURES)


def test_registry_lookback_bars_is_the_warm_up_of_each_feature(tmp_path):
    # One-second bars, each with a book update, a buy and a sell: nothing is undefined except
    # the warm-up, which must last exactly lookback_bars bars.
    bars = MAX_LOOKBACK_BARS + 30
    session = Session(DAY, OPEN_NS, OPEN_NS + bars * NS)
    rows = []
    for bar in range(bars):
        bid = 100.0 + 0.25 * (bar % 7)
        start = OPEN_NS + bar * NS
        rows += [
            book_event(start + 1, [(bid, 5 + bar % 3)], [(bid + 0.25, 4)]),
            trade_event(start + 2, bid + 0.25, 2, "B"),
            trade_event(start + 3, bid, 1 + bar % 2, "A"),
        ]
    path = write_slim(tmp_path / "es.parquet", slim_table(rows))

    features, _ = compute_day({"ES": path}, session, FeatureSettings(bar_seconds=1))

    for spec in FEATURES:
        values = features[spec.name].to_pylist()
        assert values[: spec.lookback_bars] == [None] * spec.lookback_bars, spec.name
        assert None not in values[spec.lookback_bars :], spec.name
