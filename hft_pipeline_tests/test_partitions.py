import datetime as dt

import dagster as dg
import pandas as pd
import pytest

from hft_pipeline.config import DataSettings
from hft_pipeline.partitions import (
    PipelinePartitions,
    Session,
    TradingCalendar,
    TradingHours,
    previous_day_mapping,
    rolling_window_mapping,
    session_archives_mapping,
)


@pytest.fixture(scope="module")
def cme() -> PipelinePartitions:
    return PipelinePartitions.build(
        "CME_Equity", dt.date(2024, 1, 2), dt.date(2024, 12, 31), ("ES", "ZN")
    )


def _upstream(mapping, downstream_def, upstream_def, key: str) -> list[str]:
    subset = downstream_def.subset_with_partition_keys([key])
    result = mapping.get_upstream_mapped_partitions_result_for_partitions(
        subset, downstream_def, upstream_def
    )
    return sorted(result.partitions_subset.get_partition_keys())


def test_trading_day_keys_equal_calendar_trading_days(cme: PipelinePartitions):
    keys = cme.trading_days.get_partition_keys()
    calendar_days = cme.calendar.trading_days(dt.date(2024, 1, 2), dt.date(2024, 12, 31))

    assert keys == [day.isoformat() for day in calendar_days]
    assert "2024-12-25" not in keys and "2024-01-06" not in keys  # holiday, Saturday
    assert "2024-01-15" in keys and "2024-11-28" in keys  # MLK, Thanksgiving: early closes


def test_cme_session_opens_the_evening_before_dst_correct():
    calendar = TradingCalendar("CME_Equity")
    winter, summer = calendar.session(dt.date(2024, 1, 8)), calendar.session(dt.date(2024, 7, 8))

    assert dt.datetime.fromtimestamp(winter.open_ns / 1e9, dt.UTC).hour == 23  # 17:00 CST
    assert dt.datetime.fromtimestamp(summer.open_ns / 1e9, dt.UTC).hour == 22  # 17:00 CDT
    assert winter.utc_days == [dt.date(2024, 1, 7), dt.date(2024, 1, 8)]


def test_always_open_calendar_has_every_day_and_utc_sessions():
    calendar = TradingCalendar("24/7")
    sessions = calendar.sessions(dt.date(2024, 1, 5), dt.date(2024, 1, 8))

    assert [s.day for s in sessions] == [dt.date(2024, 1, d) for d in (5, 6, 7, 8)]
    assert all(s.utc_days == [s.day] for s in sessions)
    assert calendar.session_lead_days == 0


def test_window_mapping_upstream_is_exactly_n_trading_days(cme: PipelinePartitions):
    days = _upstream(rolling_window_mapping(30), cme.trading_days, cme.trading_days, "2024-02-29")

    assert len(days) == 30
    assert days == [d.isoformat() for d in cme.window_days(dt.date(2024, 2, 29), 30)]
    assert days[0] == "2024-01-19"  # MLK and Presidents' Day trade on CME; weekends don't


def test_window_near_start_of_history_is_short(cme: PipelinePartitions):
    days = _upstream(rolling_window_mapping(30), cme.trading_days, cme.trading_days, "2024-01-05")

    assert days == ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]
    assert len(cme.window_days(dt.date(2024, 1, 5), 30)) == 4


def test_previous_day_mapping_skips_weekends_and_holidays(cme: PipelinePartitions):
    mapping = previous_day_mapping()

    assert _upstream(mapping, cme.trading_days, cme.trading_days, "2024-01-08") == ["2024-01-05"]
    assert _upstream(mapping, cme.trading_days, cme.trading_days, "2024-12-26") == ["2024-12-24"]


def test_session_archives_mapping_covers_both_utc_days(cme: PipelinePartitions):
    keys = _upstream(session_archives_mapping(cme.calendar), cme.slim, cme.raw, "2024-01-03|ZN")

    assert keys == ["2024-01-02|ZN", "2024-01-03|ZN"]


