"""The registry's features and labels written the way a researcher would, in pandas and ``ta``.

An independent reference for ``compute.compute_day`` (the DuckDB path) and the baseline of
``benchmarks/bench_features.py``: one symbol's SLIM file is read into pandas, bars come from a
``groupby`` on the bar index and a ``merge_asof`` of the book onto the bar closes, features from
``shift`` / ``rolling`` and the ``ta`` indicators, labels from negative shifts. Only the
definitions (names, formulas, windows) come from the registry, never its code.

It covers every registry feature and the labels of every configured horizon, for one symbol and
the "session" warm-up (``test_pandas_reference`` checks that no registry feature is missing);
the multi-timeframe features come from a ``groupby`` of the bars into 1-min and 5-min bars and a
``merge_asof`` of those onto the bar closes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from ta.momentum import RSIIndicator
from ta.trend import MACD, EMAIndicator
from ta.volatility import AverageTrueRange, BollingerBands

from hft_pipeline.config import FeatureSettings
from hft_pipeline.features.families.flow import (
    AMIHUD_BARS,
    INTENSITY_BARS,
    KYLE_BARS,
    VPIN_BUCKET_SHARE,
    VPIN_BUCKETS,
    VPIN_SIZE_BARS,
)
from hft_pipeline.features.families.price import (
    MOMENTUM_MINUTES,
    REALIZED_VOL_WINDOWS,
    RELATIVE_VOLUME_WINDOW,
    RETURN_BARS,
)
from hft_pipeline.features.families.timeframes import REALIZED_VOL_BARS as TIMEFRAME_VOL_BARS
from hft_pipeline.features.registry import (
    ATR_WINDOW,
    BOLLINGER_WIDTH,
    BOLLINGER_WINDOW,
    BOOK_DEPTH,
    EMA_SPANS,
    MACD_FAST,
    MACD_SIGNAL,
    MACD_SLOW,
    OFI_LEVELS,
    RSI_WINDOW,
    TIMEFRAMES,
)
from hft_pipeline.features.schema import (
    BAR_INDEX,
    TS,
    direction_column,
    forward_return_column,
    forward_volatility_column,
)
from hft_pipeline.ingest.slim_schema import BOOK_LEVELS, META_TICK_SIZE
from hft_pipeline.partitions import Session

NS_PER_SECOND = 1_000_000_000
TIMEFRAME_RETURN_BARS = (1, 5)
IMBALANCE_LEVELS = (1, 3, 5, BOOK_DEPTH)
TRADE_IMBALANCE_BARS = (1, 6)
_SIDES = ("bid", "ask")


def _level(side: str, kind: str, level: int) -> str:
    return f"{side}_{kind}_{level:02d}"


BOOK_COLUMNS = [
    _level(side, kind, level)
    for side in _SIDES
    for kind in ("px", "sz")
    for level in range(BOOK_LEVELS)
]
_FLOW_SUMS = ("ofi_flow_1", "ofi_flow_multi")


@dataclass(frozen=True)
class ColumnComparison:
    """How one column of the DuckDB path compares with the reference.

    Attributes
    ----------
    name : str
        Column name.
    compared : int
        Bars where both values are defined.
    null_mismatches : int
        Bars where exactly one side is NULL / NaN.
    max_abs_diff, max_rel_diff : float
        Over the compared bars; the relative difference divides by max(|a|, |b|) (0 when both
        are 0).
    outside_tolerance : int
        Compared bars whose difference exceeds the tolerance of :func:`compare_columns`.
    """

    name: str
    compared: int
    null_mismatches: int
    max_abs_diff: float
    max_rel_diff: float
    outside_tolerance: int

    @property
    def equal(self) -> bool:
        return self.null_mismatches == 0 and self.outside_tolerance == 0


def reference_day(slim_path: Path, session: Session, settings: FeatureSettings) -> pd.DataFrame:
    """Features and labels of one symbol's SLIM file, one row per bar, in bar order.

    Parameters
    ----------
    slim_path : Path
        One symbol's SLIM parquet file of ``session``'s trading day.
    session : Session
        Bars cover [open, close) at ``settings.bar_seconds``.
    settings : FeatureSettings
        Bar interval, label horizon and direction threshold.

    Returns
    -------
    pd.DataFrame
        ``bar_index``, ``ts``, then the reference features and the labels; NaN where undefined.
    """
    tick_size = float(pq.read_schema(slim_path).metadata[META_TICK_SIZE.encode()])
    interval = settings.bar_seconds * NS_PER_SECOND
    bars = _bars(_session_events(slim_path, session, interval), session, interval)
    parts = [
        bars[[BAR_INDEX, TS]],
        _features(bars, tick_size, settings.bar_seconds),
        _timeframes(bars, tick_size, settings.bar_seconds),
        *(_labels(bars, tick_size, horizon, settings) for horizon in settings.horizons_bars),
    ]
    return pd.concat(parts, axis=1)


def _session_events(slim_path: Path, session: Session, interval: int) -> pd.DataFrame:
    """The session's events in arrival order, with empty book levels set to NaN and the index
    of their bar (right-closed, ``interval`` ns; an event at the open joins bar 0)."""
    columns = ["ts_recv", "trade_px", "trade_sz", "trade_side", *BOOK_COLUMNS]
    events = pd.read_parquet(slim_path, columns=columns)
    in_session = (events["ts_recv"] >= session.open_ns) & (events["ts_recv"] < session.close_ns)
    events = events[in_session].sort_values("ts_recv", kind="stable").reset_index(drop=True)
    best = [_level(side, kind, 0) for side in _SIDES for kind in ("px", "sz")]
    events["is_book"] = events[best].notna().any(axis=1)
    events["is_trade"] = (events["trade_sz"] > 0) & np.isfinite(events["trade_px"])
    for side in _SIDES:
        for level in range(BOOK_LEVELS):
            price, size = _level(side, "px", level), _level(side, "sz", level)
            filled = (events[size] > 0) & np.isfinite(events[price])
            events[price] = events[price].where(filled)
            events[size] = events[size].where(filled)
    events["mid"] = (events["bid_px_00"] + events["ask_px_00"]) / 2
    events["bar"] = np.maximum((events["ts_recv"] - session.open_ns - 1) // interval, 0)
    return events


def _bars(events: pd.DataFrame, session: Session, interval: int) -> pd.DataFrame:
    """Bars of ``interval`` ns stamped at their close, the last book state carried forward."""
    bar_count = -(-(session.close_ns - session.open_ns) // interval)
    bar_index = np.arange(bar_count)
    ts = np.minimum(session.open_ns + (bar_index + 1) * interval, session.close_ns)
    bars = pd.DataFrame({BAR_INDEX: bar_index, TS: ts})
    bars["session_fraction"] = (ts - session.open_ns) / (session.close_ns - session.open_ns)
    bars["minutes_since_open"] = (ts - session.open_ns) / (60 * NS_PER_SECOND)
    bars["minutes_to_close"] = (session.close_ns - ts) / (60 * NS_PER_SECOND)
    bars["day_of_week"] = session.day.weekday()

    book = events[events["is_book"]]
    # The book at the close: the last book event with ts_recv <= the bar's close.
    state = book[["ts_recv", *BOOK_COLUMNS, "mid"]].rename(columns={"ts_recv": TS})
    bars = pd.merge_asof(bars, state, on=TS, direction="backward")

    trades = events[events["is_trade"]].assign(
        value=lambda frame: frame["trade_px"] * frame["trade_sz"],
        buy=lambda frame: frame["trade_sz"].where(frame["trade_side"] == "B", 0),
        sell=lambda frame: frame["trade_sz"].where(frame["trade_side"] == "A", 0),
    )
    activity = trades.groupby("bar").agg(
        value=("value", "sum"),
        trade_count=("trade_sz", "size"),
        volume=("trade_sz", "sum"),
        buy_volume=("buy", "sum"),
        sell_volume=("sell", "sum"),
    )
    activity["vwap"] = activity["value"] / activity["volume"]
    moves = events.groupby("bar")["mid"].agg(["first", "max", "min"])
    flow = _order_flow(book)
    bars = bars.join(activity.drop(columns="value")).join(moves).join(flow)
    # Bars without trades or book events: no volume and no flow.
    for column in ("trade_count", "volume", "buy_volume", "sell_volume", *_FLOW_SUMS):
        bars[column] = bars[column].fillna(0)
    bars["mid_open"] = bars.pop("first").fillna(bars["mid"])
    bars["mid_high"] = bars.pop("max").fillna(bars["mid"])
    bars["mid_low"] = bars.pop("min").fillna(bars["mid"])
    return bars


def _order_flow(book: pd.DataFrame) -> pd.DataFrame:
    """Per bar: OFI sums (Cont et al.) of the book events against the previous one, and the
    events' mean level depth, at level 1 and summed over levels 1..OFI_LEVELS."""
    previous = book[BOOK_COLUMNS].shift(1)
    terms = {}
    for level in range(OFI_LEVELS):
        bid_px, bid_sz = _level("bid", "px", level), _level("bid", "sz", level)
        ask_px, ask_sz = _level("ask", "px", level), _level("ask", "sz", level)
        term = (
            book[bid_sz].where(book[bid_px] >= previous[bid_px], 0)
            - previous[bid_sz].where(book[bid_px] <= previous[bid_px], 0)
            - book[ask_sz].where(book[ask_px] <= previous[ask_px], 0)
            + previous[ask_sz].where(book[ask_px] >= previous[ask_px], 0)
        )
        defined = pd.concat(
            [book[bid_px], book[ask_px], previous[bid_px], previous[ask_px]], axis=1
        ).notna()
        terms[level] = term.where(defined.all(axis=1))
    sizes = book[[_level(side, "sz", level) for side in _SIDES for level in range(OFI_LEVELS)]]
    per_event = pd.DataFrame(
        {
            "bar": book["bar"],
            "ofi_flow_1": terms[0],
            "ofi_flow_multi": pd.concat(terms.values(), axis=1).sum(axis=1),
            "ofi_depth_1": (book["bid_sz_00"].fillna(0) + book["ask_sz_00"].fillna(0)) / 2,
            "ofi_depth_multi": sizes.fillna(0).sum(axis=1) / (2 * OFI_LEVELS),
        }
    )
    return per_event.groupby("bar").agg(
        ofi_flow_1=("ofi_flow_1", "sum"),
        ofi_flow_multi=("ofi_flow_multi", "sum"),
        ofi_depth_1=("ofi_depth_1", "mean"),
        ofi_depth_multi=("ofi_depth_multi", "mean"),
    )


