"""Hostile and broken archives: each is refused with an error naming archive, member and problem,
and a failed build leaves the earlier SLIM file untouched."""

from __future__ import annotations

import io
import json
import stat
import struct
import zipfile
from pathlib import Path

import pytest
import zstandard

from hft_pipeline.ingest.archive import (
    RATIO_SLACK_BYTES,
    ArchiveError,
    CompressionRatioError,
    ZstdFramesReader,
    inspect_archive,
    open_member_stream,
)
from hft_pipeline.ingest.dbn_layout import MBP10_DTYPE
from hft_pipeline.ingest.quality import run_quality_checks
from hft_pipeline.ingest.slim import build_slim_day
from hft_pipeline_tests.ingest.dbn_builders import (
    SESSION,
    dbn_stream,
    es_archive,
    make_records,
    session_times,
    symbology,
    write_archive,
)

MEMBER = "glbx-mdp3-20210105.mbp-10.dbn.zst"
PLAIN_MEMBER = "glbx-mdp3-20210105.mbp-10.dbn"
ES_SYMBOLOGY = symbology({"ESH1": 5482})
# Offsets of fields in a local file header (PK\3\4) and a central directory entry (PK\1\2).
LOCAL_SIZES = {"compress_size": 18, "file_size": 22}
CENTRAL_FIELDS = {"compress_size": 20, "file_size": 24, "header_offset": 42}


@pytest.fixture
def records():
    return make_records(MBP10_DTYPE, session_times(50))


def _zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _central_entries(data: bytes) -> dict[str, int]:
    """Member name -> byte offset of its central directory entry."""
    entries, offset = {}, data.index(b"PK\x01\x02")
    while data[offset : offset + 4] == b"PK\x01\x02":
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", data, offset + 28)
        entries[data[offset + 46 : offset + 46 + name_length].decode()] = offset
        offset += 46 + name_length + extra_length + comment_length
    return entries


def _patch_header(path: Path, member: str, field: str, value: int) -> None:
    """Rewrite one size field of a member's central entry (and local header, for sizes)."""
    data = bytearray(path.read_bytes())
    central = _central_entries(bytes(data))[member]
    struct.pack_into("<I", data, central + CENTRAL_FIELDS[field], value)
    if field in LOCAL_SIZES:
        (local,) = struct.unpack_from("<I", data, central + CENTRAL_FIELDS["header_offset"])
        struct.pack_into("<I", data, local + LOCAL_SIZES[field], value)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.95, -1, -22])
def test_inspect_archive_truncated_anywhere_raises_naming_archive(tmp_path, records, keep):
    path = es_archive(tmp_path / "cut.zip", records)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if keep > 0 else keep])

    with pytest.raises(ArchiveError, match=r"archive cut\.zip: not a readable ZIP"):
        inspect_archive(path)


def test_inspect_archive_corrupt_central_directory_raises_naming_archive(tmp_path, records):
    path = es_archive(tmp_path / "cd.zip", records)
    data = bytearray(path.read_bytes())
    central = _central_entries(bytes(data))[MEMBER]
    data[central : central + 4] = b"XXXX"
    path.write_bytes(bytes(data))

    with pytest.raises(ArchiveError, match=r"archive cd\.zip: not a readable ZIP .*central"):
        inspect_archive(path)


def test_inspect_archive_central_name_differs_from_local_header_raises(tmp_path, records):
    path = es_archive(tmp_path / "renamed.zip", records)
    renamed = MEMBER.replace("20210105", "20210106")  # in the local header, which comes first
    path.write_bytes(path.read_bytes().replace(MEMBER.encode(), renamed.encode(), 1))

    with pytest.raises(ArchiveError, match=rf"renamed\.zip, member '{MEMBER}': damaged.*differ"):
        inspect_archive(path)


