"""Technical indicators of the mid: EMA 9/21/50/200, RSI 14, MACD 12/26/9, Bollinger 20/2,
ATR 14 and the session VWAP.

Same conventions as ``registry.py``. The recursive filters run in numpy (``indicators.py``) as
``TECHNICAL_INDICATORS``; the features expose their scale-free forms (distances in ticks, %b,
width) as model inputs and keep the raw EMA levels and session VWAP as documentation columns.
"""

from __future__ import annotations

from functools import partial

from hft_pipeline.features import indicators
from hft_pipeline.features.families.base import (
    FEATURE_ROWS_WINDOW,
    NULL_SPARSE,
    NULL_WARMUP,
    FeatureSpec,
    IndicatorSpec,
)

EMA_SPANS = (9, 21, 50, 200)
RSI_WINDOW = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BOLLINGER_WINDOW, BOLLINGER_WIDTH = 20, 2
ATR_WINDOW = 14

# Indicators of the bar close's mid (and of its high / low for the ATR), in price units.
TECHNICAL_INDICATORS: tuple[IndicatorSpec, ...] = (
    *(
        IndicatorSpec(f"ema_{span}", ("mid",), partial(indicators.ema, span=span))
        for span in EMA_SPANS
    ),
    IndicatorSpec(f"rsi_{RSI_WINDOW}", ("mid",), partial(indicators.rsi, window=RSI_WINDOW)),
    IndicatorSpec(
        "macd_line", ("mid",), partial(indicators.macd_line, fast=MACD_FAST, slow=MACD_SLOW)
    ),
    IndicatorSpec(
        "macd_signal",
        ("mid",),
        partial(indicators.macd_signal, fast=MACD_FAST, slow=MACD_SLOW, signal=MACD_SIGNAL),
    ),
    IndicatorSpec(
        "bollinger_mean", ("mid",), partial(indicators.rolling_mean, window=BOLLINGER_WINDOW)
    ),
    IndicatorSpec(
        "bollinger_std", ("mid",), partial(indicators.rolling_std, window=BOLLINGER_WINDOW)
    ),
    IndicatorSpec(
        f"atr_{ATR_WINDOW}",
        ("mid_high", "mid_low", "mid"),
        partial(indicators.average_true_range, window=ATR_WINDOW),
    ),
)


def ema_features(span: int) -> tuple[FeatureSpec, FeatureSpec]:
    """The mid's EMA over ``span`` bars (a raw level) and the mid's distance to it in ticks."""
    formula = (
        f"ema[t] = a mid[t] + (1 - a) ema[t-1], a = 2 / ({span} + 1), ema[0] = mid[0] "
        "(the session's first defined mid)"
    )
    return (
        FeatureSpec(
            name=f"ema_{span}",
            formula=formula,
            lookback_bars=span - 1,
            unit="price",
            description=f"{span}-bar exponential moving average of the mid; not a model input",
            sql=f"ema_{span}",
            model_input=False,
        ),
        FeatureSpec(
            name=f"ema_{span}_dist_ticks",
            formula=f"(mid - ema_{span}) / tick_size",
            lookback_bars=span - 1,
            unit="ticks",
            description=f"mid above its {span}-bar exponential moving average",
            sql=f"(mid - ema_{span}) / tick_size",
        ),
    )


def _macd_features() -> tuple[FeatureSpec, ...]:
    fast, slow, signal = MACD_FAST, MACD_SLOW, MACD_SIGNAL
    line = f"ema_{fast}(mid) - ema_{slow}(mid)"
    return (
        FeatureSpec(
            name="macd_ticks",
            formula=f"({line}) / tick_size, EMAs seeded as ema_<span>",
            lookback_bars=slow - 1,
            unit="ticks",
            description=f"MACD line {fast}/{slow} of the mid",
            sql="macd_line / tick_size",
        ),
        FeatureSpec(
            name="macd_signal_ticks",
            formula=f"ema_{signal}(macd line) / tick_size, started at the line's first value",
            lookback_bars=slow + signal - 2,
            unit="ticks",
            description=f"MACD signal line: {signal}-bar EMA of the MACD line",
            sql="macd_signal / tick_size",
        ),
        FeatureSpec(
            name="macd_hist_ticks",
            formula="(macd line - macd signal) / tick_size",
            lookback_bars=slow + signal - 2,
            unit="ticks",
            description="MACD histogram: MACD line minus its signal line",
            sql="(macd_line - macd_signal) / tick_size",
        ),
    )