def _log_ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    defined = (numerator > 0) & (denominator > 0)
    return np.log(numerator.where(defined) / denominator.where(defined))


def _imbalance(first: pd.Series, second: pd.Series) -> pd.Series:
    return (first - second) / (first + second).replace(0, np.nan)


def _side_sizes(bars: pd.DataFrame, side: str, levels: int) -> pd.Series:
    return bars[[_level(side, "sz", level) for level in range(levels)]].fillna(0).sum(axis=1)


def _features(bars: pd.DataFrame, tick: float, bar_seconds: int) -> pd.DataFrame:
    mid = bars["mid"]
    log_return = _log_ratio(mid, mid.shift(1))
    books = bars["bid_sz_00"].notna() & bars["ask_sz_00"].notna()
    out = {"mid": mid} | _price(bars, log_return, tick, bar_seconds)
    out["spread_ticks"] = (bars["ask_px_00"] - bars["bid_px_00"]) / tick
    sizes = (bars["bid_sz_00"] + bars["ask_sz_00"]).replace(0, np.nan)
    microprice = (
        bars["bid_px_00"] * bars["ask_sz_00"] + bars["ask_px_00"] * bars["bid_sz_00"]
    ) / sizes
    out["microprice_offset_ticks"] = (microprice - mid) / tick
    for levels in IMBALANCE_LEVELS:
        imbalance = _imbalance(_side_sizes(bars, "bid", levels), _side_sizes(bars, "ask", levels))
        out[f"obi_{levels}"] = imbalance.where(books)
    for window in TRADE_IMBALANCE_BARS:
        out[f"trade_imbalance_{window}"] = _imbalance(
            bars["buy_volume"].rolling(window).sum(), bars["sell_volume"].rolling(window).sum()
        )
    out["log_trade_count"] = np.log1p(bars["trade_count"])
    out["log_volume"] = np.log1p(bars["volume"])
    out["time_of_day_sin"] = np.sin(2 * np.pi * bars["session_fraction"])
    out["time_of_day_cos"] = np.cos(2 * np.pi * bars["session_fraction"])
    out["day_of_week_sin"] = np.sin(2 * np.pi * bars["day_of_week"] / 7)
    out["day_of_week_cos"] = np.cos(2 * np.pi * bars["day_of_week"] / 7)
    out["minutes_since_open"] = bars["minutes_since_open"]
    out["minutes_to_close"] = bars["minutes_to_close"]
    traded_value = (bars["vwap"] * bars["volume"]).fillna(0).cumsum()
    out["session_vwap"] = traded_value / bars["volume"].cumsum().replace(0, np.nan)
    out["vwap_dist_ticks"] = (mid - out["session_vwap"]) / tick
    out |= _flow(bars, log_return, tick)
    out |= _book_levels(bars, tick)
    return pd.concat([pd.DataFrame(out), _technical(bars, tick)], axis=1)


