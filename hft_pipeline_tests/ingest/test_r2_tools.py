"""r2 ls / download / upload against moto's S3 server and a local folder."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

from hft_pipeline.ingest import r2_tools
from hft_pipeline.ingest.r2_verify import download_problem, multipart_etag
from hft_pipeline.ingest.slim_members import ArchiveCaps
from hft_pipeline.resources import StoredObject, open_raw_store
from hft_pipeline.simulate import simulate_bucket
from hft_pipeline_tests.conftest import upload_folder


def open_s3(bucket: str):
    """The S3 store of ``bucket`` as the r2 commands open it (the environment's endpoint)."""
    with open_raw_store(f"s3://{bucket}") as store:
        return store


@pytest.fixture(scope="module")
def small_bucket(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three daily ES archives (two sessions) of a few thousand records each."""
    root = tmp_path_factory.mktemp("bucket")
    simulate_bucket(root, dt.date(2024, 1, 9), dt.date(2024, 1, 10), ["ES"], events_per_second=0.05)
    return root


@pytest.fixture
def filled_bucket(s3_bucket, small_bucket: Path) -> tuple[object, str, list[str]]:
    client, name = s3_bucket
    keys = upload_folder(client, name, small_bucket)
    return client, name, keys


def test_list_remote_bucket_lists_every_key_with_size(filled_bucket, small_bucket: Path) -> None:
    _, name, keys = filled_bucket

    listed = r2_tools.list_remote(f"s3://{name}", "raw/2024/")

    assert [stored.key for stored in listed] == keys
    assert [stored.size for stored in listed] == [(small_bucket / k).stat().st_size for k in keys]


def test_download_prefix_copies_verified_files_then_skips_them(
    filled_bucket, small_bucket: Path, tmp_path: Path
) -> None:
    _, name, keys = filled_bucket

    first = r2_tools.download(f"s3://{name}", "raw/", tmp_path, workers=2, progress=False)
    stamps = [path.stat().st_mtime_ns for path in first]
    second = r2_tools.download(f"s3://{name}", "raw/", tmp_path, workers=2, progress=False)

    assert first == second == [(tmp_path / key).resolve() for key in keys]
    assert all((tmp_path / k).read_bytes() == (small_bucket / k).read_bytes() for k in keys)
    assert [path.stat().st_mtime_ns for path in second] == stamps
    assert not list(tmp_path.rglob("*.part*"))


def test_download_corrupted_local_file_is_downloaded_again(
    filled_bucket, small_bucket: Path, tmp_path: Path
) -> None:
    _, name, keys = filled_bucket
    r2_tools.download(f"s3://{name}", keys, tmp_path, progress=False)
    damaged = tmp_path / keys[1]
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    damaged.write_bytes(bytes(data))

    r2_tools.download(f"s3://{name}", keys, tmp_path, progress=False)

    assert damaged.read_bytes() == (small_bucket / keys[1]).read_bytes()


def write_stopped_download(target: Path, stored, source: bytes, parts: dict[int, bytes]) -> Path:
    """A ``.part`` file and its state as a download stopped after ``parts`` (index -> bytes
    written there) leaves them, with 1000-byte parts."""
    part = target.with_name(target.name + r2_tools.PART_SUFFIX)
    part.parent.mkdir(parents=True, exist_ok=True)
    data = bytearray(len(source))
    for index, written in parts.items():
        data[index * 1000 : index * 1000 + len(written)] = written
    part.write_bytes(bytes(data))
    identity = {"etag": stored.etag, "size": stored.size, "part_bytes": 1000}
    state = {"object": identity, "done": sorted(parts)}
    part.with_name(part.name + r2_tools.STATE_SUFFIX).write_text(json.dumps(state))
    return part


@pytest.mark.parametrize(
    ("damage", "same_etag"),
    [(False, True), (True, True), (False, False)],
    ids=["true-parts-continued", "damaged-part-restarted", "other-object-restarted"],
)
def test_download_stopped_download_is_continued_or_restarted(
    filled_bucket, small_bucket: Path, tmp_path: Path, damage: bool, same_etag: bool
) -> None:
    _, name, keys = filled_bucket
    stored = r2_tools.list_remote(f"s3://{name}", keys[0])[0]
    source = (small_bucket / keys[0]).read_bytes()
    first, third = source[:1000], source[2000:3000]
    parts = {0: b"garbage!" + first[8:] if damage else first, 2: third}
    listed = stored if same_etag else dataclasses.replace(stored, etag="0" * 32)
    part = write_stopped_download(tmp_path / keys[0], listed, source, parts)

    r2_tools.download(f"s3://{name}", keys[:1], tmp_path, progress=False, part_bytes=1000)

    assert (tmp_path / keys[0]).read_bytes() == source
    assert not part.exists()
    assert not part.with_name(part.name + r2_tools.STATE_SUFFIX).exists()


@pytest.mark.parametrize(
    ("earlier", "part_bytes", "missing"),
    [
        ("same-object", 1000, [0, 2, 3]),
        ("object-changed", 1000, [0, 1, 2, 3]),
        ("state-unreadable", 1000, [0, 1, 2, 3]),
        ("same-object", 500, list(range(7))),
    ],
    ids=["same-object", "object-changed", "state-unreadable", "other-part-size"],
)
def test_part_file_open_keeps_only_parts_of_the_same_object(
    tmp_path: Path, earlier: str, part_bytes: int, missing: list[int]
) -> None:
    stored = StoredObject("raw/a.zip", 3500, "e" * 32, dt.datetime(2024, 1, 2, tzinfo=dt.UTC))
    part = write_stopped_download(tmp_path / "a.zip", stored, bytes(3500), {1: b"x" * 1000})
    if earlier == "state-unreadable":
        part.with_name(part.name + r2_tools.STATE_SUFFIX).write_text('{"object": ')
    listed = dataclasses.replace(stored, etag="f" * 32) if earlier == "object-changed" else stored

    part_file = r2_tools._PartFile(listed, tmp_path / "a.zip", part_bytes)

    assert part_file.open() == missing
    assert part_file.part.stat().st_size == 3500


def test_download_missing_key_raises_naming_it(filled_bucket, tmp_path: Path) -> None:
    _, name, _ = filled_bucket

    with pytest.raises(FileNotFoundError, match="raw/nope.zip"):
        r2_tools.download(f"s3://{name}", ["raw/nope.zip"], tmp_path, progress=False)


def test_download_local_store_copies_and_verifies(small_bucket: Path, tmp_path: Path) -> None:
    paths = r2_tools.download(small_bucket.as_uri(), "raw/", tmp_path, progress=False)

    assert len(paths) == 3
    assert all(
        path.read_bytes() == (small_bucket / path.relative_to(tmp_path)).read_bytes()
        for path in paths
    )


def test_upload_under_raw_is_refused_and_nothing_is_written(s3_bucket, tmp_path: Path) -> None:
    client, name = s3_bucket
    file = tmp_path / "live_20240109_ES_SLIM.parquet"
    file.write_bytes(b"x" * 10)

    with pytest.raises(PermissionError, match="raw/"):
        r2_tools.upload(f"s3://{name}", [file], "raw/2024")
    with pytest.raises(PermissionError, match="raw/"):
        r2_tools.upload(f"s3://{name}/raw", [file], "slim")

    assert client.list_objects_v2(Bucket=name).get("KeyCount", 0) == 0


def test_upload_to_slim_writes_multipart_objects(s3_bucket, tmp_path: Path) -> None:
    client, name = s3_bucket
    small, large = tmp_path / "a.parquet", tmp_path / "b.parquet"
    small.write_bytes(b"small")
    large.write_bytes(bytes(range(256)) * (9 * 2**12))  # 9 MiB: two parts

    keys = r2_tools.upload(f"s3://{name}", [small, large], "slim/2024/", workers=2)

    assert keys == ["slim/2024/a.parquet", "slim/2024/b.parquet"]
    listed = r2_tools.list_remote(f"s3://{name}", "slim/")
    assert [(s.key, s.size) for s in listed] == [(keys[0], 5), (keys[1], 9 * 2**20)]
    assert listed[1].etag == multipart_etag(large, 8 * 2**20)
    assert listed[1].etag.endswith("-2")
    back = r2_tools.download(f"s3://{name}", keys, tmp_path / "back", progress=False)
    assert back[1].read_bytes() == large.read_bytes()


def test_download_multipart_object_with_damaged_bytes_is_downloaded_again(
    s3_bucket, tmp_path: Path
) -> None:
    """A multipart upload's ETag is no MD5 of the file, yet damage of the same size is seen."""
    client, name = s3_bucket
    large = tmp_path / "b.parquet"
    large.write_bytes(bytes(range(256)) * (9 * 2**12))
    [key] = r2_tools.upload(f"s3://{name}", [large], "slim/2024/")
    [local] = r2_tools.download(f"s3://{name}", [key], tmp_path / "back", progress=False)
    [stored] = r2_tools.list_remote(f"s3://{name}", key)
    data = bytearray(local.read_bytes())
    data[len(data) // 2] ^= 0xFF
    local.write_bytes(bytes(data))

    problem = download_problem(open_s3(name), stored, local, ArchiveCaps())
    r2_tools.download(f"s3://{name}", [key], tmp_path / "back", progress=False)

    assert problem is not None and "multipart MD5" in problem
    assert local.read_bytes() == large.read_bytes()


def test_s3_store_client_uses_when_required_checksums(
    s3_bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R2 rejects recent boto3's default checksums on some calls (DESIGN.md section 7)."""
    _, name = s3_bucket
    for variable in ("AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION"):
        monkeypatch.setenv(variable, "when_supported")  # recorded, so the test restores it
        monkeypatch.delenv(variable)

    config = open_s3(name).client.meta.config

    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"


def test_upload_local_store_refuses_raw_and_writes_slim(tmp_path: Path) -> None:
    root, file = tmp_path / "bucket", tmp_path / "x.parquet"
    file.write_bytes(b"slim")

    with pytest.raises(PermissionError):
        r2_tools.upload(root.as_uri(), [file], "raw")
    keys = r2_tools.upload(root.as_uri(), [file], "slim")

    assert keys == ["slim/x.parquet"]
    assert (root / "slim" / "x.parquet").read_bytes() == b"slim"
    assert not (root / "raw").exists()


def test_upload_verifies_the_stored_copy_and_shows_progress(
    s3_bucket, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _, name = s3_bucket
    large = tmp_path / "b.parquet"
    large.write_bytes(bytes(range(256)) * (9 * 2**12))  # two parts
    [key] = r2_tools.upload(f"s3://{name}", [large], "slim/2024/", progress=True)
    other = tmp_path / "other" / "b.parquet"
    other.parent.mkdir()
    other.write_bytes(large.read_bytes()[::-1])  # same size, other bytes

    with pytest.raises(r2_tools.TransferError, match="slim/2024/b.parquet .* multipart MD5"):
        r2_tools._verify_upload(open_s3(name), other, key)

    assert "upload 1 files" in capsys.readouterr().err
