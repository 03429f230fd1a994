"""r2 ls / download / upload against moto's S3 server and a local folder."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from hft_pipeline.ingest import r2_tools
from hft_pipeline.simulate import simulate_bucket
from hft_pipeline_tests.conftest import upload_folder


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


@pytest.mark.parametrize(
    ("head", "same_etag"),
    [(b"", True), (b"garbage!", True), (b"garbage!", False)],
    ids=["true-prefix-continued", "damaged-prefix-restarted", "other-object-restarted"],
)
def test_download_part_file_is_continued_or_restarted(
    filled_bucket, small_bucket: Path, tmp_path: Path, head: bytes, same_etag: bool
) -> None:
    _, name, keys = filled_bucket
    stored = r2_tools.list_remote(f"s3://{name}", keys[0])[0]
    target = tmp_path / keys[0]
    part = target.with_name(target.name + r2_tools.PART_SUFFIX)
    part.parent.mkdir(parents=True)
    part.write_bytes(head + (small_bucket / keys[0]).read_bytes()[len(head) : 1000])
    etag = stored.etag if same_etag else "0" * 32
    part.with_name(part.name + ".json").write_text(f'{{"etag": "{etag}", "size": {stored.size}}}')

    r2_tools.download(f"s3://{name}", keys[:1], tmp_path, progress=False)

    assert target.read_bytes() == (small_bucket / keys[0]).read_bytes()
    assert not part.exists()


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
    assert listed[1].etag.endswith("-2")
    back = r2_tools.download(f"s3://{name}", keys, tmp_path / "back", progress=False)
    assert back[1].read_bytes() == large.read_bytes()


def test_upload_local_store_refuses_raw_and_writes_slim(tmp_path: Path) -> None:
    root, file = tmp_path / "bucket", tmp_path / "x.parquet"
    file.write_bytes(b"slim")

    with pytest.raises(PermissionError):
        r2_tools.upload(root.as_uri(), [file], "raw")
    keys = r2_tools.upload(root.as_uri(), [file], "slim")

    assert keys == ["slim/x.parquet"]
    assert (root / "slim" / "x.parquet").read_bytes() == b"slim"
    assert not (root / "raw").exists()
