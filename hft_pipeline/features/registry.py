"""The feature registry: every feature's name, formula, look-back, unit and DuckDB expression.

One source of truth for the feature computation (``compute.py``) and for the training, export
and streaming code, which read ``FEATURES`` and ``MODEL_FEATURES``. The spec type and SQL helpers
live in ``families/base.py``; the book and flow family (depth, order-flow imbalance, trade
intensity, VPIN, Kyle's lambda, Amihud) in ``families/flow.py``; this module assembles them.

Each ``FeatureSpec.sql`` is a DuckDB expression evaluated once per bar over the relation
``bar_inputs``: the bar columns of ``bars.py`` (``mid``, ``bid_px_00``.., ``ask_sz_00``..,
``trade_count``, ``volume``, ``buy_volume``, ``sell_volume``, ``tick_size``,
``session_fraction``) plus the derived ``BAR_INPUTS`` below, and the technical indicators of
``INDICATORS`` (EMA-type filters and Bollinger statistics, computed in numpy by
``indicators.py``). Window expressions use the named window ``BAR_WINDOW`` (one symbol's bars of
one session, in time order) and look back only (``ROWS ... PRECEDING``), so a feature at bar t
uses bars <= t: point-in-time by construction. Indicators are causal filters over bars <= t, so
they are point-in-time too.

Warm-up restarts every session: windows and indicator filters never cross the session open. An
indicator skips a bar whose input (the mid) is NULL: that bar is NULL and the filter carries on
from the last defined bar, as if the NULL bar were absent.

Undefined values are NULL, never 0: warm-up (fewer bars than the look-back), an empty book side
(``bars.py`` turns empty levels into NULL), a window without trades.
"""

from __future__ import annotations

from functools import partial

from hft_pipeline.features import indicators
from hft_pipeline.features.families.base import (
    BAR_WINDOW,
    BAR_WINDOW_SQL,
    BOOK_DEPTH,
    OFI_LEVELS,
    FeatureSpec,
    IndicatorSpec,
)
from hft_pipeline.features.families.base import imbalance as _imbalance
from hft_pipeline.features.families.base import log_ratio as _log_ratio
from hft_pipeline.features.families.base import rolling as _rolling
from hft_pipeline.features.families.flow import (
    FLOW_BAR_INPUTS,
    FLOW_FEATURES,
    FLOW_INDICATORS,
)

__all__ = [
    "BAR_INPUTS",
    "BAR_WINDOW",
    "BAR_WINDOW_SQL",
    "BOOK_DEPTH",
    "FEATURES",
    "FEATURE_NAMES",
    "INDICATORS",
    "MAX_LOOKBACK_BARS",
    "MODEL_FEATURES",
    "OFI_LEVELS",
    "FeatureSpec",
    "IndicatorSpec",
]

# Per-bar inputs derived from the bars (name, DuckDB expression), computed before FEATURES so
# that window aggregates can read them (window functions do not nest).
BAR_INPUTS: tuple[tuple[str, str], ...] = (
    ("mid_log_return", _log_ratio("mid", f"lag(mid) OVER {BAR_WINDOW}")),
    *FLOW_BAR_INPUTS,
)


EMA_SPANS = (9, 21, 50, 200)
RSI_WINDOW = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BOLLINGER_WINDOW, BOLLINGER_WIDTH = 20, 2
ATR_WINDOW = 14

# Indicators of the bar close's mid (and of its high / low for the ATR), in price units.
INDICATORS: tuple[IndicatorSpec, ...] = (
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
    *FLOW_INDICATORS,
)


def log_return(bars: int) -> FeatureSpec:
    """Spec of the mid's log return over the last ``bars`` bars (``log_ret_<bars>``)."""
    return FeatureSpec(
        name=f"log_ret_{bars}",
        formula=f"ln(mid[t] / mid[t-{bars}])",
        lookback_bars=bars,
        unit="log return",
        description=f"log return of the mid over the last {bars} bar(s)",
        sql=_log_ratio("mid", f"lag(mid, {bars}) OVER {BAR_WINDOW}"),
    )


def realized_volatility(bars: int) -> FeatureSpec:
    """Spec of the root sum of squared 1-bar mid log returns over the last ``bars`` bars."""
    squares = "mid_log_return * mid_log_return"
    return FeatureSpec(
        name=f"realized_vol_{bars}",
        formula=f"sqrt(sum_{{i=0..{bars - 1}}} ln(mid[t-i] / mid[t-i-1])^2)",
        lookback_bars=bars,
        unit="log return",
        description=f"realized volatility of 1-bar mid log returns over the last {bars} bars",
        sql=(
            f"CASE WHEN {_rolling('count(mid_log_return)', bars)} = {bars} "
            f"THEN sqrt({_rolling(f'sum({squares})', bars)}) END"
        ),
    )


def trade_imbalance(bars: int) -> FeatureSpec:
    """Spec of the aggressor volume imbalance over the last ``bars`` bars (1 = this bar)."""
    buys = _rolling("sum(buy_volume)", bars)
    sells = _rolling("sum(sell_volume)", bars)
    return FeatureSpec(
        name=f"trade_imbalance_{bars}",
        formula=f"(sum buy_volume - sum sell_volume) / (sum buy_volume + sum sell_volume), "
        f"sums over bars t-{bars - 1}..t",
        lookback_bars=bars - 1,
        unit="ratio in [-1, 1]",
        description=f"aggressor volume imbalance over the last {bars} bar(s); NULL without trades",
        sql=f"CASE WHEN {_rolling('count(*)', bars)} = {bars} THEN {_imbalance(buys, sells)} END",
    )


