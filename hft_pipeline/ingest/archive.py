"""Safe reading of a Databento batch-download ZIP: members, JSON sidecars, verified DBN bytes.

A batch ZIP holds per-UTC-day ``*.dbn.zst`` files beside ``metadata.json``, ``manifest.json``
(each file's ``hash``, ``"sha256:<hex>"``), ``symbology.json`` (``result``: raw symbol ->
``[{d0, d1, s}]`` intervals, d1 exclusive) and ``condition.json`` (``[{date, condition}]``).
Reading is lenient (sidecars may be absent, a hash may lack its ``sha256:`` prefix) and
verifying is strict (a hash that differs, a bad CRC, an unsafe member name or type is an
error). Nothing is extracted to disk: members are streamed, ``.zst`` ones decompressed on the fly.
CSV members (``*.csv``, ``*.csv.zst``: Databento's CSV encoding) are listed and verified like
DBN ones; what the sidecars mean is read by :mod:`hft_pipeline.ingest.sidecars`.

Zip bombs are refused before and while reading. Opening checks what the central directory
declares: the total uncompressed size, each member's compression ratio, and that each member's
compressed bytes really lie in the file (no overlapping entries, no inflated ``compress_size``
diluting the ratio). A lying ``file_size`` cannot get past either: ``zipfile`` stops a member at
its declared size and the CRC then fails. The zstd stream inside a ``.zst`` member has no
trustworthy header at all, so :class:`ZstdFramesReader` measures its ratio as it decompresses.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import stat
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import zstandard

from hft_pipeline.config import DataSettings
from hft_pipeline.ingest.decode import ByteStream
from hft_pipeline.ingest.sidecars import degraded_days, root_instruments

__all__ = [
    "ArchiveContents",
    "ArchiveError",
    "CompressionRatioError",
    "ZstdFramesReader",
    "degraded_days",
    "inspect_archive",
    "manifest_hashes",
    "open_member_stream",
    "root_instruments",
]

DBN_SUFFIXES = (".dbn", ".dbn.zst")
CSV_SUFFIXES = (".csv", ".csv.zst")  # Databento's CSV encoding of the same records
METADATA_JSON = "metadata.json"
MANIFEST_JSON = "manifest.json"
SYMBOLOGY_JSON = "symbology.json"
CONDITION_JSON = "condition.json"
# Sidecars are small; a larger one is not a Databento sidecar and is not read into memory.
_MAX_SIDECAR_BYTES = 64 * 2**20
_HASH_BLOCK_BYTES = 2**20
# Compressed bytes read from the member at a time (DBN compresses ~10:1).
_COMPRESSED_PIECE_BYTES = 2**17
# Compressed bytes given to the zstd decompressor per call: an RLE block expands about
# 32768:1, so one call yields at most ~128 MiB before the ratio is checked again.
_ZSTD_FEED_BYTES = 2**12
# Zip-bomb caps; the defaults are DataSettings' (GB = 1e9 bytes).
DEFAULT_MAX_UNCOMPRESSED_GB = DataSettings.archive_max_uncompressed_gb
DEFAULT_MAX_COMPRESSION_RATIO = DataSettings.archive_max_compression_ratio
# Output allowed beyond ratio x compressed size: a small sidecar or a DBN metadata frame may
# compress better than bulk records without being a bomb.
RATIO_SLACK_BYTES = 2**20
# Errors the zipfile / zlib / zstandard stack raises on damaged bytes.
_DAMAGED_BYTES_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, zstandard.ZstdError)


class CompressionRatioError(ValueError):
    """A compressed stream expanding beyond the ratio cap: a possible decompression bomb."""


class ArchiveError(ValueError):
    """A raw archive that cannot be trusted or read; names the archive, member and problem."""

    def __init__(self, archive: Path | str, member: str | None, problem: str):
        self.archive = Path(archive).name
        self.member = member
        self.problem = problem
        where = f"archive {self.archive}" + (f", member {member!r}" if member else "")
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class ArchiveContents:
    """What one ZIP holds, read and verified before any record is decoded."""

    path: Path
    dbn_members: list[str]  # sorted by name: the order their records are read in
    sha256: dict[str, str]  # DBN or CSV member -> hex digest of its stored (compressed) bytes
    verified_by_manifest: bool
    metadata: Any | None  # metadata.json, parsed
    symbology: Any | None  # symbology.json, parsed
    condition: Any | None  # condition.json, parsed
    csv_members: list[str] = field(default_factory=list)  # *.csv, *.csv.zst; sorted by name


def inspect_archive(
    path: Path,
    *,
    max_uncompressed_gb: float = DEFAULT_MAX_UNCOMPRESSED_GB,
    max_compression_ratio: float = DEFAULT_MAX_COMPRESSION_RATIO,
) -> ArchiveContents:
    """Open a batch ZIP, check its members, read its sidecars, hash every DBN and CSV member.

    Parameters
    ----------
    path : Path
        Local ZIP file.
    max_uncompressed_gb : float, default DataSettings.archive_max_uncompressed_gb (200)
        Cap on the total uncompressed size the members declare, in GB (1e9 bytes).
    max_compression_ratio : float, default DataSettings.archive_max_compression_ratio (200)
        Cap on a member's uncompressed / compressed size (plus ``RATIO_SLACK_BYTES``).

    Returns
    -------
    ArchiveContents
        The DBN and CSV member names (sorted) with their SHA-256, and the parsed JSON sidecars.

    Raises
    ------
    ArchiveError
        Not a ZIP, a truncated or CRC-damaged member, a member path with ``..`` or an absolute
        path, a symbolic link or other special file, sizes over the caps or headers that
        overlap, a DBN or CSV member whose SHA-256 differs from manifest.json (or is missing
        from it), an unparsable sidecar, or no DBN or CSV member at all.
    """
    with _open_zip(path, max_uncompressed_gb, max_compression_ratio) as archive:
        names = [info.filename for info in archive.infolist() if not info.is_dir()]
        dbn_members = sorted(name for name in names if name.endswith(DBN_SUFFIXES))
        csv_members = sorted(name for name in names if name.endswith(CSV_SUFFIXES))
        data_members = set(dbn_members + csv_members)
        if not data_members:
            raise ArchiveError(
                path,
                None,
                "no DBN member (*.dbn, *.dbn.zst) or CSV member (*.csv, *.csv.zst) among "
                f"{sorted(names)[:10]}",
            )
        sidecars = {
            sidecar: _read_sidecar(archive, path, names, sidecar)
            for sidecar in (METADATA_JSON, MANIFEST_JSON, SYMBOLOGY_JSON, CONDITION_JSON)
        }
        expected = manifest_hashes(sidecars[MANIFEST_JSON]) if sidecars[MANIFEST_JSON] else {}
        digests = {}
        for member in sorted(names):
            wanted = expected.get(member) or expected.get(PurePosixPath(member).name)
            if member in data_members or wanted:
                digests[member] = _member_sha256(archive, path, member)
            if wanted and digests[member] != wanted:
                raise ArchiveError(
                    path,
                    member,
                    f"SHA-256 {digests[member]} differs from {wanted} in manifest.json: the "
                    "file is damaged or was altered; download the archive again",
                )
            if expected and member in data_members and not wanted:
                raise ArchiveError(
                    path, member, "not listed in manifest.json, so its bytes cannot be verified"
                )
    return ArchiveContents(
        path=path,
        dbn_members=dbn_members,
        sha256={member: digests[member] for member in sorted(data_members)},
        verified_by_manifest=bool(expected),
        metadata=sidecars[METADATA_JSON],
        symbology=sidecars[SYMBOLOGY_JSON],
        condition=sidecars[CONDITION_JSON],
        csv_members=csv_members,
    )


@contextlib.contextmanager
def open_member_stream(
    path: Path,
    member: str,
    *,
    max_uncompressed_gb: float = DEFAULT_MAX_UNCOMPRESSED_GB,
    max_compression_ratio: float = DEFAULT_MAX_COMPRESSION_RATIO,
) -> Iterator[ByteStream]:
    """Yield a binary stream of a member's bytes, zstd-decompressed when it ends in ``.zst``.

    The archive is checked as :func:`inspect_archive` checks it (names, types, declared sizes
    against the caps). Damaged bytes met while the caller reads (bad CRC, truncated data, bad
    zstd frame) and a zstd stream expanding beyond ``max_compression_ratio`` surface as
    :class:`ArchiveError` naming the archive and member.
    """
    with _open_zip(path, max_uncompressed_gb, max_compression_ratio) as archive:
        try:
            with archive.open(member) as stored:
                if member.endswith(".zst"):
                    yield ZstdFramesReader(stored, max_compression_ratio=max_compression_ratio)
                else:
                    yield stored
        except _DAMAGED_BYTES_ERRORS as error:
            raise ArchiveError(path, member, f"damaged or truncated bytes ({error})") from error
        except CompressionRatioError as error:
            raise ArchiveError(
                path,
                member,
                f"{error}; refusing a possible zip bomb (the cap is the setting "
                "archive_max_compression_ratio)",
            ) from error


class ZstdFramesReader:
    """Binary stream of concatenated zstd frames, decompressed a bounded piece at a time.

    Unlike ``zstandard``'s stream reader, a stream that ends inside a frame (a truncated
    file) raises ``zstandard.ZstdError`` instead of reading as a shorter, valid-looking file.
    DBN v1 files hold two frames (metadata, then records).

    Parameters
    ----------
    compressed : ByteStream
        The zstd bytes.
    max_compression_ratio : float, default DataSettings.archive_max_compression_ratio (200)
        Once the output exceeds this many times the compressed bytes read (plus
        ``RATIO_SLACK_BYTES``), reading raises :class:`CompressionRatioError`.
    """

    def __init__(
        self,
        compressed: ByteStream,
        *,
        max_compression_ratio: float = DEFAULT_MAX_COMPRESSION_RATIO,
    ):
        self._compressed = compressed
        self._max_ratio = max_compression_ratio
        self._frame: Any | None = None  # decompressor of the frame being read; None between
        self._pending, self._offset = b"", 0  # decompressed bytes not yet returned
        self._bytes_in = self._bytes_out = 0  # over the whole stream, for the ratio cap

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that remain when negative); b"" at the end."""
        if size < 0:
            return b"".join(iter(lambda: self.read(_COMPRESSED_PIECE_BYTES), b""))
        while self._offset == len(self._pending):
            piece = self._compressed.read(_COMPRESSED_PIECE_BYTES)
            if not piece:
                if self._frame is not None:
                    raise zstandard.ZstdError("stream ends inside a zstd frame: truncated file")
                return b""
            self._pending, self._offset = self._decompress(piece), 0
        start, self._offset = self._offset, min(self._offset + size, len(self._pending))
        return self._pending[start : self._offset]

    def _decompress(self, piece: bytes) -> bytes:
        output = []
        view = memoryview(piece)
        for start in range(0, len(view), _ZSTD_FEED_BYTES):
            feed = view[start : start + _ZSTD_FEED_BYTES]
            self._bytes_in += len(feed)
            while feed:
                if self._frame is None:
                    self._frame = zstandard.ZstdDecompressor().decompressobj()
                output.append(self._frame.decompress(feed))
                self._bytes_out += len(output[-1])
                if self._frame.eof:  # the rest of the feed starts the next frame
                    feed, self._frame = self._frame.unused_data, None
                else:
                    feed = b""
            if self._bytes_out > self._max_ratio * self._bytes_in + RATIO_SLACK_BYTES:
                raise CompressionRatioError(
                    f"zstd stream expands {self._bytes_in} compressed bytes to more than "
                    f"{self._bytes_out}, over {self._max_ratio:g} times"
                )
        return b"".join(output)


