"""Asset checks of a day's tables: they pass on computed tables and fail on broken ones."""

from __future__ import annotations

import pyarrow as pa
import pytest

from hft_pipeline.config import FeatureSettings
from hft_pipeline.features.compute import compute_day
from hft_pipeline.features.quality import check_day_tables, class_balance, disallowed_nulls
from hft_pipeline.features.registry import FEATURES
from hft_pipeline.partitions import Session
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

SESSION = Session(DAY, OPEN_NS, OPEN_NS + 900 * NS)  # 180 bars of 5 s
SETTINGS = FeatureSettings(bar_seconds=5, horizon_bars=12, horizons_bars=(12, 24))


@pytest.fixture(scope="module")
def day_tables(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quality")
    files = {
        symbol: write_slim(
            folder / f"{symbol}.parquet",
            random_slim_table(seed, 2000, SESSION, symbol, levels=10),
            symbol,
        )
        for seed, symbol in ((3, "ES"), (4, "NQ"))
    }
    return compute_day(files, SESSION, SETTINGS)


def _verdicts(features, labels, symbols=("ES", "NQ")):
    checks = check_day_tables(features, labels, symbols, 180, SETTINGS.bar_seconds)
    return {check.name: check for check in checks}


def _with_values(table, name, replace):
    values = table[name].to_pylist()
    replace(values)
    position = table.column_names.index(name)
    return table.set_column(position, name, pa.array(values, pa.float64()))


def test_check_day_tables_computed_day_passes_every_check(day_tables):
    verdicts = _verdicts(*day_tables)

    assert {name: check.passed for name, check in verdicts.items()} == {
        "no_infinite_values": True,
        "nulls_where_allowed": True,
        "rows_match_session": True,
    }


def test_check_day_tables_null_where_registry_forbids_fails_naming_the_feature(day_tables):
    features, labels = day_tables
    mids = features["mid"].to_pylist()
    # A bar past log_ret_5's warm-up whose last 6 bars all have a mid: log_ret_5 is defined.
    row = next(bar for bar in range(6, 180) if None not in mids[bar - 5 : bar + 1])

    def break_never(values):
        values[100] = None  # log_volume is defined on every bar

    def break_after_warmup(values):
        values[row] = None

    broken = _with_values(features, "log_volume", break_never)
    broken = _with_values(broken, "log_ret_5", break_after_warmup)
    verdicts = _verdicts(broken, labels)

    assert not verdicts["nulls_where_allowed"].passed
    assert verdicts["nulls_where_allowed"].metadata["columns_with_disallowed_nulls"] == {
        "log_volume": 1,
        "log_ret_5": 1,
    }


def test_disallowed_nulls_warm_up_nulls_after_a_missing_mid_are_allowed():
    features = pa.table(
        {
            "symbol": ["ES"] * 6,
            "mid": [100.0, 100.25, None, 100.0, 100.0, 100.0],
            "log_ret_1": [None, 0.1, None, None, 0.0, None],
        }
    )
    log_return = [spec for spec in FEATURES if spec.name == "log_ret_1"]

    # Bar 0: warm-up; bars 2-3: the missing mid and the bar after it; bar 5 is not allowed.
    assert disallowed_nulls(features, 5, log_return) == {"log_ret_1": 1}


def test_disallowed_nulls_session_vwap_null_before_first_trade_allowed_after_it_not(tmp_path):
    rows = [
        book_event(OPEN_NS + 1 * NS, [(100.00, 4), (99.75, 2)], [(100.25, 6)]),
        trade_event(OPEN_NS + 17 * NS, 100.25, 3, "B"),  # bar 3
    ]
    path = write_slim(tmp_path / "es.parquet", slim_table(rows))
    features, _ = compute_day({"ES": path}, SHORT_SESSION, SETTINGS)

    def null_after_first_trade(values):
        values[5] = None

    broken = _with_values(features, "session_vwap", null_after_first_trade)

    # Bars 0-2 have no trade yet: NULL session VWAP there is the registry's quiet market.
    assert features["session_vwap"].to_pylist()[:4] == [None, None, None, 100.25]
    assert disallowed_nulls(features, SETTINGS.bar_seconds) == {}
    assert disallowed_nulls(broken, SETTINGS.bar_seconds) == {"session_vwap": 1}


def test_disallowed_nulls_amihud_null_only_through_a_window_without_trades():
    rows = 130
    features = pa.table(
        {
            "symbol": ["ES"] * rows,
            "bar_index": list(range(rows)),
            "mid": [100.0] * rows,
            # No trade before bar 100; NULL Amihud through bar 104.
            "log_volume": [0.0] * 100 + [1.0] * 30,
            "amihud_60": [None] * 105 + [0.5] * 25,
        }
    )
    amihud = [spec for spec in FEATURES if spec.name == "amihud_60"]

    # Bars 0-60: warm-up; 61-99: 60 bars without a trade; 100-104 traded in their window.
    assert disallowed_nulls(features, 5, amihud) == {"amihud_60": 5}


def test_disallowed_nulls_deeper_level_offset_null_while_level_filled_is_counted(day_tables):
    features, _ = day_tables
    sizes = features["bid_log_size_05"].to_pylist()
    row = next(bar for bar, size in enumerate(sizes) if size is not None)

    def empty_offset(values):
        values[row] = None

    broken = _with_values(features, "bid_offset_ticks_05", empty_offset)

    assert disallowed_nulls(broken, SETTINGS.bar_seconds) == {"bid_offset_ticks_05": 1}


def test_check_day_tables_inf_and_missing_rows_fail(day_tables):
    features, labels = day_tables

    def put_inf(values):
        values[7] = float("inf")

    verdicts = _verdicts(_with_values(features, "obi_1", put_inf).slice(1), labels)

    assert verdicts["no_infinite_values"].metadata["columns_with_inf"] == {"obi_1": 1}
    assert not verdicts["no_infinite_values"].passed
    assert not verdicts["rows_match_session"].passed
    assert verdicts["rows_match_session"].metadata["rows_per_symbol"] == {"ES": 179, "NQ": 180}


def test_class_balance_shares_of_every_horizon_sum_to_one(day_tables):
    _, labels = day_tables

    for horizon in SETTINGS.horizons_bars:
        shares = class_balance(labels, f"direction_h{horizon}")
        assert set(shares) == {"0", "1", "2"}
        assert sum(shares.values()) == pytest.approx(1.0)
