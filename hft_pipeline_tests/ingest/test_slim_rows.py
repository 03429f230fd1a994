"""DBN records -> SLIM rows: bars known at their close, book levels, refused layouts."""

from __future__ import annotations

import io

import databento_dbn
import numpy as np
import pytest

from hft_pipeline.ingest.dbn_layout import (
    MBP10_DTYPE,
    RTYPE_OHLCV_1D,
    RTYPE_OHLCV_1H,
    RTYPE_OHLCV_1M,
    RTYPE_OHLCV_1S,
    TRADE_DTYPE,
)
from hft_pipeline.ingest.decode import iter_record_chunks, read_dbn_header
from hft_pipeline.ingest.slim_rows import (
    bar_interval_ns,
    records_to_slim_table,
    slim_ts_recv,
    traded_volume,
)
from hft_pipeline.ingest.slim_schema import SLIM_SCHEMA
from hft_pipeline_tests.ingest.dbn_builders import (
    make_mbo_records,
    make_ohlcv_records,
    make_records,
    read_zstd,
    session_times,
)

MINUTE_NS = 60 * 10**9
BAR_COLUMNS = {
    *("ts_recv", "ts_event", "symbol", "raw_symbol", "instrument_id"),
    *("open", "high", "low", "close", "volume"),
}


@pytest.mark.parametrize(
    ("schema", "interval_ns"),
    [
        ("ohlcv-1s", 10**9),
        ("ohlcv-1m", MINUTE_NS),
        ("ohlcv-1h", 60 * MINUTE_NS),
        ("ohlcv-1d", 1_440 * MINUTE_NS),
        ("mbp-10", None),
        ("mbo", None),
        ("definition", None),
    ],
)
def test_bar_interval_ns_bar_schemas_only(schema, interval_ns):
    assert bar_interval_ns(schema) == interval_ns


def test_records_to_slim_table_minute_bars_are_known_at_their_close():
    opens = [1_609_801_200 * 10**9 + minute * MINUTE_NS for minute in range(3)]
    bars = make_ohlcv_records(RTYPE_OHLCV_1M, opens, [3700.0, 3700.25, 3699.5])

    table = records_to_slim_table(bars, "ESH1", "ES")

    assert table.schema == SLIM_SCHEMA
    assert table.column("ts_event").to_pylist() == opens
    assert table.column("ts_recv").to_pylist() == [start + MINUTE_NS for start in opens]
    assert table.column("close").to_pylist() == [3700.0, 3700.25, 3699.5]
    assert table.column("open").to_pylist() == [3699.75, 3700.0, 3699.25]
    assert table.column("high").to_pylist() == [3700.25, 3700.5, 3699.75]
    assert table.column("low").to_pylist() == [3699.5, 3699.75, 3699.0]
    assert table.column("volume").to_pylist() == [10, 10, 10]
    assert table.column("raw_symbol").to_pylist() == ["ESH1"] * 3
    assert table.column("instrument_id").to_pylist() == [5482] * 3
    for name in set(table.column_names) - BAR_COLUMNS:
        assert table.column(name).null_count == 3, name


@pytest.mark.parametrize(
    ("rtype", "interval_ns"),
    [
        (RTYPE_OHLCV_1S, 10**9),
        (RTYPE_OHLCV_1H, 60 * MINUTE_NS),
        (RTYPE_OHLCV_1D, 1_440 * MINUTE_NS),
    ],
)
def test_records_to_slim_table_bar_interval_follows_the_record_type(rtype, interval_ns):
    bars = make_ohlcv_records(rtype, [0], [3700.0])

    table = records_to_slim_table(bars, "ESH1", "ES")

    assert table.column("ts_recv").to_pylist() == [interval_ns]


def test_records_to_slim_table_mbp10_levels_fill_book_columns_and_trades():
    records = make_records(MBP10_DTYPE, session_times(2), actions=[b"A", b"T"], sizes=[3, 4])

    table = records_to_slim_table(records, "ESH1", "ES")

    assert table.column("bid_px_00").to_pylist() == [3699.75, 3700.0]
    assert table.column("ask_px_09").to_pylist() == [3702.25, 3702.5]
    assert table.column("bid_ct_09").to_pylist() == [10, 10]
    assert table.column("trade_sz").to_pylist() == [None, 4]
    assert table.column("trade_side").to_pylist() == [None, "A"]
    assert table.column("close").null_count == 2


def test_records_to_slim_table_mbo_events_refused_with_the_way_out():
    events = make_mbo_records([("A", "B", 1, 3700.0, 1)])

    with pytest.raises(ValueError, match="1 MBO order events of ESH1 cannot .*MboBookReplay"):
        records_to_slim_table(events, "ESH1", "ES")


def test_traded_volume_bars_sum_volume_and_trades_sum_trade_sizes():
    bars = make_ohlcv_records(RTYPE_OHLCV_1M, [0, MINUTE_NS], [3700.0, 3700.25])
    trades = make_records(
        TRADE_DTYPE, session_times(3), actions=[b"T", b"A", b"T"], sizes=[2, 5, 3]
    )

    assert (traded_volume(bars), traded_volume(trades)) == (20, 5)


def test_records_to_slim_table_real_minute_bars_keep_prices_and_close_times(shared_data):
    data = read_zstd(shared_data / "dbn-glbx-es-fixtures" / "test_data.ohlcv-1m.dbn.zst")
    decoder = databento_dbn.DBNDecoder()
    decoder.write(data)
    expected = decoder.decode()[1:]
    stream = io.BytesIO(data)
    header = read_dbn_header(stream)

    table = records_to_slim_table(
        np.concatenate(list(iter_record_chunks(stream, header))), "ESH1", "ES"
    )

    assert table.column("close").to_pylist() == [bar.close / 1e9 for bar in expected]
    assert table.column("volume").to_pylist() == [bar.volume for bar in expected]
    assert table.column("ts_recv").to_pylist() == [
        bar.ts_event + bar_interval_ns(header.schema) for bar in expected
    ]


def test_slim_ts_recv_receive_time_or_bar_close():
    bars = make_ohlcv_records(RTYPE_OHLCV_1S, [5, 7], [3700.0, 3700.25])
    trades = make_records(TRADE_DTYPE, [11, 12])

    assert slim_ts_recv(bars).tolist() == [10**9 + 5, 10**9 + 7]
    assert slim_ts_recv(trades).tolist() == [11, 12]


def test_slim_ts_recv_unknown_bar_type_raises():
    bars = make_ohlcv_records(0x11, [0], [3700.0])  # DBN's retired interval-less OHLCV type

    with pytest.raises(ValueError, match=r"bars with rtype \[17\], not one of the OHLCV"):
        slim_ts_recv(bars)