def manifest_hashes(manifest: Any) -> dict[str, str]:
    """File name -> lowercase hex SHA-256 from a manifest.json (``{"files": [...]}`` or a list).

    Entries name the file in ``filename`` (or ``name``/``path``) and the digest in ``hash``
    (``"sha256:<hex>"`` or bare hex) or ``sha256``; entries with another algorithm are skipped.
    """
    entries = manifest.get("files", []) if isinstance(manifest, Mapping) else manifest
    hashes = {}
    for entry in entries if isinstance(entries, Sequence) else []:
        if not isinstance(entry, Mapping):
            continue
        name = entry.get("filename") or entry.get("name") or entry.get("path")
        digest = str(entry.get("hash") or entry.get("sha256") or "")
        algorithm, _, hex_digest = digest.rpartition(":")
        if name and hex_digest and algorithm in ("", "sha256"):
            hashes[str(name)] = hex_digest.lower()
    return hashes


@contextlib.contextmanager
def _open_zip(
    path: Path, max_uncompressed_gb: float, max_compression_ratio: float
) -> Iterator[zipfile.ZipFile]:
    """The open ZIP, once its central directory names only safe, plausible members."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ArchiveError(path, None, f"not a readable ZIP file ({error})") from error
    with archive:
        seen = set()
        for info in archive.infolist():
            _check_member_name(path, info.filename)
            if info.filename in seen:
                raise ArchiveError(path, info.filename, "appears twice; refusing the archive")
            seen.add(info.filename)
            _check_member_type(path, info)
        _check_declared_sizes(path, archive, max_uncompressed_gb, max_compression_ratio)
        yield archive


def _check_member_name(path: Path, name: str) -> None:
    """Refuse names that would escape a folder if the archive were ever extracted."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts or (posix.parts and ":" in posix.parts[0]):
        raise ArchiveError(
            path, name, "unsafe member path (absolute or containing '..'); refusing the archive"
        )


