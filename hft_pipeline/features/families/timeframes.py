"""Multi-timeframe features: a core set of price, volatility, book and flow features computed on
1-minute and 5-minute bars and joined to every bar, lagged.

Higher-timeframe bars are whole groups of the day's bars: with bars of ``b`` seconds (``b``
divides 60), the 1-minute bar k holds bars ``i`` with ``floor(i b / 60) = k``, i.e. the bars
closing in ``(open + 60 k, open + 60 (k + 1)]``. A higher-timeframe bar closes with its last
member bar, at that bar's ``ts``; the last one of a session is shorter when the session length
is not a multiple of its length. The previous day's tail (``previous_day`` warm-up) is grouped
back from that day's close.

The core set, on each timeframe (prefix ``tf1m_`` / ``tf5m_``): log returns over 1 and 5 of its
bars, realized volatility over 12 of its bars, the bar's range in ticks, the order-book
imbalance at its close, its aggressor trade imbalance and its log volume.

Point-in-time: bar t reads the latest higher-timeframe bar that has closed, ``tf_close_ts <=
ts[t]`` (a DuckDB ``ASOF`` join), and windows over higher-timeframe bars look back only; no bar
sees a higher-timeframe bar still open.
"""

from __future__ import annotations

from hft_pipeline.features.families.base import (
    NULL_SPARSE,
    NULL_WARMUP,
    FeatureSpec,
    imbalance,
    log_ratio,
)

# (prefix label, seconds); every bar interval must divide each of them.
TIMEFRAMES: tuple[tuple[str, int], ...] = (("1m", 60), ("5m", 300))
TIMEFRAME_TABLE = "bar_timeframes"
REALIZED_VOL_BARS = 12

_TF_WINDOW = "tf_window"
# Over the higher-timeframe bars of one symbol (across the warm-up tail, as BAR_WINDOW).
_TF_WINDOW_SQL = f"{_TF_WINDOW} AS (PARTITION BY symbol ORDER BY tf_close_ts)"


def _tf_rolling(aggregate: str, bars: int) -> str:
    return f"{aggregate} OVER ({_TF_WINDOW} ROWS BETWEEN {bars - 1} PRECEDING AND CURRENT ROW)"


# (core name, formula, look-back in higher-timeframe bars, unit, description, DuckDB expression
# over the higher-timeframe bars, null policy).
_CORE: tuple[tuple[str, str, int, str, str, str, str], ...] = (
    *(
        (
            f"log_ret_{bars}",
            f"ln(close[k] / close[k-{bars}]), close = mid at the bar's close",
            bars,
            "log return",
            f"log return of the mid over the last {bars} closed bar(s)",
            log_ratio("close_mid", f"lag(close_mid, {bars}) OVER {_TF_WINDOW}"),
            NULL_WARMUP,
        )
        for bars in (1, 5)
    ),
    (
        f"realized_vol_{REALIZED_VOL_BARS}",
        f"sqrt(sum_{{i<{REALIZED_VOL_BARS}}} ln(close[k-i] / close[k-i-1])^2)",
        REALIZED_VOL_BARS,
        "log return",
        f"realized volatility of the last {REALIZED_VOL_BARS} closed bars' log returns",
        f"CASE WHEN {_tf_rolling('count(tf_log_return)', REALIZED_VOL_BARS)} = "
        f"{REALIZED_VOL_BARS} THEN sqrt("
        f"{_tf_rolling('sum(tf_log_return * tf_log_return)', REALIZED_VOL_BARS)}) END",
        NULL_WARMUP,
    ),
    (
        "range_ticks",
        "(max mid_high - min mid_low) / tick_size over the bar",
        0,
        "ticks",
        "high-low range of the mid in the last closed bar",
        "(high - low) / tick_size",
        NULL_WARMUP,
    ),
    (
        "obi_1",
        "(bid_sz_00 - ask_sz_00) / (bid_sz_00 + ask_sz_00) at the bar's close",
        0,
        "ratio in [-1, 1]",
        "best-level book imbalance at the last closed bar's close",
        imbalance("close_bid_sz", "close_ask_sz"),
        NULL_WARMUP,
    ),
    (
        "trade_imbalance",
        "(buy_volume - sell_volume) / (buy_volume + sell_volume) over the bar",
        0,
        "ratio in [-1, 1]",
        "aggressor volume imbalance of the last closed bar; NULL without trades",
        imbalance("buy_volume", "sell_volume"),
        NULL_SPARSE,
    ),
    (
        "log_volume",
        "ln(1 + volume of the bar)",
        0,
        "log(1 + contracts)",
        "traded volume of the last closed bar",
        "ln(1 + volume)",
        NULL_WARMUP,
    ),
)


def _column(label: str, core: str) -> str:
    return f"tf{label}_{core}"


TIMEFRAME_FEATURES: tuple[FeatureSpec, ...] = tuple(
    FeatureSpec(
        name=_column(label, name),
        formula=f"{formula}; of the latest {label} bar closed at or before ts",
        lookback_bars=lookback,
        unit=unit,
        description=f"{label} bars: {description}",
        sql=_column(label, name),
        null_policy=null_policy,
        timeframe_seconds=seconds,
    )
    for label, seconds in TIMEFRAMES
    for name, formula, lookback, unit, description, _, null_policy in _CORE
)


def timeframe_bars_sql(label: str, seconds: int, bar_seconds: int) -> str:
    """Creates ``tf_<label>``: one row per higher-timeframe bar of ``bar_inputs`` with its close
    time ``tf_close_ts`` and the core features, columns named ``tf<label>_<core>``."""
    columns = ", ".join(f"({sql})::DOUBLE AS {_column(label, name)}" for name, *_, sql, _ in _CORE)
    return f"""
        CREATE OR REPLACE TABLE tf_{label} AS
        WITH grouped AS (
            SELECT
                symbol,
                max(ts) AS tf_close_ts,
                last(mid ORDER BY bar_index) AS close_mid,
                last(bid_sz_00 ORDER BY bar_index) AS close_bid_sz,
                last(ask_sz_00 ORDER BY bar_index) AS close_ask_sz,
                max(mid_high) AS high,
                min(mid_low) AS low,
                any_value(tick_size) AS tick_size,
                sum(buy_volume) AS buy_volume,
                sum(sell_volume) AS sell_volume,
                sum(volume) AS volume
            FROM bar_inputs
            GROUP BY symbol, session_part, floor(bar_index * {bar_seconds} / {seconds})
        ), returns AS (
            SELECT *, {log_ratio("close_mid", f"lag(close_mid) OVER {_TF_WINDOW}")}
                AS tf_log_return
            FROM grouped
            WINDOW {_TF_WINDOW_SQL}
        )
        SELECT symbol, tf_close_ts, {columns}
        FROM returns
        WINDOW {_TF_WINDOW_SQL}
    """


def timeframe_join_sql() -> str:
    """Creates ``bar_timeframes``: every bar of ``bar_inputs`` with the core features of the
    latest closed bar of each timeframe (NULL before the first closes)."""
    selected = ", ".join(f"tf_{label}.* EXCLUDE (symbol, tf_close_ts)" for label, _ in TIMEFRAMES)
    joins = " ".join(
        f"ASOF LEFT JOIN tf_{label} ON bars.symbol = tf_{label}.symbol "
        f"AND bars.ts >= tf_{label}.tf_close_ts"
        for label, _ in TIMEFRAMES
    )
    return f"""
        CREATE OR REPLACE TABLE {TIMEFRAME_TABLE} AS
        SELECT bars.symbol, bars.bar_index, {selected}
        FROM bar_inputs AS bars {joins}
    """