def test_open_member_stream_crc_mismatch_raises_while_streaming(tmp_path, records):
    raw = dbn_stream(records, "mbp-10", compress=False)
    path = _zip(tmp_path / "crc.zip", {PLAIN_MEMBER: raw})
    data = bytearray(path.read_bytes())
    data[data.index(raw) + len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    opened = False
    with (
        pytest.raises(ArchiveError, match=rf"crc\.zip, member '{PLAIN_MEMBER}': damaged.*CRC"),
        open_member_stream(path, PLAIN_MEMBER) as stream,
    ):
        opened = True
        stream.read()

    assert opened  # the bytes were served, and the CRC failed at the member's end


@pytest.mark.parametrize("name", ["..\\evil.dbn.zst", "C:/evil.dbn.zst", "a/../../x.json"])
def test_open_member_stream_unsafe_member_path_raises(tmp_path, records, name):
    path = _zip(tmp_path / "slip.zip", {MEMBER: dbn_stream(records, "mbp-10"), name: b"x"})

    with (
        pytest.raises(ArchiveError, match=r"slip\.zip, member .*: unsafe member path"),
        open_member_stream(path, MEMBER),
    ):
        pass


@pytest.mark.parametrize(
    ("file_type", "problem"),
    [(stat.S_IFLNK, "is a symbolic link"), (stat.S_IFCHR, "is not a regular file")],
)
def test_inspect_archive_link_or_device_member_raises(tmp_path, records, file_type, problem):
    path = es_archive(tmp_path / "link.zip", records)
    link = zipfile.ZipInfo("glbx-mdp3-20210106.mbp-10.dbn.zst")
    link.create_system = 3  # unix: the mode sits in the high 16 bits of external_attr
    link.external_attr = (file_type | 0o777) << 16
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(link, b"/etc/passwd")

    with pytest.raises(ArchiveError, match=rf"link\.zip, member '{link.filename}': {problem}"):
        inspect_archive(path)


def test_inspect_archive_deflate_bomb_refused_by_declared_ratio(tmp_path):
    path = _zip(tmp_path / "bomb.zip", {PLAIN_MEMBER: bytes(16 * 2**20)}, zipfile.ZIP_DEFLATED)

    with pytest.raises(
        ArchiveError, match=rf"bomb\.zip, member '{PLAIN_MEMBER}': declares .* over 200 times"
    ):
        inspect_archive(path)


def test_inspect_archive_total_size_over_cap_raises_naming_archive(tmp_path, records):
    path = es_archive(tmp_path / "big.zip", records)

    with pytest.raises(ArchiveError, match=r"archive big\.zip: .* over the cap of 1e-06 GB"):
        inspect_archive(path, max_uncompressed_gb=1e-6)


def test_inspect_archive_understated_file_size_caught_by_crc(tmp_path):
    path = _zip(tmp_path / "liar.zip", {PLAIN_MEMBER: bytes(16 * 2**20)}, zipfile.ZIP_DEFLATED)
    _patch_header(path, PLAIN_MEMBER, "file_size", 1000)

    with pytest.raises(ArchiveError, match=rf"liar\.zip, member '{PLAIN_MEMBER}': damaged.*CRC"):
        inspect_archive(path)


@pytest.mark.parametrize("field", ["compress_size", "header_offset"])
def test_inspect_archive_overstated_or_overlapping_entry_raises(tmp_path, records, field):
    """An inflated compress_size would dilute the declared ratio; two entries on the same
    bytes are the overlapping-file bomb."""
    path = _zip(tmp_path / "overlap.zip", {"a.bin": b"a" * 100, PLAIN_MEMBER: b"b" * 100})
    member, value = ("a.bin", 10**6) if field == "compress_size" else (PLAIN_MEMBER, 0)
    _patch_header(path, member, field, value)

    with pytest.raises(ArchiveError, match=r"overlap\.zip, member .*: overlapping or lying"):
        inspect_archive(path)


def test_zstd_frames_reader_bomb_raises_once_output_passes_the_ratio():
    bomb = zstandard.ZstdCompressor().compress(bytes(64 * 2**20))
    reader = ZstdFramesReader(io.BytesIO(bomb), max_compression_ratio=200)

    served = 0
    with pytest.raises(CompressionRatioError, match="over 200 times"):
        while piece := reader.read(2**16):
            served += len(piece)

    assert served <= 200 * len(bomb) + RATIO_SLACK_BYTES


def test_inspect_archive_zstd_bomb_member_passes_the_zip_layer(tmp_path, records):
    """The ZIP layer is honest: the bomb is inside the zstd stream, caught while decoding
    (see test_build_slim_day_hostile_archive_names_it_and_leaves_earlier_file)."""
    path = _zstd_bomb(tmp_path / "zbomb.zip", records)

    assert inspect_archive(path).dbn_members == [MEMBER]


def test_build_slim_day_empty_day_writes_empty_file_that_fails_not_empty(tmp_path, records):
    path = es_archive(tmp_path / "empty.zip", records[:0])
    out = tmp_path / "slim.parquet"

    summary = build_slim_day([path], SESSION, "ES", out)
    failed = [check.name for check in run_quality_checks(out, 0.25) if not check.passed]

    assert summary.rows == 0
    assert out.is_file()
    assert "not_empty" in failed


def _cut_zip(path: Path, records) -> Path:
    es_archive(path, records)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _flip_member_byte(path: Path, records) -> Path:
    raw = dbn_stream(records, "mbp-10", compress=False)
    write_archive(path, {PLAIN_MEMBER: raw}, symbology_json=ES_SYMBOLOGY, with_manifest=False)
    data = bytearray(path.read_bytes())
    data[data.index(raw) + len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _manifest_lies(path: Path, records) -> Path:
    member = dbn_stream(records, "mbp-10")
    manifest = {"files": [{"filename": MEMBER, "hash": "sha256:" + "0" * 64}]}
    return _zip(path, {MEMBER: member, "manifest.json": json.dumps(manifest).encode()})


def _with_extra_member(name: str):
    def build(path: Path, records) -> Path:
        es_archive(path, records)
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr(name, b"payload")
        return path

    return build


def _with_symlink(path: Path, records) -> Path:
    es_archive(path, records)
    link = zipfile.ZipInfo("glbx-mdp3-20210106.mbp-10.dbn.zst")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(link, b"/etc/passwd")
    return path


def _deflate_bomb(path: Path, records) -> Path:
    return _zip(path, {PLAIN_MEMBER: bytes(16 * 2**20)}, zipfile.ZIP_DEFLATED)


def _zstd_bomb(path: Path, records) -> Path:
    header = dbn_stream(records[:0], "mbp-10", compress=False)
    bomb = zstandard.ZstdCompressor().compress(header + bytes(64 * 2**20))
    return write_archive(path, {MEMBER: bomb}, symbology_json=ES_SYMBOLOGY)


def _truncated_dbn(path: Path, records) -> Path:
    raw = dbn_stream(records, "mbp-10", compress=False)
    return write_archive(path, {PLAIN_MEMBER: raw[:-100]}, symbology_json=ES_SYMBOLOGY)


def _unknown_schema(path: Path, records) -> Path:
    member = "glbx-mdp3-20210105.statistics.dbn.zst"
    return write_archive(
        path, {member: dbn_stream(records, "statistics")}, symbology_json=ES_SYMBOLOGY
    )


# (name, how to build the archive, the error's words after "archive <name>.zip", build caps)
HOSTILE_ARCHIVES = [
    ("truncated_zip", _cut_zip, ": not a readable ZIP", {}),
    ("crc_mismatch", _flip_member_byte, f", member '{PLAIN_MEMBER}': damaged.*CRC", {}),
    ("manifest_mismatch", _manifest_lies, f", member '{MEMBER}': SHA-256 .* differs", {}),
    ("dot_dot_path", _with_extra_member("../evil.json"), ", member '../evil.json': unsafe", {}),
    ("absolute_path", _with_extra_member("/etc/evil"), ", member '/etc/evil': unsafe", {}),
    ("symlink", _with_symlink, ", member '.*': is a symbolic link", {}),
    ("deflate_bomb", _deflate_bomb, f", member '{PLAIN_MEMBER}': declares .* zip bomb", {}),
    ("zstd_bomb", _zstd_bomb, f", member '{MEMBER}': .* zip bomb", {}),
    ("size_cap", es_archive, ": .* over the cap", {"max_uncompressed_gb": 1e-6}),
    ("truncated_dbn", _truncated_dbn, f", member '{PLAIN_MEMBER}': .*truncated", {}),
    ("unknown_schema", _unknown_schema, ", member '.*statistics.*': .*'statistics'", {}),
]


@pytest.mark.parametrize(
    ("build", "problem", "caps"),
    [case[1:] for case in HOSTILE_ARCHIVES],
    ids=[case[0] for case in HOSTILE_ARCHIVES],
)
def test_build_slim_day_hostile_archive_names_it_and_leaves_earlier_file(
    tmp_path, records, build, problem, caps
):
    out = tmp_path / "out" / "slim.parquet"
    build_slim_day([es_archive(tmp_path / "good.zip", records)], SESSION, "ES", out)
    earlier = out.read_bytes()
    hostile = build(tmp_path / "hostile.zip", records)

    with pytest.raises(ArchiveError, match=rf"^archive hostile\.zip{problem}"):
        build_slim_day([hostile], SESSION, "ES", out, **caps)

    assert out.read_bytes() == earlier
    assert [path.name for path in out.parent.iterdir()] == ["slim.parquet"]  # no temporary
