"""The raw-data object store: one interface, a local folder and an S3/R2 bucket behind it.

Ingestion code only sees :class:`ObjectStore`; which one it gets is decided in one place,
:func:`raw_store_resource`, from ``HFT_RAW_URL`` (``file:///path`` or ``s3://bucket/prefix``).
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import dagster as dg
from dagster_aws.s3 import S3Resource

from hft_pipeline.layout import atomic_file

# The pipeline reads raw/ and may write slim/; it never writes below this prefix.
PROTECTED_PREFIX = "raw/"


@dataclass(frozen=True)
class StoredObject:
    key: str  # relative to the store's root (bucket prefix or folder)
    size: int  # bytes
    etag: str  # changes when the object is rewritten
    last_modified: dt.datetime  # UTC


class ObjectStore(abc.ABC):
    """Read-mostly access to a bucket laid out as ``raw/<yyyy>/<yyyymmdd>/...``."""

    @abc.abstractmethod
    def list_objects(self, prefix: str = "") -> Iterator[StoredObject]:
        """Objects whose key starts with ``prefix``, in key order."""

    @abc.abstractmethod
    def fetch(self, stored: StoredObject, cache_dir: Path) -> Path:
        """A local, seekable file with the object's bytes (ZIP reading needs to seek)."""

    @abc.abstractmethod
    def upload(self, source: Path, key: str) -> None:
        """Writes ``source`` at ``key``; refuses keys under the protected raw/ prefix."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the store points, for metadata and error messages (no secrets)."""


def _refuse_protected(key: str, store: ObjectStore) -> None:
    if key.startswith(PROTECTED_PREFIX):
        raise PermissionError(
            f"refusing to write {key!r} in {store.describe()}: the pipeline never writes below "
            f"{PROTECTED_PREFIX!r}; SLIM uploads go to slim/"
        )


class LocalObjectStore(ObjectStore):
    """A local folder laid out like the bucket; objects are used in place, never copied."""

    def __init__(self, root: Path):
        self.root = root

    def list_objects(self, prefix: str = "") -> Iterator[StoredObject]:
        if not self.root.is_dir():
            return
        # Walk only the folder that can hold the prefix, not the whole tree.
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.is_dir():
            return
        paths = sorted(path for path in base.rglob("*") if path.is_file())
        for path in paths:
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix) and not path.name.startswith("."):
                stat = path.stat()
                yield StoredObject(
                    key=key,
                    size=stat.st_size,
                    etag=f"{stat.st_size:x}-{stat.st_mtime_ns:x}",
                    last_modified=dt.datetime.fromtimestamp(stat.st_mtime, tz=dt.UTC),
                )

    def fetch(self, stored: StoredObject, cache_dir: Path) -> Path:
        path = self.root / stored.key
        if not path.is_file():
            raise FileNotFoundError(f"{stored.key!r} vanished from {self.describe()}")
        return path

    def upload(self, source: Path, key: str) -> None:
        _refuse_protected(key, self)
        with atomic_file(self.root / key) as temporary:
            shutil.copyfile(source, temporary)

    def describe(self) -> str:
        return self.root.as_uri()


class S3ObjectStore(ObjectStore):
    """An S3-compatible bucket (Cloudflare R2, AWS S3, moto) through a boto3 client."""

    def __init__(self, client, bucket: str, prefix: str = ""):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def list_objects(self, prefix: str = "") -> Iterator[StoredObject]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for item in page.get("Contents", []):
                yield StoredObject(
                    key=item["Key"][len(self.prefix) :],
                    size=int(item["Size"]),
                    etag=item["ETag"].strip('"'),
                    last_modified=item["LastModified"].astimezone(dt.UTC),
                )

    def fetch(self, stored: StoredObject, cache_dir: Path) -> Path:
        """Downloads into ``cache_dir`` once per ETag; boto3 uses parallel ranged GETs."""
        local = cache_dir / self.bucket / self.prefix / stored.key
        stamp = local.with_name(local.name + ".etag")
        if local.is_file() and stamp.is_file() and stamp.read_text() == stored.etag:
            return local
        with atomic_file(local) as temporary:
            self.client.download_file(self.bucket, self.prefix + stored.key, str(temporary))
            if temporary.stat().st_size != stored.size:
                raise OSError(
                    f"s3://{self.bucket}/{self.prefix}{stored.key}: downloaded "
                    f"{temporary.stat().st_size} bytes, listing said {stored.size}"
                )
        stamp.write_text(stored.etag)
        return local

    def upload(self, source: Path, key: str) -> None:
        _refuse_protected(key, self)
        self.client.upload_file(str(source), self.bucket, self.prefix + key)

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


class RawStoreResource(dg.ConfigurableResource, abc.ABC):
    """Dagster resource handing assets and sensors an :class:`ObjectStore`."""

    @abc.abstractmethod
    def get_store(self) -> ObjectStore: ...


class LocalRawStore(RawStoreResource):
    """A local folder laid out like the bucket (``HFT_RAW_URL=file:///...``)."""

    root: str

    def get_store(self) -> ObjectStore:
        return LocalObjectStore(Path(self.root))


class R2RawStore(RawStoreResource):
    """Cloudflare R2 (or any S3 endpoint) through dagster-aws's S3Resource."""

    s3: S3Resource
    bucket: str
    prefix: str = ""

    def get_store(self) -> ObjectStore:
        # R2 rejects the default CRC checksums of boto3 >= 1.36 on some calls; S3Resource takes
        # no botocore config, so the documented environment switches are set before the client.
        os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
        os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
        return S3ObjectStore(self.s3.get_client(), self.bucket, self.prefix)


def raw_store_resource(raw_url: str) -> RawStoreResource:
    """The store for ``raw_url``: ``file:///abs/path`` or ``s3://bucket[/prefix]``.

    For s3:// the endpoint and credentials come from ``HFT_R2_ENDPOINT_URL``,
    ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` at run time (never logged).
    """
    parsed = urlparse(raw_url)
    if parsed.scheme == "file":
        return LocalRawStore(root=unquote(parsed.path))
    if parsed.scheme == "s3" and parsed.netloc:
        s3 = S3Resource(
            endpoint_url=dg.EnvVar("HFT_R2_ENDPOINT_URL"),
            aws_access_key_id=dg.EnvVar("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=dg.EnvVar("AWS_SECRET_ACCESS_KEY"),
            region_name=os.environ.get("HFT_R2_REGION", "auto"),
        )
        return R2RawStore(s3=s3, bucket=parsed.netloc, prefix=parsed.path.strip("/"))
    raise ValueError(
        f"HFT_RAW_URL={raw_url!r} is not supported: use file:///absolute/path for a local folder "
        "laid out like the bucket, or s3://bucket[/prefix] with HFT_R2_ENDPOINT_URL set"
    )


@contextlib.contextmanager
def open_raw_store(raw_url: str) -> Iterator[ObjectStore]:
    """The store for use outside Dagster runs (CLI, scripts), EnvVars resolved as in a run."""
    with dg.build_resources({"raw_store": raw_store_resource(raw_url)}) as resources:
        yield resources.raw_store.get_store()
