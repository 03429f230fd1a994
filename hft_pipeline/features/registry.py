"""The feature registry: every feature's name, formula, look-back, unit and DuckDB expression.

One source of truth for the feature computation (``compute.py``) and for the training, export
and streaming code, which read ``FEATURES`` and ``MODEL_FEATURES``. The spec type and SQL helpers
live in ``families/base.py``; the technical indicators in ``families/technical.py``; the book
and flow family (depth, order-flow imbalance, trade intensity, VPIN, Kyle's lambda, Amihud) in
``families/flow.py``; the book level by level in ``families/book.py``; the 1-min and 5-min
features in ``families/timeframes.py``; returns, momentum, realized volatility, the candle and
relative volume in ``families/price.py``; this module holds the book-summary, trade and time
features and assembles them all. A spec whose look-back is clock time (``window_seconds``) is
made concrete for a bar interval by ``FeatureSpec.at``; ``features_at`` does it for all.

Each ``FeatureSpec.sql`` is a DuckDB expression evaluated once per bar over the relation
``bar_inputs``: the bar columns of ``bars.py`` (``mid``, ``bid_px_00``.., ``ask_sz_00``..,
``trade_count``, ``volume``, ``buy_volume``, ``sell_volume``, ``session_traded_value``,
``session_volume``, ``tick_size``, ``session_fraction``, ``minutes_since_open``,
``minutes_to_close``, ``day_of_week``) plus the derived ``BAR_INPUTS`` below, and the technical
indicators of ``INDICATORS`` (EMA-type filters and Bollinger statistics, computed in numpy by
``indicators.py``) and the multi-timeframe columns (``families/timeframes.py``). Window
expressions use the named window ``BAR_WINDOW`` (one symbol's bars in time order) and look back
only (``ROWS ... PRECEDING``), so a feature at bar t uses bars <= t: point-in-time by
construction. Indicators are causal filters over bars <= t, and a higher-timeframe bar is read
once closed, so they are point-in-time too. The time features read the session's bounds, which
the trading calendar fixes before the open.

Warm-up (``FeatureSettings.warmup``): with "session" the bars start at the open, so windows and
filters restart every session and are NULL until ``FeatureSpec.warmup_bars``; with
"previous_day" the bars start in the previous trading day's tail (``compute.py``), so they are
defined from the open. An indicator skips a bar whose input (the mid) is NULL: that bar is NULL
and the filter carries on from the last defined bar, as if the NULL bar were absent.

Undefined values are NULL, never 0: warm-up (fewer bars than the look-back), an empty book side
(``bars.py`` turns empty levels into NULL), a window without trades. Each spec's
``null_policy`` says which of these may apply; ``quality.py`` checks it.
"""

from __future__ import annotations

from hft_pipeline.features.families.base import (
    BAR_WINDOW,
    BAR_WINDOW_SQL,
    BOOK_DEPTH,
    NULL_NEVER,
    NULL_SPARSE,
    OFI_LEVELS,
    PREVIOUS_MID,
    FeatureSpec,
    IndicatorSpec,
)
from hft_pipeline.features.families.base import imbalance as _imbalance
from hft_pipeline.features.families.base import log_ratio as _log_ratio
from hft_pipeline.features.families.base import rolling as _rolling
from hft_pipeline.features.families.book import BOOK_LEVEL_FEATURES
from hft_pipeline.features.families.flow import (
    FLOW_BAR_INPUTS,
    FLOW_FEATURES,
    FLOW_INDICATORS,
)
from hft_pipeline.features.families.price import CANDLE_OPEN, CANDLE_OPEN_SQL, PRICE_FEATURES
from hft_pipeline.features.families.technical import (
    ATR_WINDOW,
    BOLLINGER_WIDTH,
    BOLLINGER_WINDOW,
    EMA_SPANS,
    MACD_FAST,
    MACD_SIGNAL,
    MACD_SLOW,
    RSI_WINDOW,
    TECHNICAL_FEATURES,
    TECHNICAL_INDICATORS,
)
from hft_pipeline.features.families.timeframes import TIMEFRAME_FEATURES, TIMEFRAMES

__all__ = [
    "ATR_WINDOW",
    "BAR_INPUTS",
    "BAR_WINDOW",
    "BAR_WINDOW_SQL",
    "BOLLINGER_WIDTH",
    "BOLLINGER_WINDOW",
    "BOOK_DEPTH",
    "EMA_SPANS",
    "FEATURES",
    "FEATURE_NAMES",
    "INDICATORS",
    "MACD_FAST",
    "MACD_SIGNAL",
    "MACD_SLOW",
    "MODEL_FEATURES",
    "OFI_LEVELS",
    "RSI_WINDOW",
    "TIMEFRAMES",
    "TIME_FEATURES",
    "FeatureSpec",
    "features_at",
    "IndicatorSpec",
    "max_warmup_bars",
]

