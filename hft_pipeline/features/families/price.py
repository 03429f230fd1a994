"""Price features of the mid: returns, momentum, realized volatility, the bar's candle, volume
against its recent mean.

Returns count bars (``log_ret_5``: 5 bars, whatever their length); momentum, realized
volatility and relative volume count clock time (``momentum_5m``: 5 minutes, i.e. 300 bars of
1 s or 60 of 5 s), so they mean the same at every bar interval (``FeatureSpec.window_seconds``).

The candle is the mid's path over the whole interval: it opens at the book state the interval
starts from (the previous bar's closing mid), closes at the bar's closing mid, and its high and
low cover both and the mid after every book event of the bar. A bar whose mid never moves has
range 0: its body and wick ratios are NULL (no shape), its direction 0.
"""

from __future__ import annotations

from hft_pipeline.features.families.base import (
    BAR_WINDOW,
    FEATURE_ROWS_WINDOW,
    NULL_SPARSE,
    PREVIOUS_MID,
    FeatureSpec,
    log_ratio,
    rolling,
)

# The per-bar input (``registry.BAR_INPUTS``) the candle opens at.
CANDLE_OPEN = "candle_open"
CANDLE_OPEN_SQL = PREVIOUS_MID
RETURN_BARS = (1, 5, 10, 30, 60)
MOMENTUM_MINUTES = (1, 5, 15)
REALIZED_VOL_WINDOWS = (("30s", 30), ("1m", 60), ("5m", 300))
RELATIVE_VOLUME_WINDOW = ("5m", 300)

_HIGH = f"greatest(mid_high, {CANDLE_OPEN})"
_LOW = f"least(mid_low, {CANDLE_OPEN})"
_RANGE = f"({_HIGH} - {_LOW})"


def log_return(bars: int) -> FeatureSpec:
    """Spec of the mid's log return over the last ``bars`` bars (``log_ret_<bars>``)."""
    return FeatureSpec(
        name=f"log_ret_{bars}",
        formula=f"ln(mid[t] / mid[t-{bars}])",
        lookback_bars=bars,
        unit="log return",
        description=f"log return of the mid over the last {bars} bar(s)",
        sql=log_ratio("mid", f"lag(mid, {bars}) OVER {BAR_WINDOW}"),
    )


def simple_return(bars: int) -> FeatureSpec:
    """Spec of the mid's simple return over the last ``bars`` bars (``ret_<bars>``)."""
    previous = f"lag(mid, {bars}) OVER {BAR_WINDOW}"
    return FeatureSpec(
        name=f"ret_{bars}",
        formula=f"mid[t] / mid[t-{bars}] - 1",
        lookback_bars=bars,
        unit="return",
        description=f"simple return of the mid over the last {bars} bar(s)",
        sql=f"CASE WHEN mid > 0 AND {previous} > 0 THEN mid / {previous} - 1 END",
    )


def momentum(minutes: int) -> FeatureSpec:
    """Spec of the mid's move in ticks over the last ``minutes`` minutes."""
    return FeatureSpec(
        name=f"momentum_{minutes}m",
        formula="(mid[t] - mid[t-{window_bars}]) / tick_size",
        lookback_bars=0,
        unit="ticks",
        description=f"move of the mid over the last {minutes} minute(s)",
        sql="(mid - lag(mid, {window_bars}) OVER " + BAR_WINDOW + ") / tick_size",
        window_seconds=60 * minutes,
    )


def realized_volatility(label: str, seconds: int) -> FeatureSpec:
    """Spec of the root sum of squared 1-bar mid log returns over the last ``seconds``."""
    squares = "mid_log_return * mid_log_return"
    return FeatureSpec(
        name=f"realized_vol_{label}",
        formula="sqrt(sum_{{i=0..{window_bars}-1}} ln(mid[t-i] / mid[t-i-1])^2)",
        lookback_bars=0,
        unit="log return",
        description=f"realized volatility of 1-bar mid log returns over the last {label}",
        sql=(
            f"CASE WHEN {rolling('count(mid_log_return)', '{window_bars}')} = {{window_bars}} "
            f"THEN sqrt({rolling(f'sum({squares})', '{window_bars}')}) END"
        ),
        window_seconds=seconds,
    )


