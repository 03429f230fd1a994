"""DBN stream -> numpy records: chunking, versions, and streams the decoder must refuse."""

from __future__ import annotations

import datetime as dt
import io

import databento_dbn
import numpy as np
import pytest
import zstandard

from hft_pipeline.ingest.dbn_layout import MBP1_DTYPE, MBP10_DTYPE, TRADE_DTYPE
from hft_pipeline.ingest.decode import DbnFormatError, iter_record_chunks, read_dbn_header
from hft_pipeline_tests.ingest.dbn_builders import dbn_stream, make_records, session_times

SCHEMA_DTYPES = [("mbp-10", MBP10_DTYPE), ("mbp-1", MBP1_DTYPE), ("trades", TRADE_DTYPE)]


class TrickleStream(io.RawIOBase):
    """Returns at most 7 bytes per read, as a decompressor may: reads must be looped."""

    def __init__(self, data: bytes):
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._inner.read(min(size, 7) if size >= 0 else 7)


def decode_all(data: bytes, chunk_records: int = 65_536) -> tuple[list[np.ndarray], object]:
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
    records["rtype"] = 0xA0  # MBO, not decoded here
    data = dbn_stream(records, None, compress=False)

    with pytest.raises(DbnFormatError, match="unknown record type 0xa0"):
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
    data = dbn_stream(make_records(TRADE_DTYPE, session_times(2)), "ohlcv-1m", compress=False)

    with pytest.raises(DbnFormatError, match="schema 'ohlcv-1m' is not decoded"):
        decode_all(data)


def test_iter_record_chunks_no_records_yields_nothing():
    chunks, header = decode_all(dbn_stream(make_records(TRADE_DTYPE, []), "trades", compress=False))

    assert chunks == []
    assert header.schema == "trades"


@pytest.mark.parametrize(
    "name", ["test_data.mbp-10.dbn.zst", "test_data.mbp-1.dbn.zst", "test_data.trades.dbn.zst"]
)
def test_iter_record_chunks_real_fixture_matches_databento_decoder(shared_data, name):
    data = (
        zstandard.ZstdDecompressor()
        .stream_reader((shared_data / "dbn-glbx-es-fixtures" / name).open("rb"))
        .read()
    )
    decoder = databento_dbn.DBNDecoder()
    decoder.write(data)
    expected = decoder.decode()[1:]  # after the Metadata

    chunks, header = decode_all(data, chunk_records=3)
    records = np.concatenate(chunks)

    assert header.version == 3
    assert len(records) == len(expected) == 4
    for record, reference in zip(records, expected, strict=True):
        assert int(record["instrument_id"]) == reference.instrument_id == 5482
        assert int(record["ts_recv"]) == reference.ts_recv
        assert int(record["ts_event"]) == reference.ts_event
        assert int(record["sequence"]) == reference.sequence
        assert int(record["price"]) == reference.price
        assert int(record["size"]) == reference.size
        assert record["action"].decode() == reference.action.value
        assert record["side"].decode() == reference.side.value
        levels = record["levels"] if "levels" in records.dtype.names else []
        for level, reference_level in zip(levels, getattr(reference, "levels", []), strict=True):
            assert int(level["bid_px"]) == reference_level.bid_px
            assert int(level["ask_sz"]) == reference_level.ask_sz
            assert int(level["bid_ct"]) == reference_level.bid_ct
