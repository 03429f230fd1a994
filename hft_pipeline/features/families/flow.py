"""Book and flow features: book depth, order-flow imbalance, trade intensity, VPIN, Kyle's lambda
and Amihud illiquidity.

Same conventions as ``registry.py``: DuckDB expressions over ``bar_inputs`` with look-back
windows only, NULL where undefined. The order-flow imbalance sums come from ``bars.py``
(``ofi_flow_1``, ``ofi_flow_multi``, ``ofi_depth_1``, ``ofi_depth_multi``), the VPIN from the
``vpin_50`` indicator (``indicators.vpin``).
"""

from __future__ import annotations

from functools import partial

from hft_pipeline.features import indicators
from hft_pipeline.features.families.base import (
    BAR_WINDOW,
    BOOK_DEPTH,
    FEATURE_ROWS_WINDOW,
    NULL_SPARSE,
    OFI_LEVELS,
    PREVIOUS_MID,
    FeatureSpec,
    IndicatorSpec,
    rolling,
)

INTENSITY_BARS = 6
VPIN_BUCKETS = 50
# Bucket size: this share of the classified volume of the previous VPIN_SIZE_BARS bars. With
# 50 buckets of 1/100 each, the buckets cover half of that volume, so they always fit in the
# look-back and the warm-up is exactly VPIN_SIZE_BARS bars.
VPIN_SIZE_BARS = 60
VPIN_BUCKET_SHARE = 0.01
KYLE_BARS = 60
AMIHUD_BARS = 60

_SIGNED_VOLUME = "(buy_volume - sell_volume)"

# (name, DuckDB expression) computed with the registry's BAR_INPUTS (window functions do not nest).
FLOW_BAR_INPUTS: tuple[tuple[str, str], ...] = (
    ("mid_change_ticks", f"(mid - {PREVIOUS_MID}) / tick_size"),
)

# Indicators of the traded volume, appended to the registry's INDICATORS.
FLOW_INDICATORS: tuple[IndicatorSpec, ...] = (
    IndicatorSpec(
        f"vpin_{VPIN_BUCKETS}",
        ("buy_volume", "sell_volume"),
        partial(
            indicators.vpin,
            buckets=VPIN_BUCKETS,
            size_bars=VPIN_SIZE_BARS,
            bucket_share=VPIN_BUCKET_SHARE,
        ),
    ),
)


def _side_depth(side: str) -> FeatureSpec:
    sizes = " + ".join(f"coalesce({side}_sz_{level:02d}, 0)" for level in range(BOOK_DEPTH))
    return FeatureSpec(
        name=f"log_depth_{side}_{BOOK_DEPTH}",
        formula=f"ln(1 + sum {side}_sz, levels 1..{BOOK_DEPTH}); empty levels count 0",
        lookback_bars=0,
        unit="log(1 + lots)",
        description=f"{side} size resting on the best {BOOK_DEPTH} levels at the bar close; "
        "NULL when the best level of the side is empty",
        sql=f"CASE WHEN {side}_sz_00 IS NOT NULL THEN ln(1 + {sizes}) END",
    )


def _order_flow_imbalance(name: str, levels: int, flow: str, depth: str) -> FeatureSpec:
    # A bar without book events has no flow and no event depth: its depth is the carried book's.
    close_depth = " + ".join(
        f"coalesce(bid_sz_{level:02d}, 0) + coalesce(ask_sz_{level:02d}, 0)"
        for level in range(levels)
    )
    opening_book = " AND ".join(
        f"lag({column}) OVER {BAR_WINDOW} IS NOT NULL" for column in ("bid_sz_00", "ask_sz_00")
    )
    return FeatureSpec(
        name=name,
        formula=(
            f"sum over the bar's book events e and levels m=1..{levels} of e_m / D; e_m = "
            "1{Pb>=Pb'} qb - 1{Pb<=Pb'} qb' - 1{Pa<=Pa'} qa + 1{Pa>=Pa'} qa' against the "
            "previous book event (primes), NULL terms skipped; D = mean over the bar's book "
            f"events of sum_{{m<={levels}}} (qb_m + qa_m) / {2 * levels} (the close book "
            "without events)"
        ),
        lookback_bars=1,
        unit="ratio (lots of flow per lot of average level depth)",
        description=f"order-flow imbalance over {levels} level(s) (Cont, Kukanov & Stoikov; "
        "Xu, Cont et al.); NULL when the book at the previous bar close has an empty best side",
        sql=(
            f"CASE WHEN {opening_book} THEN {flow} / "
            f"nullif(coalesce({depth}, ({close_depth}) / {2 * levels}), 0) END"
        ),
    )