def _check_member_type(path: Path, info: zipfile.ZipInfo) -> None:
    """Refuse symbolic links and other special files (unix mode in ``external_attr``)."""
    mode = info.external_attr >> 16
    file_type = stat.S_IFMT(mode)
    if file_type in (0, stat.S_IFREG, stat.S_IFDIR):
        return
    kind = "a symbolic link" if file_type == stat.S_IFLNK else "not a regular file"
    raise ArchiveError(
        path, info.filename, f"is {kind} (unix mode {mode:#o}); refusing the archive"
    )


def _check_declared_sizes(
    path: Path, archive: zipfile.ZipFile, max_uncompressed_gb: float, max_ratio: float
) -> None:
    """Refuse a zip bomb from its central directory, before any member is decompressed.

    Each member's compressed bytes must end before the next entry (or the central directory)
    starts: entries sharing bytes, or a ``compress_size`` inflated to dilute the ratio, are
    refused, so the ratio cap bounds the output by bytes that really are in the file.
    """
    infos = sorted(archive.infolist(), key=lambda info: info.header_offset)
    next_offsets = [info.header_offset for info in infos[1:]] + [archive.start_dir]
    for info, next_offset in zip(infos, next_offsets, strict=True):
        if info.header_offset + info.compress_size > next_offset:
            raise ArchiveError(
                path,
                info.filename,
                f"claims {info.compress_size} compressed bytes at offset {info.header_offset}, "
                f"but the next entry starts at {next_offset}: overlapping or lying headers; "
                "refusing the archive",
            )
        if info.file_size > max_ratio * info.compress_size + RATIO_SLACK_BYTES:
            raise ArchiveError(
                path,
                info.filename,
                f"declares {info.file_size} bytes from {info.compress_size} compressed, over "
                f"{max_ratio:g} times; refusing a possible zip bomb (the cap is the setting "
                "archive_max_compression_ratio)",
            )
    total = sum(info.file_size for info in infos)
    if total > max_uncompressed_gb * 1e9:
        raise ArchiveError(
            path,
            None,
            f"members declare {total / 1e9:.3f} GB uncompressed, over the cap of "
            f"{max_uncompressed_gb:g} GB (setting archive_max_uncompressed_gb); refusing a "
            "possible zip bomb",
        )


