"""Technical indicators as vectorized numpy filters over one session's bars.

Recursive filters (EMA, Wilder smoothing) do not fit DuckDB's window functions, so the registry's
``INDICATORS`` run here, after the SQL bar inputs (see ``compute.py``). Every function takes
float64 arrays of one symbol's session in time order, all defined (no NaN: :func:`per_session`
drops undefined bars first), and returns an array of the same length, NaN during the warm-up.

Conventions follow the ``ta`` package 0.11 so that the values can be checked against it: EMAs
use pandas' ``ewm(adjust=False)`` seeded with the first value, RSI and ATR use Wilder smoothing
(alpha = 1 / window), Bollinger bands use the population standard deviation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter

Indicator = Callable[..., np.ndarray]
# Bars per block of the VPIN computation: its (block, buckets + 1) arrays stay in cache.
_VPIN_CHUNK_BARS = 4096


def per_session(
    function: Indicator, inputs: Sequence[np.ndarray], session_starts: np.ndarray
) -> np.ndarray:
    """``function`` applied to each session's bars whose inputs are all defined.

    Parameters
    ----------
    function : Indicator
        One of this module's indicators, its window arguments already bound.
    inputs : Sequence[np.ndarray]
        Input columns, float64, shape (bars,), sessions one after the other; NaN is undefined.
    session_starts : np.ndarray
        Index of each session's first bar, ascending, starting with 0.

    Returns
    -------
    np.ndarray
        Shape (bars,). A bar with an undefined input is NaN and does not advance the filter (the
        indicator runs as if the bar were absent); every session starts the filter afresh.
    """
    bar_count = len(inputs[0])
    result = np.full(bar_count, np.nan)
    bounds = [*session_starts.tolist(), bar_count]
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        columns = [column[start:stop] for column in inputs]
        defined = np.logical_and.reduce([np.isfinite(column) for column in columns])
        if defined.any():
            result[start + np.flatnonzero(defined)] = function(
                *(column[defined] for column in columns)
            )
    return result


def _smooth(values: np.ndarray, alpha: float, previous: float) -> np.ndarray:
    """y[i] = alpha x[i] + (1 - alpha) y[i-1], with y[-1] = ``previous``; one lfilter pass."""
    if values.size == 0:
        return values.copy()
    smoothed, _ = lfilter([alpha], [1.0, alpha - 1.0], values, zi=[(1.0 - alpha) * previous])
    return smoothed


def _ema_unmasked(close: np.ndarray, span: int) -> np.ndarray:
    # Seeded with the first value (y[0] = x[0]), as pandas ewm(span, adjust=False).
    return _smooth(close, 2.0 / (span + 1), close[0])


def ema(close: np.ndarray, span: int) -> np.ndarray:
    """Exponential moving average, alpha = 2 / (span + 1); NaN over the first span - 1 bars."""
    result = _ema_unmasked(close, span)
    result[: span - 1] = np.nan
    return result


def rsi(close: np.ndarray, window: int) -> np.ndarray:
    """Wilder's relative strength index in [0, 100]; NaN over the first window - 1 bars.

    Like ``ta``, the first bar counts as a change of 0 and seeds both averages. Where the
    average fall is 0 the RSI is 100, except when the average rise is 0 too: no move at all since
    the session start, which ``ta`` calls 100 and we leave undefined (NaN).
    """
    change = np.diff(close, prepend=close[:1])
    alpha = 1.0 / window
    rises = np.maximum(change, 0.0)
    falls = np.maximum(-change, 0.0)
    average_rise = _smooth(rises, alpha, rises[0])
    average_fall = _smooth(falls, alpha, falls[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        result = 100.0 - 100.0 / (1.0 + average_rise / average_fall)
    result[average_fall == 0] = 100.0
    result[(average_fall == 0) & (average_rise == 0)] = np.nan
    result[: window - 1] = np.nan
    return result


def macd_line(close: np.ndarray, fast: int, slow: int) -> np.ndarray:
    """EMA(fast) - EMA(slow), price units; NaN over the first slow - 1 bars."""
    result = _ema_unmasked(close, fast) - _ema_unmasked(close, slow)
    result[: slow - 1] = np.nan
    return result


def macd_signal(close: np.ndarray, fast: int, slow: int, signal: int) -> np.ndarray:
    """EMA(signal) of the MACD line, started at the line's first defined bar (as ``ta``); NaN
    over the first slow + signal - 2 bars."""
    line = macd_line(close, fast, slow)[slow - 1 :]
    result = np.full(close.size, np.nan)
    result[slow - 1 :] = ema(line, signal) if line.size else line
    return result


def average_true_range(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int
) -> np.ndarray:
    """Wilder's average true range, price units; NaN over the first window - 1 bars.

    TR[t] = max(high - low, |high - close[t-1]|, |low - close[t-1]|) (high - low at the first
    bar); ATR[window-1] = mean(TR[0..window-1]), then ATR[t] = ((window - 1) ATR[t-1] + TR[t]) /
    window.
    """
    previous_close = np.concatenate(([np.nan], close[:-1]))
    # fmax ignores the NaN previous close of the first bar.
    true_range = np.fmax(
        high - low, np.fmax(np.abs(high - previous_close), np.abs(low - previous_close))
    )
    result = np.full(close.size, np.nan)
    if close.size >= window:
        seed = true_range[:window].mean()
        result[window - 1] = seed
        result[window:] = _smooth(true_range[window:], 1.0 / window, seed)
    return result


def _rolling_windows(close: np.ndarray, window: int) -> np.ndarray:
    return sliding_window_view(close, window)  # (bars - window + 1, window)


def rolling_mean(close: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` bars; NaN over the first window - 1 bars."""
    result = np.full(close.size, np.nan)
    if close.size >= window:
        result[window - 1 :] = _rolling_windows(close, window).mean(axis=1)
    return result


