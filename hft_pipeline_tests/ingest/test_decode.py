"""DBN stream -> numpy records: chunking, versions, and streams the decoder must refuse."""

from __future__ import annotations

import datetime as dt
import io

import databento_dbn
import numpy as np
import pytest

from hft_pipeline.ingest.dbn_layout import (
    DTYPE_BY_RTYPE,
    MBP1_DTYPE,
    MBP10_DTYPE,
    RTYPE_MBO,
    RTYPE_OHLCV_1M,
    RTYPE_OHLCV_1S,
    TRADE_DTYPE,
)
from hft_pipeline.ingest.decode import (
    DbnFormatError,
    DbnHeader,
    iter_record_chunks,
    read_dbn_header,
)
from hft_pipeline_tests.ingest.dbn_builders import (
    TrickleStream,
    dbn_at_version,
    dbn_stream,
    make_mbo_records,
    make_ohlcv_records,
    make_records,
    read_zstd,
    session_times,
    upgrade_to_v2,
)

SCHEMA_DTYPES = [("mbp-10", MBP10_DTYPE), ("mbp-1", MBP1_DTYPE), ("trades", TRADE_DTYPE)]


def decode_all(data: bytes, chunk_records: int = 65_536) -> tuple[list[np.ndarray], DbnHeader]:
    stream = io.BytesIO(data)
    header = read_dbn_header(stream)
    return list(iter_record_chunks(stream, header, chunk_records)), header


@pytest.mark.parametrize(("schema", "dtype"), SCHEMA_DTYPES)
def test_iter_record_chunks_chunk_of_one_record_equals_one_big_chunk(schema, dtype):
    records = make_records(dtype, session_times(37), actions=[b"A", b"T", b"C"] * 12 + [b"M"])
    data = dbn_stream(records, schema, compress=False)

    one_by_one, _ = decode_all(data, chunk_records=1)
    single, _ = decode_all(data)

    assert [len(chunk) for chunk in one_by_one] == [1] * 37
    assert len(single) == 1
    assert np.concatenate(one_by_one).tobytes() == single[0].tobytes() == records.tobytes()


def test_iter_record_chunks_short_reads_give_the_same_records():
    records = make_records(MBP10_DTYPE, session_times(9))
    data = dbn_stream(records, "mbp-10", compress=False)
    stream = TrickleStream(data)

    header = read_dbn_header(stream)
    chunks = list(iter_record_chunks(stream, header, chunk_records=4))

    assert [len(chunk) for chunk in chunks] == [4, 4, 1]
    assert np.concatenate(chunks).tobytes() == records.tobytes()


@pytest.mark.parametrize("version", [1, 2, 3])
def test_read_dbn_header_each_version_reads_schema_and_records(version):
    records = make_records(MBP1_DTYPE, session_times(5))
    data = dbn_stream(records, "tbbo", version=version, compress=False)

    chunks, header = decode_all(data)

    assert (header.version, header.schema, header.dataset) == (version, "tbbo", "GLBX.MDP3")
    assert np.concatenate(chunks).tobytes() == records.tobytes()


def test_read_dbn_header_request_span_gives_utc_days():
    data = dbn_stream(make_records(TRADE_DTYPE, session_times(1)), "trades", compress=False)

    _, header = decode_all(data)

    assert header.utc_days == [dt.date(2021, 1, 4), dt.date(2021, 1, 5)]


def test_iter_record_chunks_stream_cut_mid_record_raises_with_record_count():
    records = make_records(MBP10_DTYPE, session_times(3))
    data = dbn_stream(records, "mbp-10", compress=False)[:-100]

    with pytest.raises(DbnFormatError, match=r"mid-record: 268 trailing bytes after 2 368-byte"):
        decode_all(data, chunk_records=2)


def test_read_dbn_header_unknown_version_raises():
    data = bytearray(
        dbn_stream(make_records(TRADE_DTYPE, session_times(1)), "trades", compress=False)
    )
    data[3] = 9

    with pytest.raises(DbnFormatError, match="unknown DBN version 9"):
        decode_all(bytes(data))


def test_read_dbn_header_not_dbn_bytes_raises():
    with pytest.raises(DbnFormatError, match="not a DBN stream"):
        decode_all(b"PK\x03\x04 a zip, not DBN")


def test_read_dbn_header_stream_ends_in_metadata_raises():
    data = dbn_stream(make_records(TRADE_DTYPE, session_times(1)), "trades", compress=False)[:20]

    with pytest.raises(DbnFormatError, match="ends within the metadata"):
        decode_all(data)


def test_iter_record_chunks_unknown_record_type_raises():
    records = make_records(TRADE_DTYPE, session_times(2))
    records["rtype"] = 0x13  # an instrument definition, not decoded here
    data = dbn_stream(records, None, compress=False)

    with pytest.raises(DbnFormatError, match="unknown record type 0x13"):
        decode_all(data)


def test_iter_record_chunks_mixed_record_types_raise_with_position():
    records = make_records(TRADE_DTYPE, session_times(4))
    records["rtype"][2] = 0x01  # an MBP-1 type byte on a 48-byte record
    data = dbn_stream(records, None, compress=False)

    with pytest.raises(DbnFormatError, match=r"record 2 \(byte \d+\) has rtype 0x01"):
        decode_all(data, chunk_records=1)


def test_iter_record_chunks_schema_disagreeing_with_records_raises():
    data = dbn_stream(make_records(TRADE_DTYPE, session_times(2)), "mbp-10", compress=False)

    with pytest.raises(DbnFormatError, match="metadata says schema 'mbp-10'"):
        decode_all(data)


