from pathlib import Path

import pytest

from hft_pipeline.resources import (
    LocalObjectStore,
    LocalRawStore,
    R2RawStore,
    open_raw_store,
    raw_store_resource,
)


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_local_store_lists_in_key_order_and_uses_files_in_place(tmp_path: Path):
    _write(tmp_path / "raw/2024/20240103/ES/b.zip", b"bb")
    _write(tmp_path / "raw/2024/20240102/ES/a.zip", b"a")
    store = LocalObjectStore(tmp_path)

    listed = list(store.list_objects("raw/2024/"))

    assert [o.key for o in listed] == ["raw/2024/20240102/ES/a.zip", "raw/2024/20240103/ES/b.zip"]
    assert [o.size for o in listed] == [1, 2]
    assert store.fetch(listed[0], tmp_path / "cache") == tmp_path / "raw/2024/20240102/ES/a.zip"


def test_store_refuses_to_write_below_raw(tmp_path: Path):
    source = _write(tmp_path / "x.parquet", b"x")

    with pytest.raises(PermissionError, match="never writes below 'raw/'"):
        LocalObjectStore(tmp_path / "bucket").upload(source, "raw/2024/x.parquet")


def test_raw_store_resource_is_chosen_by_url_scheme(tmp_path: Path):
    assert isinstance(raw_store_resource(tmp_path.as_uri()), LocalRawStore)
    assert isinstance(raw_store_resource("s3://bucket/some/prefix"), R2RawStore)
    with pytest.raises(ValueError, match="HFT_RAW_URL='ftp://x'"):
        raw_store_resource("ftp://x")


def test_r2_store_through_s3resource_lists_fetches_once_and_uploads_slim(s3_bucket, tmp_path):
    client, bucket = s3_bucket
    client.put_object(Bucket=bucket, Key="data/raw/2024/20240102/ES/a.zip", Body=b"zipbytes")
    with open_raw_store(f"s3://{bucket}/data") as store:
        listed = list(store.list_objects("raw/"))
        local = store.fetch(listed[0], tmp_path / "cache")
        first_mtime = local.stat().st_mtime_ns
        again = store.fetch(listed[0], tmp_path / "cache")
        store.upload(local, "slim/2024/a.parquet")

    assert [(o.key, o.size) for o in listed] == [("raw/2024/20240102/ES/a.zip", 8)]
    assert local.read_bytes() == b"zipbytes"
    assert again == local and again.stat().st_mtime_ns == first_mtime  # cached by ETag
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert "data/slim/2024/a.parquet" in keys
