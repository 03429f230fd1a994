"""LOBSTER message + orderbook pairs -> SLIM rows, on the three real samples and tiny pairs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from hft_pipeline.ingest import slim_schema
from hft_pipeline.ingest.lobster import (
    LobsterError,
    LobsterPair,
    iter_lobster_tables,
    lobster_metadata,
    pair_lobster_files,
)
from hft_pipeline.ingest.slim_schema import SLIM_SCHEMA

LOBSTER = "lobster-nasdaq-2012-06-21"
SAMPLES = [("GOOG", 10, 147_916), ("AMZN", 5, 155_935), ("AAPL", 1, 118_497)]
# Midnight New York on 2012-06-21 (EDT, UTC-4), ns since epoch.
MIDNIGHT_NS = 1_340_251_200 * 10**9
# 09:30 and 16:00 New York that day.
SESSION_NS = (MIDNIGHT_NS + 34_200 * 10**9, MIDNIGHT_NS + 57_600 * 10**9)
TINY_PAIR = LobsterPair(
    "TEST", dt.date(2012, 6, 21), 34_200_000, 57_600_000, 2, "message.csv", "orderbook.csv"
)
EMPTY_LEVEL_2 = "9999999999,0,-9999999999,0"


def sample_zip(shared_data: Path, ticker: str, levels: int) -> Path:
    return shared_data / LOBSTER / f"LOBSTER_SampleFile_{ticker}_2012-06-21_{levels}.zip"


def read_sample(shared_data: Path, ticker: str, levels: int, **options: int) -> pa.Table:
    archive = sample_zip(shared_data, ticker, levels)
    with zipfile.ZipFile(archive) as opened:
        (pair,) = pair_lobster_files(opened.namelist())
        with opened.open(pair.message) as message, opened.open(pair.orderbook) as orderbook:
            return pa.concat_tables(iter_lobster_tables(message, orderbook, pair, **options))


def read_tiny(messages: list[str], books: list[str]) -> pa.Table:
    message = io.BytesIO("".join(f"{row}\n" for row in messages).encode())
    orderbook = io.BytesIO("".join(f"{row}\n" for row in books).encode())
    return pa.concat_tables(iter_lobster_tables(message, orderbook, TINY_PAIR))


@pytest.mark.parametrize(("ticker", "levels", "rows"), SAMPLES)
def test_lobster_sample_gives_every_row_in_time_order_within_the_session(
    shared_data: Path, ticker: str, levels: int, rows: int
) -> None:
    table = read_sample(shared_data, ticker, levels)

    ts = table.column("ts_recv").to_numpy()
    assert table.schema == SLIM_SCHEMA
    assert table.num_rows == rows
    assert table.column("sequence").to_pylist() == list(range(1, rows + 1))
    assert np.all(np.diff(ts) >= 0)
    assert SESSION_NS[0] <= ts[0] and ts[-1] < SESSION_NS[1]
    assert table.column("ts_event").equals(table.column("ts_recv"))
    assert set(table.column("symbol").unique().to_pylist()) == {ticker}
    assert table.column(f"bid_px_{levels - 1:02d}").null_count < rows
    if levels < slim_schema.BOOK_LEVELS:
        assert table.column(f"bid_px_{levels:02d}").null_count == rows


def test_lobster_hand_checked_first_row_of_amzn(shared_data: Path) -> None:
    # message: 34200.017459617,5,0,1,2238200,-1 (hidden execution of a sell limit order)
    # book: 2239500,100,2231800,100,2239900,100,2230700,200,2240000,220,...
    first = read_sample(shared_data, "AMZN", 5).slice(0, 1).to_pylist()[0]

    assert first["ts_recv"] == MIDNIGHT_NS + 34_200_017_459_617
    assert (first["action"], first["trade_side"]) == ("T", "B")
    assert (first["trade_px"], first["trade_sz"]) == (223.82, 1)
    assert (first["ask_px_00"], first["ask_sz_00"]) == (223.95, 100)
    assert (first["bid_px_00"], first["bid_sz_00"]) == (223.18, 100)
    assert (first["ask_px_01"], first["bid_px_01"]) == (223.99, 223.07)
    assert first["bid_ct_00"] is None and first["instrument_id"] is None


def test_lobster_time_with_12_decimals_rounds_to_the_nanosecond(shared_data: Path) -> None:
    table = read_sample(shared_data, "AMZN", 5)

    # Row 67823 of the message file reads 43002.632812672004.
    assert table.column("ts_recv")[67_822].as_py() == MIDNIGHT_NS + 43_002_632_812_672


def test_lobster_aapl_prices_equal_the_source_integers_exactly(shared_data: Path) -> None:
    with zipfile.ZipFile(sample_zip(shared_data, "AAPL", 1)) as opened:
        (pair,) = pair_lobster_files(opened.namelist())
        book = pd.read_csv(opened.open(pair.orderbook), header=None).to_numpy()
        message = pd.read_csv(opened.open(pair.message), header=None)
    table = read_sample(shared_data, "AAPL", 1)

    executed = message[1].isin([4, 5]).to_numpy()
    assert np.array_equal(table.column("ask_px_00").to_numpy(), book[:, 0] / 10_000)
    assert np.array_equal(table.column("bid_px_00").to_numpy(), book[:, 2] / 10_000)
    assert np.array_equal(table.column("bid_sz_00").to_numpy(), book[:, 3])
    trade_px = table.column("trade_px").to_numpy(zero_copy_only=False)
    assert np.array_equal(trade_px[executed], message[4].to_numpy()[executed] / 10_000)
    assert np.isnan(trade_px[~executed]).all()


def test_lobster_small_blocks_give_the_same_rows(shared_data: Path) -> None:
    whole = read_sample(shared_data, "AAPL", 1)

    pieces = read_sample(shared_data, "AAPL", 1, block_bytes=65_537)

    assert pieces.equals(whole)


def test_lobster_actions_sides_and_empty_levels() -> None:
    book = f"2239500,100,2231800,100,{EMPTY_LEVEL_2}"
    messages = [
        "34200.1,1,11,100,2231800,1",
        "34200.2,2,11,50,2231800,1",
        "34200.3,3,11,50,2231800,1",
        "34200.4,4,12,10,2239500,-1",
        "34200.5,5,0,20,2231800,1",
        "34200.6,6,0,30,2235000,-1",
        "34200.7,7,0,0,-1,-1",
    ]

    table = read_tiny(messages, [book] * len(messages))

    assert table.column("action").to_pylist() == ["A", "C", "C", "T", "T", "T", "N"]
    assert table.column("trade_side").to_pylist() == [None, None, None, "B", "A", "N", None]
    assert table.column("trade_px").to_pylist()[3:6] == [223.95, 223.18, 223.5]
    assert table.column("ask_px_01").to_pylist() == [None] * 7
    assert table.column("bid_sz_01").to_pylist() == [0] * 7


def test_lobster_time_going_backwards_raises_naming_row() -> None:
    book = f"2239500,100,2231800,100,{EMPTY_LEVEL_2}"
    messages = ["34200.2,1,1,1,2231800,1", "34200.1,1,2,1,2231800,1"]

    with pytest.raises(LobsterError, match="message.csv row 2: time goes backwards"):
        read_tiny(messages, [book, book])


def test_lobster_unknown_message_type_raises_naming_row() -> None:
    book = f"2239500,100,2231800,100,{EMPTY_LEVEL_2}"

    with pytest.raises(LobsterError, match="row 1: message type 9 is not one of 1..7"):
        read_tiny(["34200.1,9,1,1,2231800,1"], [book])


def test_lobster_files_of_different_lengths_raise() -> None:
    book = f"2239500,100,2231800,100,{EMPTY_LEVEL_2}"

    with pytest.raises(LobsterError, match="orderbook.csv has more rows.*after row 1"):
        read_tiny(["34200.1,1,1,1,2231800,1"], [book, book])


def test_lobster_orderbook_of_another_width_raises() -> None:
    with pytest.raises(LobsterError, match="orderbook.csv: .*does not parse as 8 numbers"):
        read_tiny(["34200.1,1,1,1,2231800,1"], ["2239500,100,2231800,100"])


def test_pair_lobster_files_without_partner_raises() -> None:
    with pytest.raises(LobsterError, match="has no matching orderbook file"):
        pair_lobster_files(["X_2012-06-21_34200000_57600000_message_1.csv"])


def test_lobster_metadata_partial_when_the_span_misses_the_close() -> None:
    short = LobsterPair("TEST", dt.date(2012, 6, 21), 34_200_000, 45_000_000, 1, "m", "o")

    full, cut = lobster_metadata(TINY_PAIR, []), lobster_metadata(short, [])

    assert json.loads(full[slim_schema.META_PARTIAL]) is False
    assert json.loads(cut[slim_schema.META_PARTIAL]) is True
    assert full[slim_schema.META_TICK_SIZE] == "0.01"
    assert full[slim_schema.META_SESSION_OPEN_NS] == str(SESSION_NS[0])
    assert full[slim_schema.META_SESSION_CLOSE_NS] == str(SESSION_NS[1])


@pytest.mark.parametrize("levels", range(1, 11))
def test_lobster_every_depth_from_1_to_10_reads_the_first_levels_of_goog(
    shared_data: Path, levels: int
) -> None:
    """A LOBSTER file of N levels is the first 4N columns of the 10-level one: cut the real
    GOOG day's first rows to each depth, read, compare with the 10-level read."""
    with zipfile.ZipFile(sample_zip(shared_data, "GOOG", 10)) as opened:
        (pair,) = pair_lobster_files(opened.namelist())
        messages = opened.read(pair.message).decode().splitlines()[:3_000]
        books = opened.read(pair.orderbook).decode().splitlines()[:3_000]
    cut_books = [",".join(row.split(",")[: 4 * levels]) for row in books]
    message_bytes = "".join(f"{row}\n" for row in messages).encode()

    def read(rows: list[str], depth: int) -> pa.Table:
        book_bytes = "".join(f"{row}\n" for row in rows).encode()
        shallow = dataclasses.replace(pair, levels=depth)
        tables = iter_lobster_tables(io.BytesIO(message_bytes), io.BytesIO(book_bytes), shallow)
        return pa.concat_tables(tables)

    full, cut = read(books, 10), read(cut_books, levels)

    for level in range(10):
        for name in (
            f"{side}_{kind}_{level:02d}" for side in ("bid", "ask") for kind in ("px", "sz")
        ):
            if level < levels:
                assert cut.column(name).equals(full.column(name)), name
            else:
                assert cut.column(name).null_count == cut.num_rows, name
    others = [name for name in SLIM_SCHEMA.names if not name.startswith(("bid_", "ask_"))]
    assert cut.select(others).equals(full.select(others))
    assert cut.num_rows == 3_000
