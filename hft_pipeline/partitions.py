"""Trading calendar, symbols and rolling windows: the one source of truth for which days exist.

Trading days come from a pandas-market-calendars calendar (``CME_Equity`` by default) or ``24/7``.
A trading day's *session* is the calendar's [open, close) span in UTC; for CME it opens at
17:00 CT the evening before, so one session touches two UTC calendar days (Databento files).
With regular-trading-hours filtering (``trading_hours = "rth"``) the session is the part of that
span between the configured local open and close times (CME equity futures: 08:30-15:00 CT).
A session also carries the calendar's breaks inside it: CME equity futures halted daily for
maintenance at 15:15-15:30 CT until 2021-06-25; later days, and regular hours, have none.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

import dagster as dg
import pandas as pd
import pandas_market_calendars as mcal

from hft_pipeline.config import DataSettings

ALWAYS_OPEN = "24/7"
_NS_PER_DAY = 86_400 * 10**9
# Schedules are computed once over a wide span; lookups outside it extend it.
_SCHEDULE_PADDING_DAYS = 400


Break = tuple[int, int]  # [start_ns, end_ns) in UTC nanoseconds


@dataclass(frozen=True)
class Session:
    """One trading day's session: [open_ns, close_ns) in UTC nanoseconds, and its breaks.

    ``breaks`` are the calendar's scheduled halts inside the session, in order, each non-empty;
    empty when there is none. Only data checks read them (no data is expected in a break):
    feature bars stay a regular grid over [open_ns, close_ns), a break included.
    """

    day: dt.date
    open_ns: int
    close_ns: int
    breaks: tuple[Break, ...] = ()

    def __post_init__(self) -> None:
        edges = [self.open_ns, *(ns for interval in self.breaks for ns in interval), self.close_ns]
        empty = any(start >= end for start, end in self.breaks)
        if empty or edges != sorted(edges):
            raise ValueError(
                f"session of {self.day}: breaks {self.breaks} must be non-empty, ordered and "
                f"inside [{self.open_ns}, {self.close_ns}]"
            )

    @property
    def utc_days(self) -> list[dt.date]:
        """UTC calendar days the session overlaps: the Databento daily files it needs."""
        first = _utc_date(self.open_ns)
        last = _utc_date(self.close_ns - 1)
        return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


@dataclass(frozen=True)
class TradingHours:
    """Which part of each session is kept: the whole electronic session or regular hours."""

    kind: str = "eth"  # "eth" or "rth"
    rth_open: dt.time = dt.time(8, 30)  # exchange local time
    rth_close: dt.time = dt.time(15, 0)

    def __post_init__(self) -> None:
        if self.kind not in ("eth", "rth"):
            raise ValueError(f"trading_hours must be 'eth' or 'rth', found {self.kind!r}")
        if self.rth_open >= self.rth_close:
            raise ValueError(f"rth_open {self.rth_open} must be before rth_close {self.rth_close}")

    @classmethod
    def parse(cls, kind: str, rth_open: str, rth_close: str) -> TradingHours:
        """From the settings' text: kind, and HH:MM local times."""
        try:
            opens, closes = dt.time.fromisoformat(rth_open), dt.time.fromisoformat(rth_close)
        except ValueError as error:
            raise ValueError(
                f"rth_open/rth_close must be HH:MM, found {rth_open!r}/{rth_close!r}"
            ) from error
        return cls(kind.lower(), opens, closes)


ELECTRONIC_HOURS = TradingHours()


