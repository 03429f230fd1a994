"""Safe ZIP reading: verified members, sidecars, and archives that must be refused."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile

import pytest
import zstandard

from hft_pipeline.ingest.archive import (
    ArchiveError,
    ZstdFramesReader,
    degraded_days,
    inspect_archive,
    manifest_hashes,
    open_member_stream,
    root_instruments,
)
from hft_pipeline.ingest.dbn_layout import TRADE_DTYPE
from hft_pipeline_tests.ingest.dbn_builders import (
    dbn_stream,
    make_records,
    session_times,
    sha256,
    symbology,
    write_archive,
)

MEMBER = "glbx-mdp3-20210105.trades.dbn.zst"
CSV_MEMBER = "glbx-mdp3-20210105.trades.csv.zst"


@pytest.fixture
def member_bytes() -> bytes:
    return dbn_stream(make_records(TRADE_DTYPE, session_times(20)), "trades")


def test_inspect_archive_good_archive_lists_members_hashes_and_sidecars(tmp_path, member_bytes):
    path = write_archive(
        tmp_path / "good.zip",
        {MEMBER: member_bytes, "metadata.json": b'{"query": {"schema": "trades"}}'},
        symbology_json=symbology({"ESH1": 5482}),
        condition_json=[{"date": "2021-01-05", "condition": "available"}],
    )

    contents = inspect_archive(path)

    assert contents.dbn_members == [MEMBER]
    assert contents.sha256 == {MEMBER: sha256(member_bytes)}
    assert contents.verified_by_manifest
    assert contents.metadata == {"query": {"schema": "trades"}}
    assert contents.symbology["result"]["ESH1"][0]["s"] == "5482"
    assert contents.condition[0]["condition"] == "available"


def test_open_member_stream_zst_member_yields_decompressed_dbn(tmp_path, member_bytes):
    path = write_archive(tmp_path / "good.zip", {MEMBER: member_bytes})

    with open_member_stream(path, MEMBER) as stream:
        data = stream.read()

    assert data[:4] == b"DBN\x03"


def test_inspect_archive_not_a_zip_raises_naming_archive(tmp_path):
    path = tmp_path / "noise.zip"
    path.write_bytes(b"this is not a zip file at all" * 10)

    with pytest.raises(ArchiveError, match=r"archive noise\.zip: not a readable ZIP"):
        inspect_archive(path)


def test_inspect_archive_truncated_zip_raises_naming_archive(tmp_path, member_bytes):
    path = write_archive(tmp_path / "cut.zip", {MEMBER: member_bytes})
    path.write_bytes(path.read_bytes()[: len(member_bytes) // 2])

    with pytest.raises(ArchiveError, match=r"archive cut\.zip"):
        inspect_archive(path)


def test_inspect_archive_flipped_byte_raises_crc_error_naming_member(tmp_path, member_bytes):
    path = write_archive(tmp_path / "flipped.zip", {MEMBER: member_bytes}, with_manifest=False)
    data = bytearray(path.read_bytes())
    data[data.index(member_bytes) + len(member_bytes) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    with pytest.raises(ArchiveError, match=rf"flipped\.zip, member '{MEMBER}': damaged.*CRC"):
        inspect_archive(path)


def test_inspect_archive_manifest_hash_mismatch_raises_naming_member(tmp_path, member_bytes):
    path = write_archive(tmp_path / "altered.zip", {MEMBER: member_bytes}, with_manifest=False)
    manifest = {"files": [{"filename": MEMBER, "hash": "sha256:" + "0" * 64}]}
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))

    with pytest.raises(
        ArchiveError, match=rf"altered\.zip, member '{MEMBER}': SHA-256 \w+ differs"
    ):
        inspect_archive(path)


def test_inspect_archive_member_absent_from_manifest_raises(tmp_path, member_bytes):
    path = write_archive(tmp_path / "unlisted.zip", {MEMBER: member_bytes})
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("extra.trades.dbn.zst", member_bytes)

    with pytest.raises(ArchiveError, match="'extra.trades.dbn.zst': not listed in manifest"):
        inspect_archive(path)


@pytest.mark.parametrize("name", ["../evil.dbn.zst", "/etc/evil.dbn.zst", "a/../../evil.json"])
def test_inspect_archive_unsafe_member_path_raises_naming_member(tmp_path, member_bytes, name):
    path = write_archive(tmp_path / "hostile.zip", {MEMBER: member_bytes}, with_manifest=False)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(zipfile.ZipInfo(name), member_bytes)

    with pytest.raises(ArchiveError, match=rf"hostile\.zip, member '{name}': unsafe member path"):
        inspect_archive(path)


def test_inspect_archive_without_dbn_or_csv_member_raises(tmp_path):
    path = write_archive(tmp_path / "docs.zip", {"README.txt": b"x"})

    with pytest.raises(ArchiveError, match=r"docs\.zip: no DBN member .* or CSV member"):
        inspect_archive(path)


def test_inspect_archive_csv_members_listed_and_hashed(tmp_path, member_bytes):
    csv_bytes = zstandard.ZstdCompressor().compress(b"ts_recv,ts_event,price\n1,0,3700.25\n")
    path = write_archive(tmp_path / "both.zip", {MEMBER: member_bytes, CSV_MEMBER: csv_bytes})

    contents = inspect_archive(path)

    assert contents.csv_members == [CSV_MEMBER]
    assert contents.dbn_members == [MEMBER]
    assert contents.sha256 == {MEMBER: sha256(member_bytes), CSV_MEMBER: sha256(csv_bytes)}


def test_inspect_archive_csv_hash_mismatch_raises_naming_member(tmp_path):
    path = write_archive(tmp_path / "csv.zip", {CSV_MEMBER: b"x"}, with_manifest=False)
    manifest = {"files": [{"filename": CSV_MEMBER, "hash": "sha256:" + "0" * 64}]}
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))

    with pytest.raises(
        ArchiveError, match=rf"csv\.zip, member '{CSV_MEMBER}': SHA-256 \w+ differs"
    ):
        inspect_archive(path)


def test_inspect_archive_csv_member_absent_from_manifest_raises(tmp_path, member_bytes):
    path = write_archive(tmp_path / "unlisted.zip", {MEMBER: member_bytes})
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(CSV_MEMBER, b"x")

    with pytest.raises(ArchiveError, match=rf"'{CSV_MEMBER}': not listed in manifest"):
        inspect_archive(path)


def test_inspect_archive_sidecar_not_json_raises_naming_member(tmp_path, member_bytes):
    path = write_archive(tmp_path / "badjson.zip", {MEMBER: member_bytes, "symbology.json": b"{"})

    with pytest.raises(ArchiveError, match="member 'symbology.json': not valid JSON"):
        inspect_archive(path)


def test_manifest_hashes_prefixed_bare_and_other_algorithms():
    manifest = {
        "files": [
            {"filename": "a.dbn.zst", "hash": "sha256:ABC"},
            {"filename": "b.dbn.zst", "sha256": "def"},
            {"filename": "c.dbn.zst", "hash": "md5:123"},
        ]
    }

    assert manifest_hashes(manifest) == {"a.dbn.zst": "abc", "b.dbn.zst": "def"}


def test_root_instruments_keeps_root_outrights_overlapping_the_days():
    result = {
        "ESH1": [{"d0": "2021-01-04", "d1": "2021-01-06", "s": "5482"}],
        "ESM1": [{"d0": "2020-12-01", "d1": "2021-01-04", "s": "5483"}],  # ended before
        "ESH1-ESM1": [{"d0": "2021-01-04", "d1": "2021-01-06", "s": "9999"}],  # spread
        "NQH1": [{"d0": "2021-01-04", "d1": "2021-01-06", "s": "7777"}],  # other root
    }

    found = root_instruments(result, "ES", [dt.date(2021, 1, 4), dt.date(2021, 1, 5)])

    assert found == {5482: "ESH1"}


def test_root_instruments_reads_instrument_id_to_raw_symbol_direction():
    result = {"5482": [{"d0": dt.date(2021, 1, 4), "d1": dt.date(2021, 1, 6), "s": "ESH1"}]}

    assert root_instruments(result, "ES", [dt.date(2021, 1, 5)]) == {5482: "ESH1"}


def test_root_instruments_one_id_two_contracts_raises():
    result = {
        "ESH1": [{"d0": "2021-01-04", "d1": "2021-01-06", "s": "5482"}],
        "ESM1": [{"d0": "2021-01-04", "d1": "2021-01-06", "s": "5482"}],
    }

    with pytest.raises(ValueError, match="instrument_id 5482 maps to both ESH1 and ESM1"):
        root_instruments(result, "ES", [dt.date(2021, 1, 5)])


@pytest.mark.parametrize(
    "condition",
    [
        [
            {"date": "2021-01-04", "condition": "available"},
            {"date": "2021-01-05", "condition": "degraded"},
        ],
        {"2021-01-04": "available", "2021-01-05": "degraded"},
    ],
)
def test_degraded_days_list_and_mapping_forms(condition):
    days = [dt.date(2021, 1, 4), dt.date(2021, 1, 5)]

    assert degraded_days(condition, days) == [dt.date(2021, 1, 5)]


def test_open_member_stream_zst_cut_inside_frame_raises_truncated(tmp_path, member_bytes):
    cut = member_bytes[: len(member_bytes) - 9]
    path = write_archive(tmp_path / "cut.zip", {MEMBER: cut})

    with (
        pytest.raises(ArchiveError, match=rf"cut\.zip, member '{MEMBER}': .*inside a zstd frame"),
        open_member_stream(path, MEMBER) as stream,
    ):
        stream.read()


def test_zstd_frames_reader_reads_concatenated_frames_in_small_reads():
    first, second = b"metadata " * 50, bytes(range(256)) * 300
    compressor = zstandard.ZstdCompressor()
    reader = ZstdFramesReader(io.BytesIO(compressor.compress(first) + compressor.compress(second)))

    pieces = list(iter(lambda: reader.read(1000), b""))

    assert b"".join(pieces) == first + second
    assert max(len(piece) for piece in pieces) == 1000


def test_root_instruments_skips_request_fields_beside_mappings():
    flat = {"stype_in": "raw_symbol", "ESH1": [{"d0": "2021-01-04", "d1": "2021-01-06", "s": "5"}]}

    assert root_instruments(flat, "ES", [dt.date(2021, 1, 5)]) == {5: "ESH1"}
