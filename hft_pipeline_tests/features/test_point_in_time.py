"""Point-in-time proof: features computed on the data truncated at t equal, for every bar closing
at or before t, the features computed on the whole day; every feature, both warm-up modes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow.compute as pc
import pytest

from hft_pipeline.config import FeatureSettings
from hft_pipeline.features.compute import PreviousDay, compute_day
from hft_pipeline.features.registry import FEATURE_NAMES
from hft_pipeline.partitions import Session
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

        known = pc.less_equal(full["ts"], cut)
        for name in FEATURE_NAMES:
            expected = full[name].filter(known).to_numpy(zero_copy_only=False)
            found = truncated[name].filter(known).to_numpy(zero_copy_only=False)
            np.testing.assert_allclose(found, expected, rtol=0, atol=1e-12, err_msg=name)

    proven = full.filter(pc.less_equal(full["ts"], max(cuts)))
    never_defined = [name for name in FEATURE_NAMES if proven[name].null_count == len(proven)]
    assert never_defined == []
