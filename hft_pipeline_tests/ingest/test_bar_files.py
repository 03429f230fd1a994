"""Plain OHLCV bar files -> SLIM rows per session: the real CME 6E minute bars and small files
in seed 002's shape (1-second bars, int64 ns timestamps, a contract column)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hft_pipeline.ingest import slim_schema
from hft_pipeline.ingest.bar_files import (
    BarFileError,
    BarFileOptions,
    bar_metadata,
    iter_bar_sessions,
)
from hft_pipeline.ingest.slim_schema import SLIM_SCHEMA
from hft_pipeline.partitions import TradingCalendar

SIX_E = "cme-1min-6e/6EH4.XCME_1min_bars_20240101_20240131.csv.gz"
MINUTE_NS, SECOND_NS = 60 * 10**9, 10**9
CME = TradingCalendar("CME_Equity")
# Two 1-second bars at the end of Tuesday 2024-01-09's CME session (it closes 22:00 UTC) and two
# at the start of Wednesday's (it opens 23:00 UTC).
SECOND_BARS = pd.DataFrame(
    {
        "timestamp": pd.to_datetime(
            [
                "2024-01-09 21:59:58",
                "2024-01-09 21:59:59",
                "2024-01-09 23:00:00",
                "2024-01-09 23:00:01",
            ]
        ).as_unit("ns"),
        "open": [4780.25, 4780.5, 4781.0, 4781.25],
        "high": [4780.5, 4780.75, 4781.25, 4781.5],
        "low": [4780.0, 4780.25, 4780.75, 4781.0],
        "close": [4780.5, 4780.5, 4781.25, 4781.5],
        "volume": [12, 3, 40, 7],
        "symbol": ["MESH4"] * 4,
    }
)


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    frame = frame.assign(timestamp=frame["timestamp"].astype("int64"))  # seed 002: int64 ns
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def write_csv(text: str, path: Path) -> Path:
    path.write_text(text)
    return path


def sessions_of(
    path: Path, calendar: TradingCalendar = CME, symbol: str | None = None, **options
) -> list:
    return list(iter_bar_sessions(path, symbol, calendar, BarFileOptions(**options)))


def test_six_e_minute_bars_split_into_their_22_sessions_and_the_next_start(
    shared_data: Path,
) -> None:
    sessions = sessions_of(shared_data / SIX_E, TradingCalendar("CMEGlobex_FX"))

    days = [bars.session.day.isoformat() for bars in sessions]
    assert len(days) == 23 and days[0] == "2024-01-02" and days[-1] == "2024-02-01"
    assert sum(bars.table.num_rows for bars in sessions) == 29_996
    assert [bars.partial for bars in sessions] == [False] * 22 + [True]
    first = sessions[0].table.slice(0, 1).to_pylist()[0]
    # The file stamps bars at their close: "2024-01-01 23:01:00" is the 23:00-23:01 bar.
    assert first["ts_event"] == pd.Timestamp("2024-01-01 23:00", tz="UTC").value
    assert first["ts_recv"] == first["ts_event"] + MINUTE_NS
    assert (first["symbol"], first["raw_symbol"], sessions[0].contract) == ("6E", "6EH4", "6EH4")
    assert (first["open"], first["high"], first["volume"]) == (1.1076, 1.10785, 205)


def test_six_e_prices_equal_the_decimal_text_exactly(shared_data: Path) -> None:
    with gzip.open(shared_data / SIX_E, "rt") as text:
        source = pd.read_csv(text, dtype={name: str for name in ("open", "high", "low", "close")})

    sessions = sessions_of(shared_data / SIX_E, TradingCalendar("CMEGlobex_FX"))

    table = pa.concat_tables(bars.table for bars in sessions)
    for name in ("open", "high", "low", "close"):
        expected = np.array([float(value) for value in source[name]])
        assert np.array_equal(table.column(name).to_numpy(), expected), name
        ticks = table.column(name).to_numpy() / 0.00005
        assert np.abs(ticks - np.rint(ticks)).max() < 1e-6


def test_six_e_on_cme_equity_leaves_out_bars_after_the_mlk_early_close(
    shared_data: Path,
) -> None:
    sessions = sessions_of(shared_data / SIX_E)

    by_day = {bars.session.day.isoformat(): bars for bars in sessions}
    assert sum(bars.table.num_rows for bars in sessions) == 29_996 - 155
    assert by_day["2024-01-16"].skipped_bars == 155
    assert sum(bars.skipped_bars for bars in sessions) == 155


def test_second_bars_parquet_open_stamped_split_by_session(tmp_path: Path) -> None:
    path = write_parquet(SECOND_BARS, tmp_path / "MES_1s.parquet")

    sessions = sessions_of(path)

    assert [(bars.session.day.isoformat(), bars.table.num_rows) for bars in sessions] == [
        ("2024-01-09", 2),
        ("2024-01-10", 2),
    ]
    table = pa.concat_tables(bars.table for bars in sessions)
    stamps = SECOND_BARS["timestamp"].astype("int64").tolist()
    assert table.schema == SLIM_SCHEMA
    assert table.column("ts_event").to_pylist() == stamps
    assert table.column("ts_recv").to_pylist() == [stamp + SECOND_NS for stamp in stamps]
    assert table.column("symbol").unique().to_pylist() == ["MES"]
    assert table.column("raw_symbol").unique().to_pylist() == ["MESH4"]
    assert table.column("sequence").to_pylist() == [1, 2, 3, 4]
    assert table.column("close").to_pylist() == SECOND_BARS["close"].tolist()


def test_second_bars_in_chunks_of_two_give_the_same_sessions(tmp_path: Path) -> None:
    path = write_parquet(SECOND_BARS, tmp_path / "MES_1s.parquet")

    whole, chunked = sessions_of(path), sessions_of(path, chunk_rows=2)

    assert [bars.table for bars in chunked] == [bars.table for bars in whole]


def test_bar_metadata_records_interval_and_session(tmp_path: Path) -> None:
    path = write_parquet(SECOND_BARS, tmp_path / "MES_1s.parquet")
    first = sessions_of(path)[0]

    metadata = bar_metadata(first, "MES", [{"archive": path.name, "member": None}])

    assert metadata[slim_schema.META_BAR_INTERVAL_NS] == str(SECOND_NS)
    assert metadata[slim_schema.META_CONTRACT] == "MESH4"
    assert metadata[slim_schema.META_TICK_SIZE] == "0.25"
    assert metadata[slim_schema.META_SESSION_CLOSE_NS] == str(first.session.close_ns)


def test_local_time_text_with_given_timezone_label_and_interval(tmp_path: Path) -> None:
    text = "Time,Open,High,Low,Close,Volume\n2024-01-09 09:00:00,4780.25,4780.5,4780,4780.5,5\n"
    path = write_csv(text, tmp_path / "bars.csv")

    (bars,) = sessions_of(
        path, symbol="ES", timezone="America/Chicago", label="close", interval_ns=5 * MINUTE_NS
    )

    row = bars.table.to_pylist()[0]
    assert row["ts_recv"] == pd.Timestamp("2024-01-09 15:00", tz="UTC").value
    assert row["ts_event"] == row["ts_recv"] - 5 * MINUTE_NS


def test_price_off_the_tick_grid_raises_naming_file_and_row(tmp_path: Path) -> None:
    text = (
        "timestamp,open,high,low,close,volume\n"
        "2024-01-09T14:30:00Z,4780.25,4780.5,4780,4780.5,5\n"
        "2024-01-09T14:31:00Z,4780.25,4780.6,4780,4780.5,5\n"
    )
    path = write_csv(text, tmp_path / "ES_bars.csv")

    with pytest.raises(BarFileError, match=r"ES_bars.csv row 2: high 4780.6 is not a multiple"):
        sessions_of(path, symbol="ES")


def test_timestamp_text_that_does_not_parse_raises_naming_row(tmp_path: Path) -> None:
    text = (
        "timestamp,open,high,low,close,volume\n"
        "2024-01-09T14:30:00Z,4780.25,4780.5,4780,4780.5,5\n"
        "yesterday,4780.25,4780.5,4780,4780.5,5\n"
    )
    path = write_csv(text, tmp_path / "ES_bars.csv")

    with pytest.raises(BarFileError, match="ES_bars.csv row 2: timestamp 'yesterday'"):
        sessions_of(path, symbol="ES")


def test_bars_out_of_order_raise_naming_row(tmp_path: Path) -> None:
    shuffled = SECOND_BARS.iloc[[0, 2, 1, 3]]
    path = write_parquet(shuffled, tmp_path / "MES_1s.parquet")

    with pytest.raises(BarFileError, match="row 3: bar opens -3601000000000 ns after"):
        sessions_of(path)


def test_bar_file_without_symbol_anywhere_raises(tmp_path: Path) -> None:
    path = write_parquet(SECOND_BARS.drop(columns="symbol"), tmp_path / "bars.parquet")

    with pytest.raises(BarFileError, match="bars.parquet: no root symbol given"):
        sessions_of(path)