def _bars_of(seconds: int, bar_seconds: int) -> int:
    return -(-seconds // bar_seconds)


def _price(
    bars: pd.DataFrame, log_return: pd.Series, tick: float, bar_seconds: int
) -> dict[str, pd.Series]:
    mid = bars["mid"]
    out = {}
    for window in RETURN_BARS:
        out[f"log_ret_{window}"] = _log_ratio(mid, mid.shift(window))
    for window in RETURN_BARS:
        previous = mid.shift(window)
        out[f"ret_{window}"] = (mid / previous - 1).where((mid > 0) & (previous > 0))
    for minutes in MOMENTUM_MINUTES:
        out[f"momentum_{minutes}m"] = (mid - mid.shift(_bars_of(60 * minutes, bar_seconds))) / tick
    for label, seconds in REALIZED_VOL_WINDOWS:
        squares = (log_return**2).rolling(_bars_of(seconds, bar_seconds)).sum()
        out[f"realized_vol_{label}"] = np.sqrt(squares)
    opened = mid.shift(1)
    high, low = np.fmax(bars["mid_high"], opened), np.fmin(bars["mid_low"], opened)
    candle = mid.notna() & opened.notna()
    spread = (high - low).where(candle)
    moved = spread.replace(0, np.nan)
    out["range_ticks"] = spread / tick
    out["bar_direction"] = np.sign(mid - opened).where(candle)
    out["body_ratio"] = (mid - opened).abs() / moved
    out["upper_wick_ratio"] = (high - np.fmax(mid, opened)) / moved
    out["lower_wick_ratio"] = (np.fmin(mid, opened) - low) / moved
    label, seconds = RELATIVE_VOLUME_WINDOW
    before = bars["volume"].shift(1).rolling(_bars_of(seconds, bar_seconds)).mean()
    out[f"relative_volume_{label}"] = bars["volume"] / before.replace(0, np.nan)
    return out


def _book_levels(bars: pd.DataFrame, tick: float) -> dict[str, pd.Series]:
    out = {}
    for level in range(BOOK_DEPTH):
        suffix = f"{level:02d}"
        out[f"bid_offset_ticks_{suffix}"] = (bars["mid"] - bars[f"bid_px_{suffix}"]) / tick
        out[f"ask_offset_ticks_{suffix}"] = (bars[f"ask_px_{suffix}"] - bars["mid"]) / tick
        out[f"bid_log_size_{suffix}"] = np.log1p(bars[f"bid_sz_{suffix}"])
        out[f"ask_log_size_{suffix}"] = np.log1p(bars[f"ask_sz_{suffix}"])
    return out


def _timeframes(bars: pd.DataFrame, tick: float, bar_seconds: int) -> pd.DataFrame:
    """The core features of each higher timeframe, as of the latest of its bars closed at or
    before each bar's close."""
    frames = []
    for label, seconds in TIMEFRAMES:
        # Consecutive bars make one higher-timeframe bar; tail(1) keeps a NaN mid at its close.
        members = bars[BAR_INDEX] * bar_seconds // seconds
        groups = bars.groupby(members)
        last = groups.tail(1).set_index(members.drop_duplicates(keep="last").to_numpy())
        higher = pd.DataFrame(
            {
                "tf_close_ts": last[TS],
                "close_mid": last["mid"],
                "high": groups["mid_high"].max(),
                "low": groups["mid_low"].min(),
                "buy_volume": groups["buy_volume"].sum(),
                "sell_volume": groups["sell_volume"].sum(),
                "volume": groups["volume"].sum(),
            }
        )
        close = higher["close_mid"]
        log_return = _log_ratio(close, close.shift(1))
        core = {}
        for window in TIMEFRAME_RETURN_BARS:
            core[f"log_ret_{window}"] = _log_ratio(close, close.shift(window))
        squares = (log_return**2).rolling(TIMEFRAME_VOL_BARS).sum()
        core[f"realized_vol_{TIMEFRAME_VOL_BARS}"] = np.sqrt(squares)
        core["range_ticks"] = (higher["high"] - higher["low"]) / tick
        core["obi_1"] = _imbalance(last["bid_sz_00"], last["ask_sz_00"])
        core["trade_imbalance"] = _imbalance(higher["buy_volume"], higher["sell_volume"])
        core["log_volume"] = np.log1p(higher["volume"])
        closed = pd.DataFrame(core).add_prefix(f"tf{label}_")
        closed["tf_close_ts"] = higher["tf_close_ts"]
        joined = pd.merge_asof(
            bars[[TS]], closed, left_on=TS, right_on="tf_close_ts", direction="backward"
        )
        frames.append(joined.drop(columns=[TS, "tf_close_ts"]))
    return pd.concat(frames, axis=1).set_axis(bars.index)


def _technical(bars: pd.DataFrame, tick: float) -> pd.DataFrame:
    """The ``ta`` indicators over the bars with a mid (the registry's indicators skip the
    others), renumbered 0..n-1 because ``ta`` slices by position; NaN on bars without a mid."""
    defined = bars[bars["mid"].notna()].reset_index(drop=True)
    close = defined["mid"]
    out = {}
    for span in EMA_SPANS:
        ema = EMAIndicator(close, span).ema_indicator()
        out[f"ema_{span}"], out[f"ema_{span}_dist_ticks"] = ema, (close - ema) / tick
    rsi = RSIIndicator(close, RSI_WINDOW).rsi()
    # ta calls "no move since the open" 100; the registry leaves it undefined.
    out[f"rsi_{RSI_WINDOW}"] = rsi.where(close.diff().fillna(0).ne(0).cummax())
    macd = MACD(close, MACD_SLOW, MACD_FAST, MACD_SIGNAL)
    out["macd_ticks"] = macd.macd() / tick
    out["macd_signal_ticks"] = macd.macd_signal() / tick
    out["macd_hist_ticks"] = macd.macd_diff() / tick
    bands = BollingerBands(close, BOLLINGER_WINDOW, BOLLINGER_WIDTH)
    upper, lower = bands.bollinger_hband(), bands.bollinger_lband()
    out["bb_upper_dist_ticks"] = (upper - close) / tick
    out["bb_lower_dist_ticks"] = (close - lower) / tick
    out["bb_pct_b"] = ((close - lower) / (upper - lower)).where(upper > lower)
    out["bb_width"] = (upper - lower) / bands.bollinger_mavg()
    atr = AverageTrueRange(defined["mid_high"], defined["mid_low"], close, ATR_WINDOW)
    # ta writes 0 over the warm-up; the registry writes NULL.
    atr_ticks = atr.average_true_range().where(close.index >= ATR_WINDOW - 1) / tick
    out[f"atr_{ATR_WINDOW}_ticks"] = atr_ticks
    technical = pd.DataFrame(out).set_axis(defined[BAR_INDEX])
    return technical.reindex(bars[BAR_INDEX]).set_axis(bars.index)


def _flow(bars: pd.DataFrame, log_return: pd.Series, tick: float) -> dict[str, pd.Series]:
    out = {}
    for side in _SIDES:
        depth = np.log1p(_side_sizes(bars, side, BOOK_DEPTH))
        out[f"log_depth_{side}_{BOOK_DEPTH}"] = depth.where(bars[f"{side}_sz_00"].notna())
    opening_book = bars["bid_sz_00"].shift(1).notna() & bars["ask_sz_00"].shift(1).notna()
    for name, levels, suffix in (
        ("ofi_1", 1, "1"),
        (f"ofi_multi_{OFI_LEVELS}", OFI_LEVELS, "multi"),
    ):
        close_depth = (_side_sizes(bars, "bid", levels) + _side_sizes(bars, "ask", levels)) / (
            2 * levels
        )
        depth = bars[f"ofi_depth_{suffix}"].fillna(close_depth).replace(0, np.nan)
        out[name] = (bars[f"ofi_flow_{suffix}"] / depth).where(opening_book)
    elapsed_seconds = (bars[TS] - bars[TS].shift(INTENSITY_BARS)) / NS_PER_SECOND
    trades = bars["trade_count"].rolling(INTENSITY_BARS).sum()
    out[f"trade_intensity_{INTENSITY_BARS}"] = trades / elapsed_seconds
    out[f"vpin_{VPIN_BUCKETS}"] = _vpin(bars["buy_volume"], bars["sell_volume"])
    price_change = (bars["mid"] - bars["mid"].shift(1)) / tick
    signed_volume = (bars["buy_volume"] - bars["sell_volume"]).where(price_change.notna())
    variance = signed_volume.rolling(KYLE_BARS).var()
    slope = price_change.rolling(KYLE_BARS).cov(signed_volume) / variance
    out[f"kyle_lambda_{KYLE_BARS}"] = 100 * slope.where(variance > 0)
    ratio = log_return.abs() / bars["volume"].replace(0, np.nan)
    amihud = 1e4 * ratio.rolling(AMIHUD_BARS, min_periods=1).mean()
    out[f"amihud_{AMIHUD_BARS}"] = amihud.where(
        log_return.rolling(AMIHUD_BARS).count() == AMIHUD_BARS
    )
    return out


def _vpin(buy_volume: pd.Series, sell_volume: pd.Series) -> pd.Series:
    """VPIN bar by bar: buckets of V = VPIN_BUCKET_SHARE x the classified volume of the previous
    VPIN_SIZE_BARS bars, laid back from the bar's close, each bar's volume spread evenly."""
    buys = np.concatenate(([0.0], buy_volume.cumsum().to_numpy(dtype=float)))
    volume = np.concatenate(([0.0], (buy_volume + sell_volume).cumsum().to_numpy(dtype=float)))
    result = np.full(len(buy_volume), np.nan)
    for bar in range(VPIN_SIZE_BARS, len(buy_volume)):
        # Cumulative volume and buys at the closes of bars bar - VPIN_SIZE_BARS - 1 .. bar.
        clock, bought = volume[bar - VPIN_SIZE_BARS : bar + 2], buys[bar - VPIN_SIZE_BARS : bar + 2]
        size = VPIN_BUCKET_SHARE * (clock[-2] - clock[0])
        if size <= 0:
            continue
        edges = clock[-1] - size * np.arange(VPIN_BUCKETS + 1)
        bucket_buys = -np.diff(np.interp(edges, clock, bought))
        result[bar] = np.mean(np.abs(2 * bucket_buys - size)) / size
    return pd.Series(result, index=buy_volume.index)


def _labels(
    bars: pd.DataFrame, tick: float, horizon: int, settings: FeatureSettings
) -> pd.DataFrame:
    mid = bars["mid"]
    future_mid = mid.shift(-horizon)
    squared_returns = _log_ratio(mid, mid.shift(1)) ** 2
    move_ticks = ((future_mid - mid) / tick).round(6)
    direction = pd.Series(np.where(move_ticks.notna(), 1.0, np.nan), index=bars.index)
    direction[move_ticks <= -settings.direction_threshold_ticks] = 0.0
    direction[move_ticks >= settings.direction_threshold_ticks] = 2.0
    return pd.DataFrame(
        {
            forward_return_column(horizon): _log_ratio(future_mid, mid),
            forward_volatility_column(horizon): np.sqrt(
                squared_returns.rolling(horizon).sum().shift(-horizon)
            ),
            direction_column(horizon): direction,
        }
    )


def compare_columns(
    ours: pd.DataFrame, reference: pd.DataFrame, rtol: float = 1e-9
) -> list[ColumnComparison]:
    """Every column both frames hold (bar-aligned rows), compared value by value.

    Two defined values agree when ``|a - b| <= rtol * max(|a|, |b|)``; NULL (None / NaN) must
    face NULL.
    """
    names = [name for name in reference.columns if name in ours.columns]
    results = []
    for name in names:
        a = ours[name].to_numpy(dtype=float, na_value=np.nan)
        b = reference[name].to_numpy(dtype=float, na_value=np.nan)
        both = ~np.isnan(a) & ~np.isnan(b)
        difference = np.abs(a[both] - b[both])
        scale = np.maximum(np.abs(a[both]), np.abs(b[both]))
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.where(difference > 0, difference / scale, 0.0)
        results.append(
            ColumnComparison(
                name=name,
                compared=int(both.sum()),
                null_mismatches=int((np.isnan(a) != np.isnan(b)).sum()),
                max_abs_diff=float(difference.max(initial=0.0)),
                max_rel_diff=float(relative.max(initial=0.0)),
                outside_tolerance=int((difference > rtol * scale).sum()),
            )
        )
    return results