# Per-bar inputs derived from the bars and their PREVIOUS_MID (name, DuckDB expression without
# a window function), computed before FEATURES so that window aggregates can read them
# (window functions do not nest).
BAR_INPUTS: tuple[tuple[str, str], ...] = (
    ("mid_log_return", _log_ratio("mid", PREVIOUS_MID)),
    (CANDLE_OPEN, CANDLE_OPEN_SQL),
    *FLOW_BAR_INPUTS,
)

# Per-bar filters run in numpy before FEATURES (see indicators.py).
INDICATORS: tuple[IndicatorSpec, ...] = (*TECHNICAL_INDICATORS, *FLOW_INDICATORS)


def trade_imbalance(bars: int) -> FeatureSpec:
    """Spec of the aggressor volume imbalance over the last ``bars`` bars (1 = this bar)."""
    # One bar needs no window (DuckDB would still run one per aggregate).
    imbalance = _imbalance("buy_volume", "sell_volume")
    if bars > 1:
        buys, sells = (_rolling(f"sum({side}_volume)", bars) for side in ("buy", "sell"))
        complete = f"{_rolling('count(*)', bars)} = {bars}"
        imbalance = f"CASE WHEN {complete} THEN {_imbalance(buys, sells)} END"
    return FeatureSpec(
        name=f"trade_imbalance_{bars}",
        formula=f"(sum buy_volume - sum sell_volume) / (sum buy_volume + sum sell_volume), "
        f"sums over bars t-{bars - 1}..t",
        lookback_bars=bars - 1,
        unit="ratio in [-1, 1]",
        description=f"aggressor volume imbalance over the last {bars} bar(s); NULL without trades",
        sql=imbalance,
        null_policy=NULL_SPARSE,
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


def _cyclical(name: str, phase: str, formula_phase: str, description: str) -> list[FeatureSpec]:
    """sin and cos of 2 pi ``phase`` (a DuckDB expression in [0, 1))."""
    return [
        FeatureSpec(
            name=f"{name}_{function}",
            formula=f"{function}(2 pi {formula_phase})",
            lookback_bars=0,
            unit="[-1, 1]",
            description=description,
            sql=f"{function}(2 * pi() * {phase})",
            null_policy=NULL_NEVER,
        )
        for function in ("sin", "cos")
    ]


# The clock and the calendar. The session's bounds come from the trading calendar before the
# session opens, so the time to the close is known at every bar: not a look-ahead.
TIME_FEATURES: tuple[FeatureSpec, ...] = (
    *_cyclical(
        "time_of_day",
        "session_fraction",
        "(ts - session_open) / (session_close - session_open)",
        "cyclical position of the bar close within the session",
    ),
    *_cyclical(
        "day_of_week",
        "day_of_week / 7",
        "d / 7), d = weekday of the trading day (0 Monday .. 6 Sunday",
        "cyclical day of the week of the session's trading day",
    ),
    FeatureSpec(
        name="minutes_since_open",
        formula="(ts - session_open) / 60e9",
        lookback_bars=0,
        unit="minutes",
        description="time from the session open to the bar close",
        sql="minutes_since_open",
        null_policy=NULL_NEVER,
    ),
    FeatureSpec(
        name="minutes_to_close",
        formula="(session_close - ts) / 60e9, session_close from the trading calendar",
        lookback_bars=0,
        unit="minutes",
        description="time from the bar close to the session close (early closes included)",
        sql="minutes_to_close",
        null_policy=NULL_NEVER,
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
    *PRICE_FEATURES,
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
        null_policy=NULL_NEVER,
    ),
    FeatureSpec(
        name="log_volume",
        formula="ln(1 + volume)",
        lookback_bars=0,
        unit="log(1 + contracts)",
        description="traded volume in the bar",
        sql="ln(1 + volume)",
        null_policy=NULL_NEVER,
    ),
    *TIME_FEATURES,
    *TECHNICAL_FEATURES,
    *FLOW_FEATURES,
    *BOOK_LEVEL_FEATURES,
    *TIMEFRAME_FEATURES,
)

FEATURE_NAMES: tuple[str, ...] = tuple(spec.name for spec in FEATURES)
MODEL_FEATURES: tuple[str, ...] = tuple(spec.name for spec in FEATURES if spec.model_input)


def features_at(bar_seconds: int) -> tuple[FeatureSpec, ...]:
    """``FEATURES`` on bars of ``bar_seconds``: clock-time windows counted in bars."""
    return tuple(spec.at(bar_seconds) for spec in FEATURES)


def max_warmup_bars(bar_seconds: int) -> int:
    """Bars of ``bar_seconds`` a session needs before every feature can be defined."""
    return max(spec.warmup_bars(bar_seconds) for spec in FEATURES)