def test_iter_record_chunks_unsupported_schema_raises():
    data = dbn_stream(make_records(TRADE_DTYPE, session_times(2)), "statistics", compress=False)

    with pytest.raises(DbnFormatError, match="schema 'statistics' is not decoded"):
        decode_all(data)


def test_iter_record_chunks_no_records_yields_nothing():
    chunks, header = decode_all(dbn_stream(make_records(TRADE_DTYPE, []), "trades", compress=False))

    assert chunks == []
    assert header.schema == "trades"


@pytest.mark.parametrize(
    ("rtype", "schema"),
    [(RTYPE_OHLCV_1S, "ohlcv-1s"), (RTYPE_OHLCV_1M, "ohlcv-1m"), (RTYPE_MBO, "mbo")],
)
def test_iter_record_chunks_ohlcv_and_mbo_give_their_layouts(rtype, schema):
    if rtype == RTYPE_MBO:
        records = make_mbo_records([("A", "B", 7, 3700.0, 2), ("C", "B", 7, 3700.0, 2)])
    else:
        records = make_ohlcv_records(rtype, [0, 10**9], [3700.0, 3700.25])
    data = dbn_stream(records, schema, compress=False)

    chunks, header = decode_all(data, chunk_records=1)

    assert header.schema == schema
    assert [chunk.dtype for chunk in chunks] == [DTYPE_BY_RTYPE[rtype]] * 2
    assert np.concatenate(chunks).tobytes() == records.tobytes()


FIXTURE_FILES = [
    f"test_data.{schema}.dbn.zst"
    for schema in (
        *("mbp-10", "mbp-1", "tbbo", "trades", "mbo"),
        *("ohlcv-1s", "ohlcv-1m", "ohlcv-1h", "ohlcv-1d"),
    )
]
SLICE_FILES = [
    "esh4-glbx-mdp3-20231224.mbo.dbn.zst",
    "esh4-glbx-mdp3-20231225.mbo.dbn.zst",
    "orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst",
    "futures_mbp-1_2024-07-01T23-58_2024-07-02T00-02.dbn.zst",
    "futures_trades_2024-07-01T23-58_2024-07-02T00-02.dbn.zst",
    "futures_ohlcv-1m_2024-05-09T09-55_2024-05-09T10-05.dbn.zst",
    "futures_ohlcv-1m_2024-07-01T23-40_2024-07-02T00-10.dbn.zst",
]


def assert_records_match_databento(data: bytes, chunk_records: int) -> DbnHeader:
    """Decode ``data`` both ways: the same bytes for every record, and every named field
    agreeing on up to ~500 records spread over the stream (fields by name are slow)."""
    decoder = databento_dbn.DBNDecoder(upgrade_policy=databento_dbn.VersionUpgradePolicy.AS_IS)
    decoder.write(data)
    expected = decoder.decode()[1:]  # after the Metadata

    chunks, header = decode_all(data, chunk_records)
    records = np.concatenate(chunks)

    assert len(records) == len(expected) > 0
    assert records.tobytes() == b"".join(map(bytes, expected))
    fields = [name for name in records.dtype.names if name not in ("length", "levels")]
    step = max(1, len(records) // 500)
    for record, reference in zip(records[::step], expected[::step], strict=True):
        for name in fields:
            value = getattr(reference, name)
            found = record[name].decode() if name in ("action", "side") else int(record[name])
            assert found == (value.value if name in ("action", "side") else int(value)), name
        for depth, level in enumerate(getattr(reference, "levels", [])):
            assert tuple(int(value) for value in record["levels"][depth]) == (
                *(level.bid_px, level.ask_px, level.bid_sz, level.ask_sz),
                *(level.bid_ct, level.ask_ct),
            )
    return header


@pytest.mark.parametrize("name", FIXTURE_FILES)
def test_iter_record_chunks_v3_fixture_matches_databento_decoder(shared_data, name):
    data = read_zstd(shared_data / "dbn-glbx-es-fixtures" / name)

    header = assert_records_match_databento(data, chunk_records=3)

    assert header.version == 3
    assert header.schema == name.split(".")[1]


@pytest.mark.parametrize("name", SLICE_FILES)
def test_iter_record_chunks_v1_slice_matches_databento_decoder(shared_data, name):
    data = read_zstd(shared_data / "dbn-glbx-es-slices" / name)

    header = assert_records_match_databento(data, chunk_records=1_000)

    assert header.version == 1
    assert header.mappings  # v1 metadata's symbol mappings are read too


@pytest.mark.parametrize("name", SLICE_FILES)
def test_iter_record_chunks_v2_upgrade_of_slice_matches_databento_decoder(shared_data, name):
    data = upgrade_to_v2(read_zstd(shared_data / "dbn-glbx-es-slices" / name))

    header = assert_records_match_databento(data, chunk_records=1_000)

    assert (data[:4], header.version) == (b"DBN\x02", 2)


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("name", FIXTURE_FILES)
def test_iter_record_chunks_v1_and_v2_of_every_fixture_schema_match_databento_decoder(
    shared_data, name, version
):
    v3 = read_zstd(shared_data / "dbn-glbx-es-fixtures" / name)
    data = dbn_at_version(v3, version)

    header = assert_records_match_databento(data, chunk_records=2)

    assert (data[:4], header.version) == (b"DBN" + bytes([version]), version)
    assert header.schema == name.split(".")[1]
    assert header.mappings == read_dbn_header(io.BytesIO(v3)).mappings
