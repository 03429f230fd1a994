"""Databento CSV -> DBN record arrays, checked record by record against the DBN decode of the
same real files, with the CSV written by databento's own encoder."""

from __future__ import annotations

import io
from pathlib import Path

import databento
import numpy as np
import pytest
import zstandard

from hft_pipeline.ingest.databento_csv import (
    DatabentoCsvError,
    iter_csv_chunks,
    iter_csv_record_chunks,
)
from hft_pipeline.ingest.dbn_layout import UNDEF_PRICE
from hft_pipeline.ingest.decode import iter_record_chunks, read_dbn_header

FIXTURES = "dbn-glbx-es-fixtures"
SLICES = "dbn-glbx-es-slices"
REAL_FILES = [
    (FIXTURES, "test_data.mbp-10.dbn.zst"),
    (FIXTURES, "test_data.mbp-1.dbn.zst"),
    (FIXTURES, "test_data.tbbo.dbn.zst"),
    (FIXTURES, "test_data.trades.dbn.zst"),
    (FIXTURES, "test_data.ohlcv-1s.dbn.zst"),
    (FIXTURES, "test_data.ohlcv-1m.dbn.zst"),
    (FIXTURES, "test_data.ohlcv-1h.dbn.zst"),
    (FIXTURES, "test_data.ohlcv-1d.dbn.zst"),
    (FIXTURES, "test_data.mbo.dbn.zst"),
    (SLICES, "orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst"),  # DBN v1
    (SLICES, "futures_mbp-1_2024-07-01T23-58_2024-07-02T00-02.dbn.zst"),  # DBN v1
    (SLICES, "futures_trades_2024-07-01T23-58_2024-07-02T00-02.dbn.zst"),
    (SLICES, "futures_ohlcv-1m_2024-07-01T23-40_2024-07-02T00-10.dbn.zst"),
]
TEXT_FORMS = {
    "pretty": {"pretty_px": True, "pretty_ts": True, "map_symbols": True},
    "raw": {"pretty_px": False, "pretty_ts": False, "map_symbols": False},
    "pretty_px_raw_ts": {"pretty_px": True, "pretty_ts": False, "map_symbols": False},
}
TRADES_HEADER = (
    "ts_recv,ts_event,rtype,publisher_id,instrument_id,action,side,depth,price,size,flags,"
    "ts_in_delta,sequence\n"
)


def dbn_records(path: Path) -> tuple[str, np.ndarray]:
    """The file's schema and its records as our DBN decoder reads them."""
    with zstandard.ZstdDecompressor().stream_reader(path.open("rb")) as stream:
        header = read_dbn_header(stream)
        return str(header.schema), np.concatenate(list(iter_record_chunks(stream, header)))


def databento_csv(dbn_path: Path, out: Path, **options: bool) -> Path:
    databento.DBNStore.from_file(dbn_path).to_csv(out, **options)
    return out


def assert_same_records(actual: np.ndarray, expected: np.ndarray) -> None:
    """Same layout, and every field equal record by record (mismatching indices reported)."""
    assert actual.dtype == expected.dtype
    assert len(actual) == len(expected)
    for name in expected.dtype.names:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


def read_csv_records(path: Path, schema: str, chunk_records: int = 65_536) -> np.ndarray:
    with path.open("rb") as stream:
        return np.concatenate(list(iter_csv_record_chunks(stream, schema, chunk_records)))


@pytest.mark.parametrize("form", sorted(TEXT_FORMS))
@pytest.mark.parametrize(("folder", "name"), REAL_FILES, ids=[name for _, name in REAL_FILES])
def test_csv_records_equal_dbn_decode_record_by_record(
    shared_data: Path, tmp_path: Path, folder: str, name: str, form: str
) -> None:
    schema, expected = dbn_records(shared_data / folder / name)
    csv_path = databento_csv(shared_data / folder / name, tmp_path / "x.csv", **TEXT_FORMS[form])

    records = read_csv_records(csv_path, schema)

    assert_same_records(records, expected)