def relative_volume(label: str, seconds: int) -> FeatureSpec:
    """Spec of the bar's volume over the mean volume of the ``seconds`` before it."""
    before = f"OVER ({BAR_WINDOW} ROWS BETWEEN {{window_bars}} PRECEDING AND 1 PRECEDING)"
    return FeatureSpec(
        name=f"relative_volume_{label}",
        formula="volume[t] / mean(volume[t-{window_bars}..t-1])",
        lookback_bars=0,
        unit="ratio",
        description=f"traded volume of the bar against its mean over the previous {label}; "
        "NULL when nothing traded then",
        sql=(
            f"CASE WHEN count(*) {before} = {{window_bars}} "
            f"THEN volume / nullif(avg(volume) {before}, 0) END"
        ),
        null_policy=NULL_SPARSE,
        null_where=(
            f"sum(log_volume) OVER ({FEATURE_ROWS_WINDOW} ROWS BETWEEN {{window_bars}} "
            "PRECEDING AND 1 PRECEDING) = 0"
        ),
        window_seconds=seconds,
    )


def _candle(name: str, formula: str, unit: str, description: str, sql: str, **kw) -> FeatureSpec:
    return FeatureSpec(
        name=name,
        formula=formula,
        lookback_bars=1,
        unit=unit,
        description=description,
        sql=f"CASE WHEN mid IS NOT NULL AND {CANDLE_OPEN} IS NOT NULL THEN {sql} END",
        **kw,
    )


_FLAT_CANDLE = "range_ticks = 0"

CANDLE_FEATURES: tuple[FeatureSpec, ...] = (
    _candle(
        "range_ticks",
        "(high - low) / tick_size, high/low of the mid over the interval and its open",
        "ticks",
        "high-low range of the mid over the bar's interval",
        f"{_RANGE} / tick_size",
    ),
    _candle(
        "bar_direction",
        "sign(mid[t] - mid[t-1])",
        "-1, 0, 1",
        "whether the candle closed above (1), at (0) or below (-1) its open",
        f"sign(mid - {CANDLE_OPEN})",
    ),
    _candle(
        "body_ratio",
        "|close - open| / (high - low)",
        "ratio in [0, 1]",
        "share of the candle's range that its body spans; NULL when the mid did not move",
        f"abs(mid - {CANDLE_OPEN}) / nullif({_RANGE}, 0)",
        null_policy=NULL_SPARSE,
        null_where=_FLAT_CANDLE,
    ),
    _candle(
        "upper_wick_ratio",
        "(high - max(open, close)) / (high - low)",
        "ratio in [0, 1]",
        "share of the candle's range above its body; NULL when the mid did not move",
        f"({_HIGH} - greatest(mid, {CANDLE_OPEN})) / nullif({_RANGE}, 0)",
        null_policy=NULL_SPARSE,
        null_where=_FLAT_CANDLE,
    ),
    _candle(
        "lower_wick_ratio",
        "(min(open, close) - low) / (high - low)",
        "ratio in [0, 1]",
        "share of the candle's range below its body; NULL when the mid did not move",
        f"(least(mid, {CANDLE_OPEN}) - {_LOW}) / nullif({_RANGE}, 0)",
        null_policy=NULL_SPARSE,
        null_where=_FLAT_CANDLE,
    ),
)

PRICE_FEATURES: tuple[FeatureSpec, ...] = (
    *(log_return(bars) for bars in RETURN_BARS),
    *(simple_return(bars) for bars in RETURN_BARS),
    *(momentum(minutes) for minutes in MOMENTUM_MINUTES),
    *(realized_volatility(label, seconds) for label, seconds in REALIZED_VOL_WINDOWS),
    *CANDLE_FEATURES,
    relative_volume(*RELATIVE_VOLUME_WINDOW),
)
