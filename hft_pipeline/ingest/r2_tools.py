"""The functions behind ``hft-pipeline r2 ls|download|upload``: a bucket (or a local folder laid
out like one) listed, copied down resumably and verified, and SLIM files copied up.

Verification of a downloaded object, in order:
1. its size equals the listing's;
2. its MD5 equals the ETag when the ETag is one: a single-part S3/R2 upload's ETag is the MD5 of
   the bytes, but a multipart upload's (``<md5 of part md5s>-<parts>``) depends on the part size
   the uploader chose, so it is not compared; a local store's source file is hashed instead;
3. a ZIP is opened with :func:`archive.inspect_archive`, which checks every member's CRC and each
   DBN member's SHA-256 against the archive's manifest.json when it has one.
A local file that passes all three is skipped; one that fails is downloaded again.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from boto3.s3.transfer import TransferConfig
from tqdm import tqdm

from hft_pipeline.ingest.archive import ArchiveError, inspect_archive
from hft_pipeline.ingest.slim_members import ArchiveCaps
from hft_pipeline.resources import (
    PROTECTED_PREFIX,
    LocalObjectStore,
    ObjectStore,
    S3ObjectStore,
    StoredObject,
    open_raw_store,
)

__all__ = ["DownloadError", "download", "list_remote", "upload"]

# Bytes read or written at a time while streaming an object: bounds memory per worker.
_CHUNK_BYTES = 2**20
# Uploads above this size go up in parts of this size, ``workers`` parts at a time.
_MULTIPART_BYTES = 8 * 2**20
PART_SUFFIX = ".part"


class DownloadError(OSError):
    """A downloaded object whose bytes do not verify; names the key and what differed."""


def list_remote(store_url: str, prefix: str = "") -> list[StoredObject]:
    """Objects of the store at ``store_url`` (``s3://bucket[/prefix]`` or ``file:///path``)
    whose key starts with ``prefix``, in key order."""
    with open_raw_store(store_url) as store:
        return list(store.list_objects(prefix))


def download(
    store_url: str,
    keys_or_prefix: str | Sequence[str],
    dest_dir: Path,
    *,
    workers: int = 4,
    progress: bool = True,
    caps: ArchiveCaps | None = None,
) -> list[Path]:
    """Copy objects to ``dest_dir / <key>``, resuming and verifying (see the module docstring).

    Parameters
    ----------
    store_url : str
        ``s3://bucket[/prefix]`` (endpoint and credentials from the environment) or
        ``file:///path``.
    keys_or_prefix : str or Sequence[str]
        A key prefix (every object below it), or exact keys.
    dest_dir : Path
        Local root; keys keep their folders below it.
    workers : int, default 4
        Objects downloaded at the same time.
    progress : bool, default True
        Show a tqdm bar of bytes to fetch on stderr.
    caps : ArchiveCaps, optional
        Zip-bomb caps of the ZIPs verified; default: ``DataSettings``' defaults.

    Returns
    -------
    list[Path]
        The local files, in key order, skipped ones included.

    Raises
    ------
    FileNotFoundError
        An exact key that the store does not hold.
    DownloadError
        Bytes that still fail verification after a fresh download.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, found {workers}")
    caps = caps or ArchiveCaps()
    with open_raw_store(store_url) as store:
        objects = _resolve(store, keys_or_prefix)
        targets = [_local_path(dest_dir, stored.key) for stored in objects]
        todo = [
            (stored, target)
            for stored, target in zip(objects, targets, strict=True)
            if _problem(store, stored, target, caps) is not None
        ]
        total = sum(stored.size for stored, _ in todo)
        with (
            tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=f"download {len(todo)}/{len(objects)} objects",
                file=sys.stderr,
                disable=not progress,
            ) as bar,
            ThreadPoolExecutor(max_workers=workers) as pool,
        ):
            futures = [pool.submit(_download_one, store, s, t, caps, bar.update) for s, t in todo]
            for future in futures:
                future.result()
    return targets


def upload(store_url: str, files: Sequence[Path], prefix: str, *, workers: int = 4) -> list[str]:
    """Copy local files to ``<prefix>/<file name>`` in the store; returns the keys written.

    Every key is checked before anything is sent: none may fall under ``raw/`` (counting the
    store URL's own prefix), which the pipeline never writes. S3 uploads go in 8 MiB parts,
    ``workers`` at a time; boto3's checksum mode is ``when_required`` as :mod:`resources` sets.

    Raises
    ------
    PermissionError
        A key under ``raw/``; nothing is uploaded.
    FileNotFoundError
        A file that does not exist; nothing is uploaded.
    """
    base = prefix.strip("/") + "/" if prefix.strip("/") else ""
    keys = [base + Path(file).name for file in files]
    missing = [str(file) for file in files if not Path(file).is_file()]
    if missing:
        raise FileNotFoundError(f"cannot upload missing files {missing}; nothing was uploaded")
    with open_raw_store(store_url) as store:
        for key in keys:
            _refuse_raw(store, key)
        if isinstance(store, S3ObjectStore):
            config = TransferConfig(
                multipart_threshold=_MULTIPART_BYTES,
                multipart_chunksize=_MULTIPART_BYTES,
                max_concurrency=workers,
            )
            for file, key in zip(files, keys, strict=True):
                store.client.upload_file(str(file), store.bucket, store.prefix + key, Config=config)
        else:
            for file, key in zip(files, keys, strict=True):
                store.upload(Path(file), key)
    return keys