def test_csv_chunk_size_one_yields_every_record_alone(shared_data: Path, tmp_path: Path) -> None:
    dbn_path = shared_data / SLICES / REAL_FILES[10][1]
    _, expected = dbn_records(dbn_path)
    csv_path = databento_csv(dbn_path, tmp_path / "mbp1.csv")

    with csv_path.open("rb") as stream:
        chunks = list(iter_csv_record_chunks(stream, "mbp-1", chunk_records=1))

    assert len(chunks) == len(expected)
    assert_same_records(np.concatenate(chunks), expected)


def test_csv_zst_with_symbols_returns_symbol_per_record(shared_data: Path, tmp_path: Path) -> None:
    dbn_path = shared_data / FIXTURES / "test_data.mbp-10.dbn.zst"
    _, expected = dbn_records(dbn_path)
    csv_path = tmp_path / "mbp10.csv.zst"
    databento.DBNStore.from_file(dbn_path).to_csv(csv_path, compression="zstd")

    with zstandard.ZstdDecompressor().stream_reader(csv_path.open("rb")) as stream:
        chunks = list(iter_csv_chunks(stream, "mbp-10", chunk_records=3))

    assert [len(chunk.records) for chunk in chunks] == [3, 1]
    assert_same_records(np.concatenate([c.records for c in chunks]), expected)
    assert [s for chunk in chunks for s in chunk.symbols.to_pylist()] == ["ESH1"] * 4


def test_csv_decimal_prices_are_exact_fixed_point() -> None:
    text = (
        TRADES_HEADER
        + "2024-01-02T14:30:00.000000001Z,2024-01-02T14:30:00Z,0,1,7,T,A,0,1.100000001,1,0,0,1\n"
        + "2024-01-02T14:30:00.000000002Z,2024-01-02T14:30:00Z,0,1,7,T,B,0,9999.99995,2,0,0,2\n"
    )

    (records,) = iter_csv_record_chunks(io.BytesIO(text.encode()), "trades")

    assert records["price"].tolist() == [1_100_000_001, 9_999_999_950_000]
    assert records["ts_recv"].tolist() == [1704205800000000001, 1704205800000000002]
    assert records["side"].tolist() == [b"A", b"B"]


def test_csv_empty_pretty_price_is_undefined() -> None:
    text = TRADES_HEADER + "2024-01-02T14:30:00Z,2024-01-02T14:30:00Z,0,1,7,R,N,0,,0,8,0,1\n"

    (records,) = iter_csv_record_chunks(io.BytesIO(text.encode()), "trades")

    assert records["price"].tolist() == [UNDEF_PRICE]


def test_csv_price_finer_than_1e9_raises() -> None:
    text = (
        TRADES_HEADER
        + "2024-01-02T14:30:00Z,2024-01-02T14:30:00Z,0,1,7,T,A,0,1.0000000001,1,0,0,1\n"
    )

    with pytest.raises(DatabentoCsvError, match="does not parse.*data loss"):
        list(iter_csv_record_chunks(io.BytesIO(text.encode()), "trades"))


def test_csv_header_of_another_schema_raises_naming_columns() -> None:
    with pytest.raises(DatabentoCsvError, match=r"missing \['ask_ct_00', 'ask_px_00'"):
        list(iter_csv_record_chunks(io.BytesIO(TRADES_HEADER.encode()), "mbp-1"))


def test_csv_row_with_another_rtype_raises_naming_row() -> None:
    rows = [f"{n},{n},{rtype},1,7,T,A,0,100,1,0,0,{n}\n" for n, rtype in ((1, 0), (2, 1))]
    text = TRADES_HEADER + "".join(rows)

    with pytest.raises(DatabentoCsvError, match="data row 2 has rtype 1, expected 0"):
        list(iter_csv_record_chunks(io.BytesIO(text.encode()), "trades"))


def test_csv_unknown_schema_raises_listing_known() -> None:
    with pytest.raises(DatabentoCsvError, match="'statistics' is not read from CSV.*mbp-10"):
        list(iter_csv_record_chunks(io.BytesIO(TRADES_HEADER.encode()), "statistics"))


def test_csv_header_only_yields_nothing() -> None:
    assert list(iter_csv_record_chunks(io.BytesIO(TRADES_HEADER.encode()), "trades")) == []
