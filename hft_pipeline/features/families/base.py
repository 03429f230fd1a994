"""What every feature family shares: the spec types, the bar window and SQL helpers."""

from __future__ import annotations

from dataclasses import dataclass

from hft_pipeline.features import indicators

# One symbol's bars of one session in time order; compute.py declares it in every query.
BAR_WINDOW = "bar_window"
BAR_WINDOW_SQL = f"{BAR_WINDOW} AS (PARTITION BY symbol ORDER BY bar_index)"

# Book levels (per side) that the features read; bars.py keeps this many levels.
BOOK_DEPTH = 10
# Levels summed by the multi-level order-flow imbalance (bars.py computes it).
OFI_LEVELS = 5


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
        Bars before bar t that the value reads (0: bar t only). The first ``lookback_bars``
        bars of a session are NULL (warm-up).
    unit : str
        Unit of the value (ticks, log return, ratio, ...).
    description : str
        What the value measures, one line.
    sql : str
        DuckDB expression over ``bar_inputs`` (see the module docstring).
    model_input : bool
        Whether models take it as an input; raw price levels are not (they are not scale-free).
    """

    name: str
    formula: str
    lookback_bars: int
    unit: str
    description: str
    sql: str
    model_input: bool = True


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


def rolling(aggregate: str, window_bars: int) -> str:
    """``aggregate`` over bars t-window_bars+1..t of the same symbol and session."""
    return (
        f"{aggregate} OVER ({BAR_WINDOW} ROWS BETWEEN {window_bars - 1} PRECEDING AND CURRENT ROW)"
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