def _refuse_raw(store: ObjectStore, key: str) -> None:
    full_key = (store.prefix if isinstance(store, S3ObjectStore) else "") + key
    if full_key.startswith(PROTECTED_PREFIX):
        raise PermissionError(
            f"refusing to write {full_key!r} in {store.describe()}: the pipeline never writes "
            f"below {PROTECTED_PREFIX!r}; upload SLIM files under slim/ instead; nothing was "
            "uploaded"
        )


def _resolve(store: ObjectStore, keys_or_prefix: str | Sequence[str]) -> list[StoredObject]:
    if isinstance(keys_or_prefix, str):
        return list(store.list_objects(keys_or_prefix))
    found = []
    for key in dict.fromkeys(keys_or_prefix):
        match = [stored for stored in store.list_objects(key) if stored.key == key]
        if not match:
            raise FileNotFoundError(f"{key!r} is not in {store.describe()}; list it with r2 ls")
        found.append(match[0])
    return sorted(found, key=lambda stored: stored.key)


def _local_path(dest_dir: Path, key: str) -> Path:
    target = (dest_dir / key).resolve()
    if not target.is_relative_to(dest_dir.resolve()):
        raise ValueError(f"key {key!r} would land outside {dest_dir}; refusing it")
    return target


def _download_one(
    store: ObjectStore, stored: StoredObject, target: Path, caps: ArchiveCaps, advance
) -> None:
    """Fill ``target.part`` (continuing it when it is of the same object), verify, rename."""
    part = target.with_name(target.name + PART_SUFFIX)
    stamp = target.with_name(target.name + PART_SUFFIX + ".json")
    target.parent.mkdir(parents=True, exist_ok=True)
    identity = {"etag": stored.etag, "size": stored.size}
    same_object = stamp.is_file() and json.loads(stamp.read_text()) == identity
    offset = part.stat().st_size if part.is_file() and same_object else 0
    if offset > stored.size:
        offset = 0
    stamp.write_text(json.dumps(identity))
    with part.open("r+b" if offset else "wb") as sink:
        sink.truncate(offset)
        sink.seek(offset)
        advance(offset)
        for chunk in _read_from(store, stored, offset):
            sink.write(chunk)
            advance(len(chunk))
    problem = _problem(store, stored, part, caps)
    if problem is not None and offset:
        # A continued file that fails may hold bytes of an earlier version: restart once.
        part.unlink()
        stamp.unlink()
        return _download_one(store, stored, target, caps, advance)
    if problem is not None:
        raise DownloadError(f"{stored.key} from {store.describe()}: {problem}")
    os.replace(part, target)
    stamp.unlink()


def _read_from(store: ObjectStore, stored: StoredObject, offset: int) -> Iterator[bytes]:
    """The object's bytes from ``offset`` on, a chunk at a time."""
    if offset >= stored.size:
        return
    if isinstance(store, S3ObjectStore):
        response = store.client.get_object(
            Bucket=store.bucket, Key=store.prefix + stored.key, Range=f"bytes={offset}-"
        )
        if response["ETag"].strip('"') != stored.etag:
            raise DownloadError(
                f"{stored.key} changed in {store.describe()} while downloading; run it again"
            )
        yield from response["Body"].iter_chunks(_CHUNK_BYTES)
    elif isinstance(store, LocalObjectStore):
        with (store.root / stored.key).open("rb") as source:
            source.seek(offset)
            while chunk := source.read(_CHUNK_BYTES):
                yield chunk
    else:
        raise TypeError(f"cannot download from {type(store).__name__}: not a known store")


def _problem(
    store: ObjectStore, stored: StoredObject, local: Path, caps: ArchiveCaps
) -> str | None:
    """Why ``local`` is not a verified copy of ``stored``; None when it is."""
    if not local.is_file():
        return "no local file"
    size = local.stat().st_size
    if size != stored.size:
        return f"{size} bytes, the store lists {stored.size}"
    expected = _expected_md5(store, stored)
    if expected is not None and (found := _md5(local)) != expected:
        return f"MD5 {found} differs from {expected}"
    if local.name.removesuffix(PART_SUFFIX).lower().endswith(".zip"):
        try:
            inspect_archive(local, **caps.as_kwargs())
        except ArchiveError as error:
            return str(error)
    return None


def _expected_md5(store: ObjectStore, stored: StoredObject) -> str | None:
    """The MD5 the bytes must have, when the store tells it (see the module docstring)."""
    if isinstance(store, LocalObjectStore):
        return _md5(store.root / stored.key)
    etag = stored.etag.lower()
    is_md5 = len(etag) == 32 and all(c in "0123456789abcdef" for c in etag)
    return etag if is_md5 else None


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        while block := stream.read(_CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()
