"""What every feature family shares: the spec types, the bar window and SQL helpers."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from hft_pipeline.features import indicators

# One symbol's bars in time order; compute.py declares it in every query. With the
# "previous_day" warm-up the bars start in the previous session's tail (bar_index < 0,
# session_part 0), so look-backs reach into it.
BAR_WINDOW = "bar_window"
BAR_WINDOW_SQL = f"{BAR_WINDOW} AS (PARTITION BY symbol ORDER BY bar_index)"

# The mid of the symbol's previous bar, a column of compute.py's bars (lag(mid) over the bar
# window, computed before DuckDB so that bar_inputs needs no window over the wide bar rows).
PREVIOUS_MID = "previous_mid"

# Book levels (per side) that the features read; bars.py keeps this many levels.
BOOK_DEPTH = 10
# Levels summed by the multi-level order-flow imbalance (bars.py computes it).
OFI_LEVELS = 5

# Where a feature may be NULL (FeatureSpec.null_policy; quality.py checks the first two, and a
# "sparse" one where its spec states the condition as FeatureSpec.null_where).
# "never": defined on every bar (clock and activity counts).
NULL_NEVER = "never"
# "warmup": NULL only for want of history: during the warm-up after the session open, or after
# a bar whose book had an empty best side (no mid), for as many bars as the warm-up lasts.
NULL_WARMUP = "warmup"
# "sparse": besides the warm-up, NULL where the market is quiet or thin: no trade or no price
# move in the window, an empty book level. Such NULLs depend on the data, not on the clock.
NULL_SPARSE = "sparse"
NULL_POLICIES = (NULL_NEVER, NULL_WARMUP, NULL_SPARSE)

# One symbol's rows of a features file in time order, for FeatureSpec.null_where.
FEATURE_ROWS_WINDOW = "feature_rows"
FEATURE_ROWS_WINDOW_SQL = f"{FEATURE_ROWS_WINDOW} AS (PARTITION BY symbol ORDER BY bar_index)"


@dataclass(frozen=True)
class FeatureSpec:
    """One feature column: float64, one value per bar.

    Attributes
    ----------
    name : str
        Column name in the features table.
    formula : str
        The definition in plain notation, for people (``sql`` is what runs).
    lookback_bars : int
        Bars before bar t that the value reads (0: bar t only), in bars of its timeframe. With
        the "session" warm-up the first ``warmup_bars(bar_seconds)`` bars of a session are
        NULL.
    unit : str
        Unit of the value (ticks, log return, ratio, ...).
    description : str
        What the value measures, one line.
    sql : str
        DuckDB expression over ``bar_inputs`` (see the module docstring).
    model_input : bool
        Whether models take it as an input; raw price levels are not (they are not scale-free).
    null_policy : str
        Where the value may be NULL: ``NULL_NEVER``, ``NULL_WARMUP`` or ``NULL_SPARSE``.
    timeframe_seconds : int
        0 for a feature of the bars themselves; else the length of the higher-timeframe bars
        (1 min, 5 min) it is computed on, ``lookback_bars`` then counting those bars.
    null_where : str
        For a "sparse" feature whose quiet-market condition can be read back from the features
        file: a DuckDB boolean expression over that file's columns (window ``FEATURE_ROWS_WINDOW``)
        that holds where the value may be NULL besides the warm-up. Empty: not checked, because
        the condition needs what the file does not hold (aggressor volumes, book depth).
    window_seconds : int
        0 for a look-back counted in bars. Else the look-back is clock time (momentum over 5
        minutes means 300 bars of 1 s, 60 of 5 s): ``W = window_bars(bar_seconds)`` bars, the
        value reads bars t-W..t, and ``sql``, ``null_where`` and ``formula`` hold ``{window_bars}``
        where W goes; ``at(bar_seconds)`` gives the concrete spec. ``lookback_bars`` is then 0.
    """

    name: str
    formula: str
    lookback_bars: int
    unit: str
    description: str
    sql: str
    model_input: bool = True
    null_policy: str = NULL_WARMUP
    timeframe_seconds: int = 0
    null_where: str = ""
    window_seconds: int = 0

    def __post_init__(self) -> None:
        if self.null_policy not in NULL_POLICIES:
            raise ValueError(
                f"feature {self.name}: null_policy {self.null_policy!r} is not one of "
                f"{NULL_POLICIES}"
            )
        if self.null_where and self.null_policy != NULL_SPARSE:
            raise ValueError(
                f"feature {self.name}: null_where applies to 'sparse' features only, its "
                f"null_policy is {self.null_policy!r}"
            )
        if self.window_seconds and (self.lookback_bars or self.timeframe_seconds):
            raise ValueError(
                f"feature {self.name}: a clock-time window (window_seconds) sets the look-back; "
                "leave lookback_bars and timeframe_seconds at 0"
            )

    def window_bars(self, bar_seconds: int) -> int:
        """Bars of ``bar_seconds`` that cover ``window_seconds``, rounded up to whole bars (a
        30-s window is one bar of 60 s)."""
        return math.ceil(self.window_seconds / bar_seconds)

    def at(self, bar_seconds: int) -> FeatureSpec:
        """This spec on bars of ``bar_seconds``: a clock-time window becomes a count of bars."""
        if not self.window_seconds:
            return self
        bars = self.window_bars(bar_seconds)
        return dataclasses.replace(
            self,
            formula=self.formula.format(window_bars=bars),
            sql=self.sql.format(window_bars=bars),
            null_where=self.null_where.format(window_bars=bars),
            lookback_bars=bars,
            window_seconds=0,
        )

    def warmup_bars(self, bar_seconds: int) -> int:
        """Bars of ``bar_seconds`` at a session's open that are NULL for want of history.

        A higher-timeframe value is known once its bar closes: the look-back of ``n`` bars of
        ``T`` seconds is complete at the close of the session's ``n + 1``-th such bar, the
        ``(n + 1) T / bar_seconds``-th bar.
        """
        if self.window_seconds:
            return self.window_bars(bar_seconds)
        if not self.timeframe_seconds:
            return self.lookback_bars
        return (self.lookback_bars + 1) * self.timeframe_seconds // bar_seconds - 1


@dataclass(frozen=True)
class IndicatorSpec:
    """One per-bar indicator column computed in numpy, for the FEATURES expressions to read.

    ``indicators.per_session`` runs ``function`` over each session's bars whose ``inputs`` are
    all defined: a bar with a NULL input is NULL and does not advance the filter. Values in the
    warm-up are NULL. The FeatureSpec that exposes the indicator documents it.

    Attributes
    ----------
    name : str
        Column name, readable by ``FeatureSpec.sql``.
    inputs : tuple[str, ...]
        ``bar_inputs`` columns passed to ``function``, in order.
    function : indicators.Indicator
        An ``indicators`` function with its window arguments bound.
    """

    name: str
    inputs: tuple[str, ...]
    function: indicators.Indicator


def rolling(aggregate: str, window_bars: int | str) -> str:
    """``aggregate`` over bars t-window_bars+1..t of the same symbol and session
    (``window_bars`` may be the ``{window_bars}`` placeholder of a clock-time window)."""
    return (
        f"{aggregate} OVER ({BAR_WINDOW} ROWS BETWEEN {window_bars} - 1 PRECEDING AND CURRENT ROW)"
    )


def log_ratio(numerator: str, denominator: str) -> str:
    # ln of a non-positive price is undefined (NaN / -inf in DuckDB): NULL instead.
    return (
        f"CASE WHEN ({numerator}) > 0 AND ({denominator}) > 0 "
        f"THEN ln(({numerator}) / ({denominator})) END"
    )


def imbalance(first: str, second: str) -> str:
    """(first - second) / (first + second), NULL when the sum is 0 or NULL."""
    return f"(({first}) - ({second})) / nullif(({first}) + ({second}), 0)"
