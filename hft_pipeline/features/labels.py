"""Forward labels of every bar, one set per horizon: the only place that looks ahead.

For each horizon H (bars): the log return of the mid from bar t's close to bar t+H's close, the
realized volatility of the 1-bar mid log returns over bars t+1..t+H, and a 3-class direction
(0 down, 1 flat, 2 up) of the mid's move over H bars against a threshold in ticks:

- "ticks" mode: the fixed ``direction_threshold_ticks``;
- "spread" mode: the median spread (ticks) of the ``SPREAD_MEDIAN_BARS`` bars up to t, plus
  ``cost_ticks``, so that "up" is a move that would have paid for crossing the spread and the
  costs. Only spreads known at bar t enter the threshold; it is NULL, and so is the direction,
  while the window holds no spread (empty book).

LEAD and FOLLOWING frames stop at the partition end, which is the session end, so the last H
bars get NULL labels rather than a shorter horizon.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from hft_pipeline.features.families.base import BAR_WINDOW, rolling
from hft_pipeline.features.schema import (
    direction_column,
    forward_return_column,
    forward_volatility_column,
)

THRESHOLD_MODES = ("ticks", "spread")
# Bars of spread history behind the "spread" threshold (1 min of 1 s bars, 5 min of 5 s bars).
SPREAD_MEDIAN_BARS = 60


def labels_schema(key_fields: Sequence[pa.Field], horizons_bars: Sequence[int]) -> pa.Schema:
    """Key columns, then per horizon in order: forward return (float64), forward volatility
    (float64), direction (int8: 0 down, 1 flat, 2 up)."""
    return pa.schema(
        [
            *key_fields,
            *(
                field
                for horizon in horizons_bars
                for field in (
                    pa.field(forward_return_column(horizon), pa.float64()),
                    pa.field(forward_volatility_column(horizon), pa.float64()),
                    pa.field(direction_column(horizon), pa.int8()),
                )
            ),
        ]
    )


def threshold_ticks_sql(mode: str, threshold_ticks: float, cost_ticks: float) -> str:
    """DuckDB expression of the direction threshold (ticks) at bar t, over ``bar_inputs``."""
    if mode == "ticks":
        return repr(float(threshold_ticks))
    if mode == "spread":
        spread = "(ask_px_00 - bid_px_00) / tick_size"
        return f"({rolling(f'median({spread})', SPREAD_MEDIAN_BARS)} + {float(cost_ticks)!r})"
    raise ValueError(f"direction_threshold_mode must be one of {THRESHOLD_MODES}, found {mode!r}")


def horizon_labels_sql(horizon_bars: int, threshold_column: str) -> str:
    """The three label columns of one horizon, as a SELECT list over ``bar_inputs`` with a
    ``threshold_column`` (ticks)."""
    future_mid = f"lead(mid, {horizon_bars}) OVER {BAR_WINDOW}"
    following = f"({BAR_WINDOW} ROWS BETWEEN 1 FOLLOWING AND {horizon_bars} FOLLOWING)"
    # Prices sit on the tick grid; rounding removes float noise such as 0.9999999 ticks.
    move_ticks = f"round(({future_mid} - mid) / tick_size, 6)"
    return f"""
        CASE WHEN mid > 0 AND {future_mid} > 0 THEN ln({future_mid} / mid) END
            AS {forward_return_column(horizon_bars)},
        CASE WHEN count(mid_log_return) OVER {following} = {horizon_bars}
            THEN sqrt(sum(mid_log_return * mid_log_return) OVER {following}) END
            AS {forward_volatility_column(horizon_bars)},
        (CASE
            WHEN {move_ticks} <= -{threshold_column} THEN 0
            WHEN {move_ticks} >= {threshold_column} THEN 2
            WHEN {move_ticks} IS NOT NULL AND {threshold_column} IS NOT NULL THEN 1
        END)::TINYINT AS {direction_column(horizon_bars)}
    """