def _kyle_lambda() -> FeatureSpec:
    pairs = f"mid_change_ticks, {_SIGNED_VOLUME}"
    return FeatureSpec(
        name=f"kyle_lambda_{KYLE_BARS}",
        formula=(
            f"100 * OLS slope of (mid[t] - mid[t-1]) / tick_size on (buy_volume - sell_volume), "
            f"bars t-{KYLE_BARS - 1}..t; NULL when signed volume is constant"
        ),
        lookback_bars=KYLE_BARS,
        unit="ticks per 100 lots",
        description=f"Kyle's lambda: price impact of signed volume over the last {KYLE_BARS} bars",
        sql=(
            f"CASE WHEN {rolling(f'regr_count({pairs})', KYLE_BARS)} = {KYLE_BARS} "
            f"AND {rolling(f'regr_sxx({pairs})', KYLE_BARS)} > 0 "
            f"THEN 100 * {rolling(f'regr_slope({pairs})', KYLE_BARS)} END"
        ),
        null_policy=NULL_SPARSE,
    )


def _amihud() -> FeatureSpec:
    ratio = "abs(mid_log_return) / nullif(volume, 0)"
    return FeatureSpec(
        name=f"amihud_{AMIHUD_BARS}",
        formula=(
            f"1e4 * mean of |ln(mid[t-i] / mid[t-i-1])| / volume[t-i] over the bars "
            f"i=0..{AMIHUD_BARS - 1} with volume > 0; NULL without traded bar"
        ),
        lookback_bars=AMIHUD_BARS,
        unit="basis points of log return per lot",
        description=f"Amihud illiquidity over the last {AMIHUD_BARS} bars",
        sql=(
            f"CASE WHEN {rolling('count(mid_log_return)', AMIHUD_BARS)} = {AMIHUD_BARS} "
            f"THEN 1e4 * {rolling(f'avg({ratio})', AMIHUD_BARS)} END"
        ),
        null_policy=NULL_SPARSE,
        # No trade in the window (log_volume is 0 exactly without one).
        null_where=(
            f"max(log_volume) OVER ({FEATURE_ROWS_WINDOW} ROWS BETWEEN {AMIHUD_BARS - 1} "
            "PRECEDING AND CURRENT ROW) = 0"
        ),
    )


FLOW_FEATURES: tuple[FeatureSpec, ...] = (
    _side_depth("bid"),
    _side_depth("ask"),
    _order_flow_imbalance("ofi_1", 1, "ofi_flow_1", "ofi_depth_1"),
    _order_flow_imbalance(
        f"ofi_multi_{OFI_LEVELS}", OFI_LEVELS, "ofi_flow_multi", "ofi_depth_multi"
    ),
    FeatureSpec(
        name=f"trade_intensity_{INTENSITY_BARS}",
        formula=(
            f"sum trade_count over bars t-{INTENSITY_BARS - 1}..t / "
            f"((ts[t] - ts[t-{INTENSITY_BARS}]) / 1e9)"
        ),
        lookback_bars=INTENSITY_BARS,
        unit="trades per second",
        description=f"trade arrival rate over the last {INTENSITY_BARS} bars",
        sql=(
            f"{rolling('sum(trade_count)', INTENSITY_BARS)} / "
            f"((ts - lag(ts, {INTENSITY_BARS}) OVER {BAR_WINDOW}) / 1e9)"
        ),
    ),
    FeatureSpec(
        name=f"vpin_{VPIN_BUCKETS}",
        formula=(
            f"mean over the last {VPIN_BUCKETS} buckets of |B_k - S_k| / V; V = "
            f"{VPIN_BUCKET_SHARE} * (buy + sell volume of bars t-{VPIN_SIZE_BARS}..t-1); "
            "buckets laid back from the bar close, bars split pro rata (indicators.vpin)"
        ),
        lookback_bars=VPIN_SIZE_BARS,
        unit="ratio in [0, 1]",
        description="volume-synchronized probability of informed trading; NULL when the "
        "previous bars hold no classified volume",
        sql=f"vpin_{VPIN_BUCKETS}",
        null_policy=NULL_SPARSE,
    ),
    _kyle_lambda(),
    _amihud(),
)
