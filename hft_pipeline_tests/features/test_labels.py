"""Labels: every configured horizon, NULL over each horizon's session end, and the direction
threshold in ticks or from the trailing spread plus costs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hft_pipeline.config import FeatureSettings
from hft_pipeline.features.compute import compute_day
from hft_pipeline.features.schema import label_columns
from hft_pipeline_tests.features.slim_builders import (
    NS,
    OPEN_NS,
    SHORT_SESSION,
    book_event,
    slim_table,
    write_slim,
)

TICK = 0.25
# Best bid per 5 s bar in ticks; twelve bars fill the 60 s session.
BID_TICKS = [400, 401, 401, 399, 400, 400, 405, 405, 404, 404, 404, 404]


def _labels(tmp_path, settings, spread_ticks=(1,) * 12):
    rows = [
        book_event(
            OPEN_NS + (5 * bar + 1) * NS,
            [(bid * TICK, 1)],
            [((bid + spread) * TICK, 1)],
        )
        for bar, (bid, spread) in enumerate(zip(BID_TICKS, spread_ticks, strict=True))
    ]
    path = write_slim(tmp_path / "es.parquet", slim_table(rows))
    _, labels = compute_day({"ES": path}, SHORT_SESSION, settings)
    return labels.to_pydict()


def test_compute_day_labels_every_horizon_null_over_its_own_last_bars(tmp_path):
    settings = FeatureSettings(horizon_bars=2, horizons_bars=(2, 3))

    labels = _labels(tmp_path, settings)

    assert list(labels)[4:] == [*label_columns(2), *label_columns(3)]
    # Moves over 3 bars (ticks): -1 -1 -1 +6 +5 +4 -1 -1 0, then the session ends.
    assert labels["direction_h3"] == [0, 0, 0, 2, 2, 2, 0, 0, 1, None, None, None]
    assert labels["direction_h2"][-3:] == [1, None, None]
    mids = [(bid + 0.5) * TICK for bid in BID_TICKS]
    assert labels["fwd_ret_h3"][3] == pytest.approx(math.log(mids[6] / mids[3]), rel=1e-12)
    assert labels["fwd_ret_h3"][-3:] == labels["fwd_rv_h3"][-3:] == [None] * 3


def test_compute_day_spread_threshold_is_trailing_median_spread_plus_costs(tmp_path):
    spreads = [1, 1, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1]
    settings = FeatureSettings(
        horizon_bars=2,
        horizons_bars=(2,),
        direction_threshold_mode="spread",
        cost_ticks=0.5,
    )

    labels = _labels(tmp_path, settings, spreads)

    mid_ticks = np.array(BID_TICKS) + np.array(spreads) / 2
    # Only spreads up to bar t set bar t's threshold.
    thresholds = [np.median(spreads[: bar + 1]) + 0.5 for bar in range(10)]
    moves = mid_ticks[2:] - mid_ticks[:-2]
    expected = [
        0 if move <= -threshold else 2 if move >= threshold else 1
        for move, threshold in zip(moves, thresholds, strict=True)
    ]
    assert labels["direction_h2"] == [*expected, None, None]
    assert expected != [0 if m <= -1 else 2 if m >= 1 else 1 for m in moves]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"horizon_bars": 5}, "horizon_bars=5 .* not in horizons_bars"),
        ({"bar_seconds": 7, "bar_intervals": (7,)}, "dividing 60"),
        ({"bar_seconds": 10}, "bar_seconds=10 .* not in bar_intervals"),
        ({"direction_threshold_mode": "atr"}, "direction_threshold_mode"),
        ({"warmup": "week"}, "warmup must be one of"),
    ],
)
def test_compute_day_inconsistent_settings_raise_naming_the_setting(tmp_path, overrides, message):
    settings = FeatureSettings(**overrides)

    with pytest.raises(ValueError, match=message):
        _labels(tmp_path, settings)