def test_unknown_calendar_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="unknown calendar 'NOPE'"):
        TradingCalendar("NOPE")


def test_multi_partition_keys_read_date_then_symbol(cme: PipelinePartitions):
    assert dg.MultiPartitionKey({"symbol": "ES", "date": "2024-01-02"}) == "2024-01-02|ES"
    assert "2024-01-02|ES" in cme.slim.get_partition_keys()


def test_regular_hours_cut_the_session_to_local_open_and_close_across_dst():
    regular = TradingCalendar("CME_Equity", TradingHours("rth"))
    for day, utc_open, utc_close in [
        (dt.date(2024, 1, 8), "2024-01-08 14:30", "2024-01-08 21:00"),  # CST, UTC-6
        (dt.date(2024, 7, 8), "2024-07-08 13:30", "2024-07-08 20:00"),  # CDT, UTC-5
    ]:
        session = regular.session(day)
        assert session.open_ns == pd.Timestamp(utc_open, tz="UTC").value
        assert session.close_ns == pd.Timestamp(utc_close, tz="UTC").value
        assert session.utc_days == [day]


def test_regular_hours_end_at_an_early_close():
    # Day after Thanksgiving 2024: CME equity futures close at 12:15 CT.
    day = dt.date(2024, 11, 29)
    electronic = TradingCalendar("CME_Equity").session(day)
    regular = TradingCalendar("CME_Equity", TradingHours("rth")).session(day)
    assert (
        regular.close_ns == electronic.close_ns < pd.Timestamp("2024-11-29 21:00", tz="UTC").value
    )


def test_trading_hours_from_settings_and_bad_values():
    data = DataSettings(trading_hours="RTH", rth_open="09:30", rth_close="16:00")
    calendar = TradingCalendar.from_settings(data)
    assert calendar.hours == TradingHours("rth", dt.time(9, 30), dt.time(16, 0))
    assert PipelinePartitions.from_settings(data).calendar.hours == calendar.hours
    with pytest.raises(ValueError, match="'eth' or 'rth'"):
        TradingHours("night")
    with pytest.raises(ValueError, match="HH:MM"):
        TradingHours.parse("rth", "8h30", "15:00")
    with pytest.raises(ValueError, match="exchange calendar"):
        TradingCalendar("24/7", TradingHours("rth"))


def _utc_ns(text: str) -> int:
    return pd.Timestamp(text, tz="UTC").value


def test_cme_2020_session_carries_the_maintenance_break_dst_correct():
    calendar = TradingCalendar("CME_Equity")

    winter = calendar.session(dt.date(2020, 3, 4)).breaks  # CST, UTC-6
    summer = calendar.session(dt.date(2020, 7, 8)).breaks  # CDT, UTC-5

    assert winter == ((_utc_ns("2020-03-04 21:15"), _utc_ns("2020-03-04 21:30")),)
    assert summer == ((_utc_ns("2020-07-08 20:15"), _utc_ns("2020-07-08 20:30")),)


def test_cme_sessions_without_a_break_have_none():
    electronic, regular = (
        TradingCalendar("CME_Equity"),
        TradingCalendar("CME_Equity", TradingHours("rth")),
    )

    assert electronic.session(dt.date(2024, 3, 5)).breaks == ()  # halt ended June 2021
    assert electronic.session(dt.date(2020, 11, 27)).breaks == ()  # closes 12:15 CT
    assert regular.session(dt.date(2020, 3, 4)).breaks == ()  # 15:15 is after the 15:00 close
    assert TradingCalendar("24/7").session(dt.date(2020, 3, 4)).breaks == ()


def test_session_break_outside_the_session_is_refused():
    with pytest.raises(ValueError, match="must be non-empty, ordered and inside"):
        Session(dt.date(2020, 3, 4), 10, 20, breaks=((15, 25),))
    with pytest.raises(ValueError, match="must be non-empty"):
        Session(dt.date(2020, 3, 4), 10, 20, breaks=((15, 15),))