def _read_sidecar(archive: zipfile.ZipFile, path: Path, names: list[str], sidecar: str) -> Any:
    """The parsed JSON sidecar at the top level (or in one folder), or None when absent."""
    matches = sorted((name for name in names if PurePosixPath(name).name == sidecar), key=len)
    if not matches:
        return None
    member = matches[0]
    if archive.getinfo(member).file_size > _MAX_SIDECAR_BYTES:
        raise ArchiveError(path, member, f"larger than {_MAX_SIDECAR_BYTES} bytes")
    try:
        return json.loads(archive.read(member))
    except _DAMAGED_BYTES_ERRORS as error:
        raise ArchiveError(path, member, f"damaged or truncated bytes ({error})") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArchiveError(path, member, f"not valid JSON ({error})") from error


def _member_sha256(archive: zipfile.ZipFile, path: Path, member: str) -> str:
    """SHA-256 of the member's stored bytes; reading to the end also checks the ZIP CRC."""
    digest = hashlib.sha256()
    try:
        with archive.open(member) as stored:
            while block := stored.read(_HASH_BLOCK_BYTES):
                digest.update(block)
    except _DAMAGED_BYTES_ERRORS as error:
        raise ArchiveError(path, member, f"damaged or truncated bytes ({error})") from error
    except (RuntimeError, NotImplementedError) as error:
        # zipfile's words for an encrypted member or an unsupported compression method.
        raise ArchiveError(path, member, f"cannot be read ({error})") from error
    return digest.hexdigest()