def rolling_std(close: np.ndarray, window: int) -> np.ndarray:
    """Population (ddof=0) standard deviation of the last ``window`` bars, computed in two
    passes per window (exact, and independent of later bars); NaN over the first window - 1."""
    result = np.full(close.size, np.nan)
    if close.size >= window:
        windows = _rolling_windows(close, window)
        deviations = windows - windows.mean(axis=1, keepdims=True)
        result[window - 1 :] = np.sqrt((deviations * deviations).mean(axis=1))
    return result


def _vpin_values(
    ends: np.ndarray, size: np.ndarray, clock: np.ndarray, buys: np.ndarray, buckets: int
) -> np.ndarray:
    """VPIN of the bars closing at cumulative volume ``ends`` with bucket sizes ``size``;
    ``clock`` and ``buys`` are the cumulative volume and buys at the closes of bars with volume."""
    # Bucket edges back from each close: (bars, buckets + 1), latest edge first.
    edges = ends[:, None] - size[:, None] * np.arange(buckets + 1)
    buy_at_edges = np.interp(edges, clock, buys)
    bucket_buys = buy_at_edges[:, :-1] - buy_at_edges[:, 1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.abs(2.0 * bucket_buys - size[:, None]).mean(axis=1) / size
    value[(size <= 0) | (edges[:, -1] < 0)] = np.nan
    return value


def vpin(
    buy_volume: np.ndarray,
    sell_volume: np.ndarray,
    buckets: int,
    size_bars: int,
    bucket_share: float,
) -> np.ndarray:
    """Volume-synchronized probability of informed trading over equal-volume buckets.

    At bar t the bucket size is ``V[t] = bucket_share * sum(buy + sell over bars t-size_bars..
    t-1)`` (lots, known before bar t). The last ``buckets`` buckets of size V[t] are laid back from
    bar t's close over the session's classified volume (buy + sell), a bar's volume split across
    buckets pro rata with its buy share held constant inside the bar. Then
    ``VPIN[t] = mean_k |B_k - S_k| / V[t]``, in [0, 1]. NaN over the first ``size_bars`` bars,
    where V[t] = 0, or where the session so far holds less than ``buckets * V[t]`` lots (never
    once ``buckets * bucket_share <= 1``: bars t-size_bars..t-1 hold V[t] / bucket_share lots).
    """
    volume = buy_volume + sell_volume
    cumulative_volume = np.concatenate(([0.0], np.cumsum(volume)))  # (bars + 1,), at bar closes
    cumulative_buy = np.concatenate(([0.0], np.cumsum(buy_volume)))
    result = np.full(volume.size, np.nan)
    if volume.size <= size_bars:
        return result
    # Bars without volume add no point: the volume clock stands still through them.
    moves = np.r_[True, volume > 0]
    clock, buys = cumulative_volume[moves], cumulative_buy[moves]
    ends = cumulative_volume[size_bars + 1 :]  # (bars - size_bars,): close of bars size_bars..
    size = bucket_share * (cumulative_volume[size_bars:-1] - cumulative_volume[: -size_bars - 1])
    # A bar's value reads its own edges only, so blocks of bars give the same values.
    for start in range(0, ends.size, _VPIN_CHUNK_BARS):
        chunk = slice(start, start + _VPIN_CHUNK_BARS)
        values = _vpin_values(ends[chunk], size[chunk], clock, buys, buckets)
        result[size_bars + start : size_bars + start + values.size] = values
    return result