def _level_sizes(side: str, levels: int) -> str:
    # Empty deeper levels hold no size; a side whose best level is empty makes the whole NULL.
    return " + ".join(f"coalesce({side}_sz_{level:02d}, 0)" for level in range(levels))


def _book_imbalance(levels: int) -> FeatureSpec:
    return FeatureSpec(
        name=f"obi_{levels}",
        formula=f"(sum bid_sz - sum ask_sz) / (sum bid_sz + sum ask_sz), levels 1..{levels}",
        lookback_bars=0,
        unit="ratio in [-1, 1]",
        description=f"order-book size imbalance over the best {levels} level(s) at the bar close",
        sql=(
            "CASE WHEN bid_sz_00 IS NOT NULL AND ask_sz_00 IS NOT NULL THEN "
            f"{_imbalance(_level_sizes('bid', levels), _level_sizes('ask', levels))} END"
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
        )
        for name, formula, unit, description, sql in (
            (
                "bb_upper_dist_ticks",
                "(upper - mid) / tick_size",
                "ticks",
                "mid below the upper band",
                f"({upper} - mid) / tick_size",
            ),
            (
                "bb_lower_dist_ticks",
                "(mid - lower) / tick_size",
                "ticks",
                "mid above the lower band",
                f"(mid - {lower}) / tick_size",
            ),
            (
                "bb_pct_b",
                "(mid - lower) / (upper - lower), NULL when upper = lower",
                "ratio (0 at lower, 1 at upper)",
                "position of the mid within",
                f"(mid - {lower}) / nullif({upper} - {lower}, 0)",
            ),
            (
                "bb_width",
                "(upper - lower) / mean",
                "ratio",
                "relative width",
                f"({upper} - {lower}) / bollinger_mean",
            ),
        )
    )


# Traded value and volume of bars 0..t of the session (bars.py: vwap is NULL without trades).
_SESSION_VALUE = f"sum(vwap * volume) OVER ({BAR_WINDOW} ROWS UNBOUNDED PRECEDING)"
_SESSION_VOLUME = f"sum(volume) OVER ({BAR_WINDOW} ROWS UNBOUNDED PRECEDING)"
_SESSION_VWAP = f"{_SESSION_VALUE} / nullif({_SESSION_VOLUME}, 0)"

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
    ),
    FeatureSpec(
        name="vwap_dist_ticks",
        formula="(mid - session_vwap) / tick_size",
        lookback_bars=0,
        unit="ticks",
        description="mid above the session VWAP",
        sql=f"(mid - {_SESSION_VWAP}) / tick_size",
    ),
)

_MICROPRICE = "(bid_px_00 * ask_sz_00 + ask_px_00 * bid_sz_00) / nullif(bid_sz_00 + ask_sz_00, 0)"

FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec(
        name="mid",
        formula="(bid_px_00 + ask_px_00) / 2 at the bar close",
        lookback_bars=0,
        unit="price",
        description="mid price of the last book state; a raw level, not a model input",
        sql="mid",
        model_input=False,
    ),
    *(log_return(bars) for bars in (1, 5, 10, 30, 60)),
    *(realized_volatility(bars) for bars in (12, 60)),
    FeatureSpec(
        name="spread_ticks",
        formula="(ask_px_00 - bid_px_00) / tick_size",
        lookback_bars=0,
        unit="ticks",
        description="best bid-ask spread at the bar close",
        sql="(ask_px_00 - bid_px_00) / tick_size",
    ),
    FeatureSpec(
        name="microprice_offset_ticks",
        formula="((bid_px_00 * ask_sz_00 + ask_px_00 * bid_sz_00) / (bid_sz_00 + ask_sz_00) "
        "- mid) / tick_size",
        lookback_bars=0,
        unit="ticks",
        description="size-weighted microprice minus mid at the bar close",
        sql=f"({_MICROPRICE} - mid) / tick_size",
    ),
    *(_book_imbalance(levels) for levels in sorted({1, 3, 5, BOOK_DEPTH})),
    *(trade_imbalance(bars) for bars in (1, 6)),
    FeatureSpec(
        name="log_trade_count",
        formula="ln(1 + trade_count)",
        lookback_bars=0,
        unit="log(1 + trades)",
        description="number of trades in the bar",
        sql="ln(1 + trade_count)",
    ),
    FeatureSpec(
        name="log_volume",
        formula="ln(1 + volume)",
        lookback_bars=0,
        unit="log(1 + contracts)",
        description="traded volume in the bar",
        sql="ln(1 + volume)",
    ),
    FeatureSpec(
        name="time_of_day_sin",
        formula="sin(2 pi (ts - session_open) / (session_close - session_open))",
        lookback_bars=0,
        unit="[-1, 1]",
        description="cyclical position of the bar close within the session",
        sql="sin(2 * pi() * session_fraction)",
    ),
    FeatureSpec(
        name="time_of_day_cos",
        formula="cos(2 pi (ts - session_open) / (session_close - session_open))",
        lookback_bars=0,
        unit="[-1, 1]",
        description="cyclical position of the bar close within the session",
        sql="cos(2 * pi() * session_fraction)",
    ),
    *TECHNICAL_FEATURES,
    *FLOW_FEATURES,
)

FEATURE_NAMES: tuple[str, ...] = tuple(spec.name for spec in FEATURES)
MODEL_FEATURES: tuple[str, ...] = tuple(spec.name for spec in FEATURES if spec.model_input)
# Bars of history a feature row needs before every model feature is defined.
MAX_LOOKBACK_BARS = max(spec.lookback_bars for spec in FEATURES)