class TradingCalendar:
    """Trading days and sessions of one exchange calendar (or ``24/7``)."""

    def __init__(self, name: str, hours: TradingHours = ELECTRONIC_HOURS):
        self.name = name
        self.hours = hours
        self._exchange = None if name == ALWAYS_OPEN else _exchange_calendar(name)
        if hours.kind == "rth" and self._exchange is None:
            raise ValueError(f"regular trading hours need an exchange calendar, not {name!r}")

    @classmethod
    def from_settings(cls, data: DataSettings) -> TradingCalendar:
        """The calendar and trading hours of a :class:`~hft_pipeline.config.DataSettings`."""
        hours = TradingHours.parse(data.trading_hours, data.rth_open, data.rth_close)
        return cls(data.calendar, hours)

    def sessions(self, start: dt.date, end: dt.date) -> list[Session]:
        """Sessions of the trading days in [start, end], in order."""
        if start > end:
            return []
        if self._exchange is None:
            days = pd.date_range(start, end, freq="D")
            return [
                Session(d.date(), _day_start_ns(d.date()), _day_start_ns(d.date()) + _NS_PER_DAY)
                for d in days
            ]
        schedule = _schedule(self.name, start.year, end.year)
        schedule = schedule.loc[pd.Timestamp(start) : pd.Timestamp(end)]
        sessions = [
            _scheduled_session(index.date(), row)
            for index, row in zip(schedule.index, schedule.itertuples(), strict=True)
        ]
        if self.hours.kind == "eth":
            return sessions
        return [self._regular_hours(session) for session in sessions]

    def _regular_hours(self, session: Session) -> Session:
        """The session cut to [rth_open, rth_close) local time; an early close still ends it,
        and a break outside those hours disappears."""
        zone = self._exchange.tz

        def local_ns(time: dt.time) -> int:
            return int(pd.Timestamp.combine(session.day, time).tz_localize(zone).value)

        open_ns = max(session.open_ns, local_ns(self.hours.rth_open))
        close_ns = max(open_ns, min(session.close_ns, local_ns(self.hours.rth_close)))
        return Session(session.day, open_ns, close_ns, _clip(session.breaks, open_ns, close_ns))

    def trading_days(self, start: dt.date, end: dt.date) -> list[dt.date]:
        return [session.day for session in self.sessions(start, end)]

    def session(self, day: dt.date) -> Session:
        found = self.sessions(day, day)
        if not found:
            raise ValueError(f"{day} is not a trading day of calendar {self.name!r}")
        return found[0]

    def is_trading_day(self, day: dt.date) -> bool:
        return bool(self.sessions(day, day))

    def previous_trading_day(self, day: dt.date) -> dt.date:
        earlier = self.trading_days(day - dt.timedelta(days=14), day - dt.timedelta(days=1))
        if not earlier:
            raise ValueError(f"no trading day of {self.name!r} in the two weeks before {day}")
        return earlier[-1]

    def weekday_holidays(self, start: dt.date, end: dt.date) -> list[dt.date]:
        """Mondays-Fridays in [start, end] that are not trading days."""
        trading = set(self.trading_days(start, end))
        weekdays = pd.bdate_range(start, end)
        return [d.date() for d in weekdays if d.date() not in trading]

    @property
    def session_lead_days(self) -> int:
        """How many UTC days before its trading day a session may open (1 for CME)."""
        probe = self.sessions(dt.date(2024, 1, 2), dt.date(2024, 1, 31))
        return max((session.day - session.utc_days[0]).days for session in probe)


@functools.cache
def _exchange_calendar(name: str):
    try:
        return mcal.get_calendar(name)
    except (RuntimeError, KeyError) as error:
        raise ValueError(
            f"unknown calendar {name!r}: use a pandas-market-calendars name "
            f"(e.g. CME_Equity, CME_Bond, CMEGlobex_FX) or {ALWAYS_OPEN!r}"
        ) from error


def _scheduled_session(day: dt.date, row) -> Session:
    """A schedule row's session; its break columns (absent, NaT or zero-length when the
    calendar has no break that day, and past an early close) give at most one break."""
    open_ns, close_ns = int(row.market_open.value), int(row.market_close.value)
    start, end = getattr(row, "break_start", pd.NaT), getattr(row, "break_end", pd.NaT)
    if pd.isna(start) or pd.isna(end):
        return Session(day, open_ns, close_ns)
    return Session(day, open_ns, close_ns, _clip(((start.value, end.value),), open_ns, close_ns))


def _clip(breaks: tuple[Break, ...], open_ns: int, close_ns: int) -> tuple[Break, ...]:
    """The parts of ``breaks`` inside [open_ns, close_ns), empty ones dropped."""
    clipped = ((max(int(start), open_ns), min(int(end), close_ns)) for start, end in breaks)
    return tuple((start, end) for start, end in clipped if start < end)


@functools.cache
def _schedule(name: str, first_year: int, last_year: int) -> pd.DataFrame:
    return _exchange_calendar(name).schedule(
        dt.date(first_year, 1, 1) - dt.timedelta(days=_SCHEDULE_PADDING_DAYS),
        dt.date(last_year, 12, 31) + dt.timedelta(days=_SCHEDULE_PADDING_DAYS),
    )