def _bollinger_features() -> tuple[FeatureSpec, ...]:
    window, width = BOLLINGER_WINDOW, BOLLINGER_WIDTH
    upper = f"(bollinger_mean + {width} * bollinger_std)"
    lower = f"(bollinger_mean - {width} * bollinger_std)"
    bands = f"upper, lower = mean +- {width} std of mid[t-{window - 1}..t] (population std)"
    return tuple(
        FeatureSpec(
            name=name,
            formula=f"{formula}; {bands}",
            lookback_bars=window - 1,
            unit=unit,
            description=f"{description} of the {window}-bar, {width}-std Bollinger bands",
            sql=sql,
            null_policy=null_policy,
        )
        for name, formula, unit, description, sql, null_policy in (
            (
                "bb_upper_dist_ticks",
                "(upper - mid) / tick_size",
                "ticks",
                "mid below the upper band",
                f"({upper} - mid) / tick_size",
                NULL_WARMUP,
            ),
            (
                "bb_lower_dist_ticks",
                "(mid - lower) / tick_size",
                "ticks",
                "mid above the lower band",
                f"(mid - {lower}) / tick_size",
                NULL_WARMUP,
            ),
            (
                "bb_pct_b",
                "(mid - lower) / (upper - lower), NULL when upper = lower",
                "ratio (0 at lower, 1 at upper)",
                "position of the mid within",
                f"(mid - {lower}) / nullif({upper} - {lower}, 0)",
                NULL_SPARSE,  # bands of zero width: no move over the window
            ),
            (
                "bb_width",
                "(upper - lower) / mean",
                "ratio",
                "relative width",
                f"({upper} - {lower}) / bollinger_mean",
                NULL_WARMUP,
            ),
        )
    )


# Traded value and volume of bars 0..t of the session, summed by bars.py (a running sum in
# SQL is a window over the wide bar rows: a quarter of the feature query); they restart at the
# open even when the previous day's tail warms the other features.
_SESSION_VWAP = "session_traded_value / nullif(session_volume, 0)"
# In the features file: no trade since the session open (log_volume is 0 exactly without one).
_NO_TRADE_YET = f"sum(log_volume) OVER ({FEATURE_ROWS_WINDOW} ROWS UNBOUNDED PRECEDING) = 0"

TECHNICAL_FEATURES: tuple[FeatureSpec, ...] = (
    *(spec for span in EMA_SPANS for spec in ema_features(span)),
    FeatureSpec(
        name=f"rsi_{RSI_WINDOW}",
        formula=(
            "100 - 100 / (1 + up / down); up, down = Wilder averages (alpha 1/14, seeded with "
            "the first bar's change, 0) of max(+-(mid[t] - mid[t-1]), 0); 100 when down = 0, "
            "NULL when up = down = 0"
        ),
        lookback_bars=RSI_WINDOW - 1,
        unit="[0, 100]",
        description=f"{RSI_WINDOW}-bar relative strength index of the mid",
        sql=f"rsi_{RSI_WINDOW}",
        null_policy=NULL_SPARSE,
    ),
    *_macd_features(),
    *_bollinger_features(),
    FeatureSpec(
        name=f"atr_{ATR_WINDOW}_ticks",
        formula=(
            "ATR / tick_size; TR[t] = max(high - low, |high - mid[t-1]|, |low - mid[t-1]|) of "
            f"the bar's mids; ATR[{ATR_WINDOW - 1}] = mean TR[0..{ATR_WINDOW - 1}], "
            f"ATR[t] = ({ATR_WINDOW - 1} ATR[t-1] + TR[t]) / {ATR_WINDOW}"
        ),
        lookback_bars=ATR_WINDOW - 1,
        unit="ticks",
        description=f"{ATR_WINDOW}-bar Wilder average true range of the mid",
        sql=f"atr_{ATR_WINDOW} / tick_size",
    ),
    FeatureSpec(
        name="session_vwap",
        formula="sum trade_px * trade_sz / sum trade_sz, trades from the session open to t",
        lookback_bars=0,
        unit="price",
        description="volume-weighted average trade price of the session so far; not a model "
        "input; NULL before the first trade",
        sql=_SESSION_VWAP,
        model_input=False,
        null_policy=NULL_SPARSE,
        null_where=_NO_TRADE_YET,
    ),
    FeatureSpec(
        name="vwap_dist_ticks",
        formula="(mid - session_vwap) / tick_size",
        lookback_bars=0,
        unit="ticks",
        description="mid above the session VWAP; NULL before the session's first trade",
        sql=f"(mid - {_SESSION_VWAP}) / tick_size",
        null_policy=NULL_SPARSE,
        null_where=f"mid IS NULL OR {_NO_TRADE_YET}",
    ),
)
