"""The sample-bucket generator: Databento-style daily MBP-10 archives of simulated futures with
a planted order-flow signal (model in ``market``, file formats in ``archive``).

Each trading day's session of each root symbol is simulated as a whole, then cut by the UTC day
of every record's ``ts_recv``: a CME session (17:00 CT the evening before to 16:00 CT) lands in
two archives, Saturday gets none, and a holiday's UTC day only holds the next session's evening.
The front contract rolls 8 days before its quarterly expiry; on the first session after a roll
the outgoing contract still trades, thinly, in the same archives. A session's records depend only
on (seed, symbol, contract, trading day), never on the requested range, so simulating more days
later leaves the archives already written unchanged (except the range's two edge days).
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from hft_pipeline.instruments import root_spec
from hft_pipeline.partitions import Session, TradingCalendar
from hft_pipeline.simulate.archive import Contract, front_contract, write_archive
from hft_pipeline.simulate.market import simulate_session
from hft_pipeline.simulate.profiles import MarketProfile, SessionSpec, market_profile

DEFAULT_EVENTS_PER_SECOND = 2.0  # ~0.27 M records per ES session: a small, quick demo bucket
OUTGOING_ACTIVITY = 0.3  # share of the usual rate the outgoing contract keeps on a roll session
OUTGOING_DISCOUNT = 0.003  # the outgoing (nearer) contract trades this fraction lower
# Sequence numbers restart each week like CME's: trading day of week w in 0..6 starts at
# (w + 1) * SEQUENCE_SPACING, so one UTC file never sees them go back, and u32 never overflows.
SEQUENCE_SPACING = 500_000_000
# Session opens wander around the profile price: a daily AR(1) in log price from this epoch.
PRICE_EPOCH = dt.date(2000, 1, 3)
OPEN_PERSISTENCE = 0.98  # half-life 34 days: opens spread about 5 % (sd) around the price
_NS_PER_DAY = 86_400 * 10**9
_CHICAGO = ZoneInfo("America/Chicago")

__all__ = ["DEFAULT_EVENTS_PER_SECOND", "simulate_bucket"]


def simulate_bucket(
    out_dir: Path,
    start: dt.date,
    end: dt.date,
    symbols: Sequence[str],
    *,
    signal: float = 1.0,
    seed: int = 0,
    calendar: str = "CME_Equity",
    events_per_second: float = DEFAULT_EVENTS_PER_SECOND,
) -> list[Path]:
    """Writes Databento-style MBP-10 batch ZIPs, one per UTC day per symbol, for every session of
    the trading days in [start, end].

    Parameters
    ----------
    out_dir : Path
        Bucket root; archives go to ``raw/<yyyy>/<yyyymmdd>/<SYMBOL>/glbx-mdp3-<yyyymmdd>-
        <SYMBOL>.zip`` below it.
    start, end : datetime.date
        First and last trading day (inclusive).
    symbols : Sequence[str]
        Root symbols with a simulation profile (ES, MES, NQ, ZN, ZB, 6E).
    signal : float, default 1.0
        Strength of the planted relation "signed flow of the last 20 s leads the next minute's
        mid return", in [0, 1]; 0 makes returns independent of past flow.
    seed : int, default 0
        Non-negative; with the other arguments it fixes every byte written.
    calendar : str, default "CME_Equity"
        pandas-market-calendars name (or ``24/7``) giving trading days and session bounds.
    events_per_second : float, default DEFAULT_EVENTS_PER_SECOND
        Session-average rate of book events (trades included), before the intraday shape.

    Returns
    -------
    list[Path]
        The archives written, sorted.
    """
    _check_arguments(start, end, symbols, signal, seed, events_per_second)
    trading_calendar = TradingCalendar(calendar)
    sessions = trading_calendar.sessions(start, end)
    if not sessions:
        raise ValueError(
            f"no trading day of calendar {calendar!r} in [{start}, {end}]: nothing to simulate; "
            "widen the range or pick another calendar"
        )
    written = []
    for symbol in symbols:
        written += _simulate_symbol(
            out_dir, trading_calendar, sessions, symbol, signal, seed, events_per_second
        )
    return sorted(written)


def _simulate_symbol(
    out_dir: Path,
    trading_calendar: TradingCalendar,
    sessions: list[Session],
    symbol: str,
    signal: float,
    seed: int,
    events_per_second: float,
) -> list[Path]:
    """Simulates the sessions in order, writing each UTC day's archive once it is complete."""
    simulation = {
        "generator": "hft_pipeline.simulate",
        "root": symbol,
        "seed": seed,
        "signal": signal,
        "events_per_second": events_per_second,
        "calendar": trading_calendar.name,
    }
    written = []
    pending: dict[dt.date, list[tuple[Contract, np.ndarray]]] = {}
    for session in sessions:
        for contract, records in _session_records(
            trading_calendar, session, symbol, signal, seed, events_per_second
        ):
            for utc_day, part in _split_by_utc_day(records):
                pending.setdefault(utc_day, []).append((contract, part))
        # Later sessions start on or after this session's last UTC day: earlier days are done.
        done = sorted(day for day in pending if day < session.utc_days[-1])
        written += [_write_day(out_dir, day, symbol, pending.pop(day), simulation) for day in done]
    written += [
        _write_day(out_dir, day, symbol, pending.pop(day), simulation) for day in sorted(pending)
    ]
    return written


