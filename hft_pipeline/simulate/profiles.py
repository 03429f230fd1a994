"""Who is simulated: per-root market profiles, the session to simulate, intraday activity."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np


@dataclass(frozen=True)
class MarketProfile:
    """Typical levels of one root symbol; sizes are lots, volatility a fraction of price."""

    root: str
    price: float  # reference price level around which the daily opens wander
    daily_vol: float
    touch_lots: float  # typical queue at the best bid/ask
    depth_growth: float  # base queue grows by this fraction of touch_lots per level
    trade_lots: float  # mean aggressor trade size
    order_lots: float  # mean resting order size (order count = size / order_lots)


PROFILES: dict[str, MarketProfile] = {
    p.root: p
    for p in (
        MarketProfile("ES", 4750.0, 0.009, 60, 0.35, 3, 4),
        MarketProfile("MES", 4750.0, 0.009, 25, 0.30, 2, 2),
        MarketProfile("NQ", 16800.0, 0.012, 8, 0.25, 2, 1.5),
        MarketProfile("ZN", 111.5, 0.004, 700, 0.40, 12, 15),
        MarketProfile("ZB", 119.0, 0.008, 150, 0.35, 5, 6),
        MarketProfile("6E", 1.095, 0.005, 40, 0.30, 3, 3),
    )
}


def market_profile(root: str) -> MarketProfile:
    """The simulation profile of a root symbol; raises KeyError naming the supported roots."""
    try:
        return PROFILES[root]
    except KeyError:
        raise KeyError(
            f"no simulation profile for root symbol {root!r}; simulated roots: {sorted(PROFILES)}."
            " Add a MarketProfile to hft_pipeline/simulate/profiles.py::PROFILES."
        ) from None


@dataclass(frozen=True)
class SessionSpec:
    """What to simulate: one contract over one session."""

    open_ns: int
    close_ns: int
    start_ticks: int  # latent mid at the open, in ticks
    tick: Fraction
    utc_offset_s: int  # Chicago's UTC offset during the session (seconds, negative)
    instrument_id: int
    first_sequence: int
    activity: float = 1.0  # multiplies events_per_second (a thin outgoing contract: < 1)


def intraday_shape(seconds_utc: np.ndarray, utc_offset_s: int) -> np.ndarray:
    """Relative activity at each second (UTC epoch seconds), from Chicago local time of day."""
    hours = ((seconds_utc + utc_offset_s) % 86_400) / 3600.0
    u = (hours - 11.75) / 3.25  # -1 at 08:30 CT, +1 at 15:00 CT
    shape = np.full(hours.shape, 0.2)
    shape[((hours >= 7.0) & (hours < 8.5)) | ((hours >= 15.0) & (hours < 16.0))] = 0.5
    regular = (hours >= 8.5) & (hours < 15.0)
    shape[regular] = 1.0 + 2.0 * u[regular] ** 2
    return shape
