"""Is a downloaded file a true copy of a bucket object? What ``r2 download`` checks, in order:

1. its size equals the listing's;
2. its MD5 equals the ETag's: a single-part upload's ETag is the MD5 of the bytes; a multipart
   upload's (``<md5 of the parts' md5s>-<parts>``) is recomputed with the part size the store
   reports for part 1 (HEAD ``partNumber=1``; uploads use one size for every part but the last),
   and left uncompared when the store does not say; a local store's source file is hashed;
3. a ZIP is opened with :func:`archive.inspect_archive`, which checks every member's CRC and each
   DBN member's SHA-256 against the archive's manifest.json when it has one.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from botocore.exceptions import ClientError

from hft_pipeline.ingest.archive import ArchiveError, inspect_archive
from hft_pipeline.ingest.slim_members import ArchiveCaps
from hft_pipeline.resources import LocalObjectStore, ObjectStore, S3ObjectStore, StoredObject

__all__ = ["download_problem", "multipart_etag"]

_CHUNK_BYTES = 2**20  # bytes hashed at a time
_SINGLE_PART_ETAG = re.compile(r"[0-9a-f]{32}")  # the bytes' MD5
_MULTIPART_ETAG = re.compile(r"[0-9a-f]{32}-\d+")  # MD5 of the parts' MD5s, part count


def download_problem(
    store: ObjectStore, stored: StoredObject, local: Path, caps: ArchiveCaps
) -> str | None:
    """Why ``local`` is not a verified copy of ``stored``; None when it is."""
    if not local.is_file():
        return "no local file"
    size = local.stat().st_size
    if size != stored.size:
        return f"{size} bytes, the store lists {stored.size}"
    checksum = _checksum_problem(store, stored, local)
    if checksum is not None:
        return checksum
    if stored.key.lower().endswith(".zip"):
        try:
            inspect_archive(local, **caps.as_kwargs())
        except ArchiveError as error:
            return str(error)
    return None


def _checksum_problem(store: ObjectStore, stored: StoredObject, local: Path) -> str | None:
    """How ``local``'s MD5 differs from what the store says (see the module docstring)."""
    if isinstance(store, LocalObjectStore):
        expected, found = _md5(store.root / stored.key), _md5(local)
        return None if found == expected else f"MD5 {found} differs from the source's {expected}"
    etag = stored.etag.lower()
    if _SINGLE_PART_ETAG.fullmatch(etag):
        found = _md5(local)
        return None if found == etag else f"MD5 {found} differs from the ETag {etag}"
    multipart = _MULTIPART_ETAG.fullmatch(etag)
    part_size = _first_part_size(store, stored) if multipart else None
    if part_size is None:
        return None
    found = multipart_etag(local, part_size)
    return None if found == etag else f"multipart MD5 {found} differs from the ETag {etag}"


def _first_part_size(store: ObjectStore, stored: StoredObject) -> int | None:
    """Bytes of a multipart object's first part (HEAD partNumber=1); None if not told."""
    if not isinstance(store, S3ObjectStore):
        return None
    try:
        head = store.client.head_object(
            Bucket=store.bucket, Key=store.prefix + stored.key, PartNumber=1
        )
    except ClientError:
        return None
    size = head.get("ContentLength")
    return int(size) if size else None


def multipart_etag(path: Path, part_size: int) -> str:
    """S3's ETag of ``path`` uploaded in parts of ``part_size``: md5(part md5s)-<parts>."""
    digests = []
    with path.open("rb") as stream:
        while True:
            part, remaining = hashlib.md5(usedforsecurity=False), part_size
            while remaining and (block := stream.read(min(_CHUNK_BYTES, remaining))):
                part.update(block)
                remaining -= len(block)
            if remaining == part_size:  # nothing left to read
                break
            digests.append(part.digest())
    combined = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
    return f"{combined}-{len(digests)}"


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        while block := stream.read(_CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()
