"""Column names shared by the feature files, the label files and everything that reads them."""

from __future__ import annotations

# Every row of a features or labels file is one bar of one symbol, keyed by these columns.
TS = "ts"  # int64 ns UTC, the bar's close (a bar is known at its close)
SESSION_DATE = "session_date"  # the trading day (date32)
SYMBOL = "symbol"  # root symbol, e.g. ES
BAR_INDEX = "bar_index"  # int32, 0 for the session's first bar
KEY_COLUMNS = (TS, SESSION_DATE, SYMBOL, BAR_INDEX)

# Direction classes, in the order of the model's logits.
DIRECTION_CLASSES = ("down", "flat", "up")


def forward_return_column(horizon_bars: int) -> str:
    """Log return of the mid price from bar t's close to bar t+H's close."""
    return f"fwd_ret_h{horizon_bars}"


def forward_volatility_column(horizon_bars: int) -> str:
    """sqrt of the sum of squared 1-bar mid log returns over bars t+1..t+H."""
    return f"fwd_rv_h{horizon_bars}"


def direction_column(horizon_bars: int) -> str:
    """0 down / 1 flat / 2 up: mid move over H bars against a threshold in ticks."""
    return f"direction_h{horizon_bars}"


def label_columns(horizon_bars: int) -> tuple[str, str, str]:
    return (
        forward_return_column(horizon_bars),
        forward_volatility_column(horizon_bars),
        direction_column(horizon_bars),
    )
