"""The functions behind ``hft-pipeline r2 ls|download|upload``: a bucket (or a local folder laid
out like one) listed, copied down in parallel parts, resumably, and verified, and SLIM files
copied up.

A download fills ``<file>.part`` with ranged GETs of ``part_bytes`` (64 MiB), ``workers`` at a
time over all objects, so one 3 GB archive comes down in parallel; ``<file>.part.json`` records
the object's ETag and size and the parts already in, so a stopped download resumes with the
parts it lacks (or starts over when the object changed).

Each object is verified as :func:`r2_verify.download_problem` says (size, MD5 or multipart
ETag, ZIP CRCs and manifest): a local file that passes is skipped, one that fails is downloaded
again, and a resumed download that fails starts over once.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from boto3.s3.transfer import TransferConfig
from tqdm import tqdm

from hft_pipeline.ingest.r2_verify import download_problem
from hft_pipeline.ingest.slim_members import ArchiveCaps
from hft_pipeline.layout import atomic_file
from hft_pipeline.resources import (
    PROTECTED_PREFIX,
    LocalObjectStore,
    ObjectStore,
    S3ObjectStore,
    StoredObject,
    open_raw_store,
)

__all__ = ["TransferError", "download", "list_remote", "upload"]

# Bytes read or written at a time while streaming an object: bounds memory per worker.
_CHUNK_BYTES = 2**20
# Uploads above this size go up in parts of this size, ``workers`` parts at a time.
_MULTIPART_BYTES = 8 * 2**20
# Downloads come in ranged GETs of this size: parts of big objects in parallel, and the unit a
# stopped download resumes from.
PART_BYTES = 64 * 2**20
PART_SUFFIX = ".part"
STATE_SUFFIX = ".json"  # beside the .part file: which object, which parts are in


class TransferError(OSError):
    """A downloaded file or an uploaded object whose bytes do not verify, or an object that
    changed while it was read; names the key and what differed."""


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
    part_bytes: int = PART_BYTES,
) -> list[Path]:
    """Copy objects to ``dest_dir / <key>`` in parallel parts, resuming and verifying (see the
    module docstring).

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
        Parts (of any object) downloaded at the same time.
    progress : bool, default True
        Show a tqdm bar of bytes to fetch on stderr.
    caps : ArchiveCaps, optional
        Zip-bomb caps of the ZIPs verified; default: ``DataSettings``' defaults.
    part_bytes : int, default PART_BYTES (64 MiB)
        Bytes per ranged GET; a stopped download keeps the parts it finished.

    Returns
    -------
    list[Path]
        The local files, in key order, skipped ones included.

    Raises
    ------
    FileNotFoundError
        An exact key that the store does not hold.
    TransferError
        Bytes that still fail verification after a fresh download, or an object that changed
        in the store while it was being downloaded.
    """
    if workers < 1 or part_bytes < 1:
        raise ValueError(
            f"workers and part_bytes must be at least 1, found {workers}, {part_bytes}"
        )
    caps = caps or ArchiveCaps()
    with open_raw_store(store_url) as store:
        objects = _resolve(store, keys_or_prefix)
        targets = [_local_path(dest_dir, stored.key) for stored in objects]
        todo = [
            _PartFile(stored, target, part_bytes)
            for stored, target in zip(objects, targets, strict=True)
            if download_problem(store, stored, target, caps) is not None
        ]
        with (
            _bytes_bar(
                sum(file.stored.size for file in todo),
                f"download {len(todo)}/{len(objects)} objects",
                progress,
            ) as bar,
            ThreadPoolExecutor(max_workers=workers) as pool,
        ):
            _PartDownloads(store, caps, pool, bar.update).run(todo)
    return targets


def _bytes_bar(total: int, description: str, shown: bool) -> tqdm:
    """A progress bar of bytes on stderr (silent unless ``shown``)."""
    return tqdm(
        total=total, unit="B", unit_scale=True, desc=description, file=sys.stderr, disable=not shown
    )


def upload(
    store_url: str,
    files: Sequence[Path],
    prefix: str,
    *,
    workers: int = 4,
    progress: bool = True,
) -> list[str]:
    """Copy local files to ``<prefix>/<file name>`` in the store, then verify each copy as a
    download is verified (size, MD5 or multipart ETag); returns the keys written.

    Every key is checked before anything is sent: none may fall under ``raw/`` (counting the
    store URL's own prefix), which the pipeline never writes. S3 uploads go in 8 MiB parts,
    ``workers`` at a time, with a tqdm bar of bytes on stderr unless ``progress`` is False;
    boto3's checksum mode is ``when_required`` as :mod:`resources` sets.

    Raises
    ------
    PermissionError
        A key under ``raw/``; nothing is uploaded.
    FileNotFoundError
        A file that does not exist; nothing is uploaded.
    TransferError
        A stored copy that does not verify (upload it again).
    """
    base = prefix.strip("/") + "/" if prefix.strip("/") else ""
    keys = [base + Path(file).name for file in files]
    missing = [str(file) for file in files if not Path(file).is_file()]
    if missing:
        raise FileNotFoundError(f"cannot upload missing files {missing}; nothing was uploaded")
    with (
        open_raw_store(store_url) as store,
        _bytes_bar(
            sum(Path(file).stat().st_size for file in files), f"upload {len(files)} files", progress
        ) as bar,
    ):
        for key in keys:
            _refuse_raw(store, key)
        config = TransferConfig(
            multipart_threshold=_MULTIPART_BYTES,
            multipart_chunksize=_MULTIPART_BYTES,
            max_concurrency=workers,
        )
        for file, key in zip(files, keys, strict=True):
            if isinstance(store, S3ObjectStore):
                store.client.upload_file(
                    str(file), store.bucket, store.prefix + key, Config=config, Callback=bar.update
                )
            else:
                store.upload(Path(file), key)
                bar.update(Path(file).stat().st_size)
            _verify_upload(store, Path(file), key)
    return keys


def _verify_upload(store: ObjectStore, file: Path, key: str) -> None:
    problem = download_problem(store, _stored_object(store, key), file, ArchiveCaps())
    if problem is not None:
        raise TransferError(
            f"{key} in {store.describe()} is not a true copy of {file}: {problem}; upload it again"
        )


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
    found = [_stored_object(store, key) for key in dict.fromkeys(keys_or_prefix)]
    return sorted(found, key=lambda stored: stored.key)


def _stored_object(store: ObjectStore, key: str) -> StoredObject:
    """The object stored under exactly ``key`` (a listing by prefix also returns longer keys)."""
    for stored in store.list_objects(key):
        if stored.key == key:
            return stored
    raise FileNotFoundError(f"{key!r} is not in {store.describe()}; list it with r2 ls")


def _local_path(dest_dir: Path, key: str) -> Path:
    target = (dest_dir / key).resolve()
    if not target.is_relative_to(dest_dir.resolve()):
        raise ValueError(f"key {key!r} would land outside {dest_dir}; refusing it")
    return target


@dataclass
class _PartFile:
    """An object coming down into ``<target>.part``, ``part_bytes`` at a time; the parts in
    are recorded in ``<target>.part.json`` beside it."""

    stored: StoredObject
    target: Path
    part_bytes: int
    done: set[int] = field(default_factory=set)
    resumed: bool = False  # began with parts of an earlier, stopped download

    @property
    def part(self) -> Path:
        return self.target.with_name(self.target.name + PART_SUFFIX)

    @property
    def state(self) -> Path:
        return self.part.with_name(self.part.name + STATE_SUFFIX)

    @property
    def count(self) -> int:
        return -(-self.stored.size // self.part_bytes)

    def span(self, index: int) -> tuple[int, int]:
        """[start, end) bytes of part ``index``."""
        start = index * self.part_bytes
        return start, min(start + self.part_bytes, self.stored.size)

    def done_bytes(self) -> int:
        return sum(end - start for start, end in map(self.span, self.done))

    def open(self) -> list[int]:
        """Keep the parts an earlier download of this same object finished; size the file.
        Returns the parts still to fetch."""
        self.target.parent.mkdir(parents=True, exist_ok=True)
        earlier = self._earlier_state()
        same = self.part.is_file() and earlier.get("object") == self._identity()
        self.done = {int(index) for index in earlier.get("done", [])} if same else set()
        self.resumed = bool(self.done)
        with self.part.open("r+b" if same else "wb") as sink:
            sink.truncate(self.stored.size)
        self._save()
        return sorted(set(range(self.count)) - self.done)

    def record(self, index: int) -> None:
        self.done.add(index)
        self._save()

    def restart(self) -> list[int]:
        """Forget every part (they may hold bytes of an earlier version); all are to fetch."""
        self.done, self.resumed = set(), False
        self._save()
        return list(range(self.count))

    def finish(self) -> None:
        os.replace(self.part, self.target)
        self.state.unlink()

    def _earlier_state(self) -> dict:
        """The state a stopped download left; empty when none, or unreadable (then the
        download starts over rather than trust it)."""
        try:
            earlier = json.loads(self.state.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return earlier if isinstance(earlier, dict) else {}

    def _identity(self) -> dict:
        return {"etag": self.stored.etag, "size": self.stored.size, "part_bytes": self.part_bytes}

    def _save(self) -> None:
        state = {"object": self._identity(), "done": sorted(self.done)}
        with atomic_file(self.state) as temporary:
            temporary.write_text(json.dumps(state))


@dataclass
class _PartDownloads:
    """Parts of many objects through one pool; each object verified once its parts are in.

    Only this thread records parts and verifies; the pool's threads only fetch bytes.
    """

    store: ObjectStore
    caps: ArchiveCaps
    pool: ThreadPoolExecutor
    advance: Callable[[int], object]
    pending: dict[Future, tuple[_PartFile, int]] = field(default_factory=dict)

    def run(self, files: Sequence[_PartFile]) -> None:
        try:
            for file in files:
                missing = file.open()
                self.advance(file.done_bytes())
                self._submit(file, missing)
                if not missing:
                    self._verify(file)
            while self.pending:
                finished, _ = wait(self.pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    file, index = self.pending.pop(future)
                    future.result()
                    file.record(index)
                    if len(file.done) == file.count:
                        self._verify(file)
        finally:
            # A failure stops the other parts; those finished are recorded for the next run.
            for future in self.pending:
                future.cancel()

    def _submit(self, file: _PartFile, indices: Sequence[int]) -> None:
        for index in indices:
            future = self.pool.submit(_fetch_part, self.store, file, index, self.advance)
            self.pending[future] = (file, index)

    def _verify(self, file: _PartFile) -> None:
        problem = download_problem(self.store, file.stored, file.part, self.caps)
        if problem is None:
            file.finish()
        elif file.resumed:
            self.advance(-file.done_bytes())
            self._submit(file, file.restart())
        else:
            raise TransferError(f"{file.stored.key} from {self.store.describe()}: {problem}")


def _fetch_part(store: ObjectStore, file: _PartFile, index: int, advance) -> None:
    """Write part ``index`` of the object at its place in the ``.part`` file."""
    start, end = file.span(index)
    written = 0
    with file.part.open("r+b") as sink:
        sink.seek(start)
        for chunk in _read_range(store, file.stored, start, end):
            sink.write(chunk)
            written += len(chunk)
            advance(len(chunk))
    if written != end - start:
        raise TransferError(
            f"{file.stored.key}: bytes {start}-{end - 1} came back as {written} bytes from "
            f"{store.describe()}; run the download again to resume"
        )


def _read_range(store: ObjectStore, stored: StoredObject, start: int, end: int) -> Iterator[bytes]:
    """The object's bytes [start, end), a chunk at a time."""
    if isinstance(store, S3ObjectStore):
        response = store.client.get_object(
            Bucket=store.bucket, Key=store.prefix + stored.key, Range=f"bytes={start}-{end - 1}"
        )
        if response["ETag"].strip('"') != stored.etag:
            raise TransferError(
                f"{stored.key} changed in {store.describe()} while downloading; run it again"
            )
        yield from response["Body"].iter_chunks(_CHUNK_BYTES)
    elif isinstance(store, LocalObjectStore):
        with (store.root / stored.key).open("rb") as source:
            source.seek(start)
            while start < end and (chunk := source.read(min(_CHUNK_BYTES, end - start))):
                start += len(chunk)
                yield chunk
    else:
        raise TypeError(f"cannot download from {type(store).__name__}: not a known store")