def _check_arguments(
    start: dt.date,
    end: dt.date,
    symbols: Sequence[str],
    signal: float,
    seed: int,
    events_per_second: float,
) -> None:
    if start > end:
        raise ValueError(f"start {start} is after end {end}; swap them")
    if start < PRICE_EPOCH:
        raise ValueError(f"start {start} is before {PRICE_EPOCH}, the simulator's first day")
    if not symbols:
        raise ValueError("no symbols to simulate; pass root symbols such as ES,ZN")
    for symbol in symbols:
        market_profile(symbol)
        root_spec(symbol)
    if not 0.0 <= signal <= 1.0:
        raise ValueError(f"signal must lie in [0, 1], found {signal}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, found {seed}")
    if not events_per_second > 0:
        raise ValueError(f"events_per_second must be positive, found {events_per_second}")


def _session_records(
    trading_calendar: TradingCalendar,
    session: Session,
    symbol: str,
    signal: float,
    seed: int,
    events_per_second: float,
) -> list[tuple[Contract, np.ndarray]]:
    """The session's records per contract: the front one, plus the outgoing one after a roll."""
    profile = market_profile(symbol)
    front = front_contract(symbol, session.day)
    outgoing = front_contract(symbol, trading_calendar.previous_trading_day(session.day))
    start_ticks = _opening_ticks(profile, symbol, seed, session.day)
    plan = [(front, 1.0, start_ticks)]
    if outgoing != front:
        plan.append((outgoing, OUTGOING_ACTIVITY, round(start_ticks * (1 - OUTGOING_DISCOUNT))))
    found = []
    for contract, activity, ticks in plan:
        spec = SessionSpec(
            open_ns=session.open_ns,
            close_ns=session.close_ns,
            start_ticks=ticks,
            tick=root_spec(symbol).tick,
            utc_offset_s=_chicago_offset_s(session.close_ns),
            instrument_id=contract.instrument_id,
            first_sequence=(session.day.weekday() + 1) * SEQUENCE_SPACING,
            activity=activity,
        )
        key = [seed, zlib.crc32(symbol.encode()), zlib.crc32(contract.code.encode())]
        rng = np.random.default_rng([*key, session.day.toordinal()])
        records = simulate_session(
            profile, spec, rng, signal=signal, events_per_second=events_per_second
        )
        if records.size and records["sequence"][-1] - spec.first_sequence >= SEQUENCE_SPACING:
            raise ValueError(
                f"{contract.code} on {session.day}: {records.size} records overflow the "
                f"{SEQUENCE_SPACING} sequence numbers of a day; lower events_per_second"
            )
        found.append((contract, records))
    return found


def _opening_ticks(profile: MarketProfile, symbol: str, seed: int, day: dt.date) -> int:
    """The latent mid at the session open, in ticks: the profile price times exp(AR(1)), the
    AR(1) stepping once per calendar day from PRICE_EPOCH with the profile's daily volatility."""
    rng = np.random.default_rng([seed, zlib.crc32(symbol.encode())])
    days = (day - PRICE_EPOCH).days + 1
    shocks = profile.daily_vol * rng.standard_normal(days)
    weights = OPEN_PERSISTENCE ** np.arange(days)[::-1]
    log_level = float(weights @ shocks)
    return round(profile.price * np.exp(log_level) / root_spec(symbol).tick)


def _chicago_offset_s(instant_ns: int) -> int:
    """Chicago's UTC offset (seconds) at an instant; constant over a CME session, which never
    spans a daylight-saving change (they happen on Sunday 02:00, when CME is closed)."""
    instant = dt.datetime.fromtimestamp(instant_ns / 1e9, tz=dt.UTC)
    return int(_CHICAGO.utcoffset(instant).total_seconds())


def _split_by_utc_day(records: np.ndarray) -> list[tuple[dt.date, np.ndarray]]:
    """Cuts records (sorted by ts_recv) at UTC midnights."""
    days = records["ts_recv"].astype(np.int64) // _NS_PER_DAY
    cuts = np.flatnonzero(np.diff(days)) + 1
    return [
        (dt.date(1970, 1, 1) + dt.timedelta(days=int(part_days[0])), part)
        for part, part_days in zip(np.split(records, cuts), np.split(days, cuts), strict=True)
        if part.size
    ]


def _write_day(
    out_dir: Path,
    utc_day: dt.date,
    symbol: str,
    parts: list[tuple[Contract, np.ndarray]],
    simulation: dict,
) -> Path:
    contracts = list(dict.fromkeys(contract for contract, _ in parts))
    records = np.concatenate([part for _, part in parts])
    if len(contracts) > 1:  # a roll session: two contracts interleave in time
        records = records[np.argsort(records["ts_recv"], kind="stable")]
    return write_archive(out_dir, utc_day, symbol, records, contracts, simulation)