def _utc_date(ns: int) -> dt.date:
    # Integer division: a float of ns cannot tell the last nanosecond of a day from midnight.
    return dt.date(1970, 1, 1) + dt.timedelta(days=ns // _NS_PER_DAY)


def _day_start_ns(day: dt.date) -> int:
    return int(pd.Timestamp(day, tz="UTC").value)


# --- Dagster partitions --------------------------------------------------------------------

DATE_DIMENSION = "date"
SYMBOL_DIMENSION = "symbol"
# Exclusions and holiday lists are built this far past "today" when the history has no end.
_OPEN_ENDED_HORIZON_DAYS = 3 * 366


def trading_day_partitions(
    calendar: TradingCalendar, start: dt.date, end: dt.date | None
) -> dg.DailyPartitionsDefinition:
    """Daily partitions whose keys are exactly the calendar's trading days in [start, end]."""
    first = calendar.trading_days(start, start + dt.timedelta(days=14))
    if not first:
        raise ValueError(f"no trading day of {calendar.name!r} within two weeks of {start}")
    horizon = end or dt.date.today() + dt.timedelta(days=_OPEN_ENDED_HORIZON_DAYS)
    exclusions: list[str | dt.datetime] = []
    if calendar.name != ALWAYS_OPEN:
        exclusions.append("0 0 * * 6,0")
        exclusions.extend(
            dt.datetime(d.year, d.month, d.day)
            for d in calendar.weekday_holidays(first[0], horizon)
        )
    return dg.DailyPartitionsDefinition(
        start_date=first[0].isoformat(),
        end_date=(end + dt.timedelta(days=1)).isoformat() if end else None,
        exclusions=exclusions or None,
    )


def utc_day_partitions(
    calendar: TradingCalendar, start: dt.date, end: dt.date | None
) -> dg.DailyPartitionsDefinition:
    """Every UTC calendar day that a session in [start, end] touches: Databento's daily files."""
    first = start - dt.timedelta(days=calendar.session_lead_days)
    return dg.DailyPartitionsDefinition(
        start_date=first.isoformat(),
        end_date=(end + dt.timedelta(days=1)).isoformat() if end else None,
    )


def symbol_partitions(symbols: tuple[str, ...]) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition(list(symbols))


def by_day_and_symbol(
    days: dg.DailyPartitionsDefinition, symbols: dg.StaticPartitionsDefinition
) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition({DATE_DIMENSION: days, SYMBOL_DIMENSION: symbols})


def session_archives_mapping(calendar: TradingCalendar) -> dg.MultiPartitionMapping:
    """(trading day D, symbol) -> (every UTC day its session touches, same symbol)."""
    return dg.MultiPartitionMapping(
        {
            DATE_DIMENSION: dg.DimensionPartitionMapping(
                DATE_DIMENSION,
                dg.TimeWindowPartitionMapping(start_offset=-calendar.session_lead_days),
            ),
            SYMBOL_DIMENSION: dg.DimensionPartitionMapping(
                SYMBOL_DIMENSION, dg.IdentityPartitionMapping()
            ),
        }
    )


def rolling_window_mapping(window_days: int) -> dg.TimeWindowPartitionMapping:
    """Window ending at D: D and the N-1 trading days before it (trading days, not calendar).

    Near the start of history Dagster returns fewer days without error; the model asset checks.
    """
    if window_days < 1:
        raise ValueError(f"window_days must be >= 1, found {window_days}")
    return dg.TimeWindowPartitionMapping(start_offset=-(window_days - 1), end_offset=0)


def previous_day_mapping() -> dg.TimeWindowPartitionMapping:
    """D -> the trading day before D (the model scored out of sample on D)."""
    return dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)


def date_key(day: dt.date) -> str:
    return day.isoformat()


def parse_date_key(key: str) -> dt.date:
    return dt.date.fromisoformat(key)


def multi_key(day: dt.date, symbol: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({DATE_DIMENSION: date_key(day), SYMBOL_DIMENSION: symbol})


def split_multi_key(key: str | dg.MultiPartitionKey) -> tuple[dt.date, str]:
    """``"2024-01-02|ES"`` -> (date, symbol): Dagster joins dimensions in name order."""
    date_part, symbol = str(key).split("|")
    return parse_date_key(date_part), symbol


@dataclass(frozen=True)
class PipelinePartitions:
    """The partition definitions of one code location, built once from the settings."""

    calendar: TradingCalendar
    trading_days: dg.DailyPartitionsDefinition
    utc_days: dg.DailyPartitionsDefinition
    symbols: dg.StaticPartitionsDefinition
    slim: dg.MultiPartitionsDefinition  # trading day x symbol
    raw: dg.MultiPartitionsDefinition  # UTC day x symbol

    @classmethod
    def build(
        cls,
        calendar_name: str,
        start: dt.date,
        end: dt.date | None,
        symbols: tuple[str, ...],
        hours: TradingHours = ELECTRONIC_HOURS,
    ) -> PipelinePartitions:
        calendar = TradingCalendar(calendar_name, hours)
        trading = trading_day_partitions(calendar, start, end)
        utc = utc_day_partitions(calendar, start, end)
        symbol_defs = symbol_partitions(symbols)
        return cls(
            calendar=calendar,
            trading_days=trading,
            utc_days=utc,
            symbols=symbol_defs,
            slim=by_day_and_symbol(trading, symbol_defs),
            raw=by_day_and_symbol(utc, symbol_defs),
        )

    @classmethod
    def from_settings(cls, data: DataSettings) -> PipelinePartitions:
        """The partitions of a :class:`~hft_pipeline.config.DataSettings`."""
        calendar = TradingCalendar.from_settings(data)
        return cls.build(data.calendar, data.start, data.end, data.symbols, calendar.hours)

    def window_days(self, end: dt.date, window_days: int) -> list[dt.date]:
        """The trading days of the window ending at `end`; fewer near the start of history."""
        keys = self.trading_days.get_partition_keys()
        position = keys.index(date_key(end))
        return [
            parse_date_key(key) for key in keys[max(0, position - window_days + 1) : position + 1]
        ]
