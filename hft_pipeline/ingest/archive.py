"""Safe reading of a Databento batch-download ZIP: members, JSON sidecars, verified DBN bytes.

A batch ZIP holds per-UTC-day ``*.dbn.zst`` files beside ``metadata.json``, ``manifest.json``
(each file's ``hash``, ``"sha256:<hex>"``), ``symbology.json`` (``result``: raw symbol ->
``[{d0, d1, s}]`` intervals, d1 exclusive) and ``condition.json`` (``[{date, condition}]``).
Reading is lenient (sidecars may be absent, a hash may lack its ``sha256:`` prefix) and
verifying is strict (a hash that differs, a bad CRC or an unsafe member name is an error).
Nothing is extracted to disk: members are streamed, ``.zst`` ones decompressed on the fly.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import zstandard

from hft_pipeline.ingest.decode import ByteStream
from hft_pipeline.instruments import contract_root

DBN_SUFFIXES = (".dbn", ".dbn.zst")
METADATA_JSON = "metadata.json"
MANIFEST_JSON = "manifest.json"
SYMBOLOGY_JSON = "symbology.json"
CONDITION_JSON = "condition.json"
# Sidecars are small; a larger one is not a Databento sidecar and is not read into memory.
_MAX_SIDECAR_BYTES = 64 * 2**20
_HASH_BLOCK_BYTES = 2**20
# Compressed bytes decompressed at a time: bounds the output held (DBN compresses ~10:1).
_COMPRESSED_PIECE_BYTES = 2**17
# Errors the zipfile / zlib / zstandard stack raises on damaged bytes.
_DAMAGED_BYTES_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, zstandard.ZstdError)


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
    sha256: dict[str, str]  # DBN member -> hex digest of its stored (compressed) bytes
    verified_by_manifest: bool
    metadata: Any | None  # metadata.json, parsed
    symbology: Any | None  # symbology.json, parsed
    condition: Any | None  # condition.json, parsed


def inspect_archive(path: Path) -> ArchiveContents:
    """Open a batch ZIP, check its member names, read its sidecars, hash every DBN member.

    Parameters
    ----------
    path : Path
        Local ZIP file.

    Returns
    -------
    ArchiveContents
        The DBN member names (sorted) with their SHA-256, and the parsed JSON sidecars.

    Raises
    ------
    ArchiveError
        Not a ZIP, a truncated or CRC-damaged member, a member path with ``..`` or an absolute
        path, a DBN member whose SHA-256 differs from manifest.json (or is missing from it),
        an unparsable sidecar, or no DBN member at all.
    """
    with _open_zip(path) as archive:
        names = [info.filename for info in archive.infolist() if not info.is_dir()]
        dbn_members = sorted(name for name in names if name.endswith(DBN_SUFFIXES))
        if not dbn_members:
            raise ArchiveError(
                path, None, f"no DBN member (*.dbn or *.dbn.zst) among {sorted(names)[:10]}"
            )
        sidecars = {
            sidecar: _read_sidecar(archive, path, names, sidecar)
            for sidecar in (METADATA_JSON, MANIFEST_JSON, SYMBOLOGY_JSON, CONDITION_JSON)
        }
        expected = manifest_hashes(sidecars[MANIFEST_JSON]) if sidecars[MANIFEST_JSON] else {}
        digests = {}
        for member in sorted(names):
            wanted = expected.get(member) or expected.get(PurePosixPath(member).name)
            if member in dbn_members or wanted:
                digests[member] = _member_sha256(archive, path, member)
            if wanted and digests[member] != wanted:
                raise ArchiveError(
                    path,
                    member,
                    f"SHA-256 {digests[member]} differs from {wanted} in manifest.json: the "
                    "file is damaged or was altered; download the archive again",
                )
            if expected and member in dbn_members and not wanted:
                raise ArchiveError(
                    path, member, "not listed in manifest.json, so its bytes cannot be verified"
                )
    return ArchiveContents(
        path=path,
        dbn_members=dbn_members,
        sha256={member: digests[member] for member in dbn_members},
        verified_by_manifest=bool(expected),
        metadata=sidecars[METADATA_JSON],
        symbology=sidecars[SYMBOLOGY_JSON],
        condition=sidecars[CONDITION_JSON],
    )


@contextlib.contextmanager
def open_member_stream(path: Path, member: str) -> Iterator[ByteStream]:
    """Yield a binary stream of a member's bytes, zstd-decompressed when it ends in ``.zst``.

    Damaged bytes met while the caller reads (bad CRC, truncated data, bad zstd frame)
    surface as :class:`ArchiveError` naming the archive and member.
    """
    with _open_zip(path) as archive:
        try:
            with archive.open(member) as stored:
                yield ZstdFramesReader(stored) if member.endswith(".zst") else stored
        except _DAMAGED_BYTES_ERRORS as error:
            raise ArchiveError(path, member, f"damaged or truncated bytes ({error})") from error


class ZstdFramesReader:
    """Binary stream of concatenated zstd frames, decompressed a bounded piece at a time.

    Unlike ``zstandard``'s stream reader, a stream that ends inside a frame (a truncated
    file) raises ``zstandard.ZstdError`` instead of reading as a shorter, valid-looking file.
    DBN v1 files hold two frames (metadata, then records).
    """

    def __init__(self, compressed: ByteStream):
        self._compressed = compressed
        self._frame: Any | None = None  # decompressor of the frame being read; None between
        self._pending, self._offset = b"", 0  # decompressed bytes not yet returned

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
        while piece:
            if self._frame is None:
                self._frame = zstandard.ZstdDecompressor().decompressobj()
            output.append(self._frame.decompress(piece))
            if self._frame.eof:  # the rest of the piece starts the next frame
                piece, self._frame = self._frame.unused_data, None
            else:
                piece = b""
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


def root_instruments(
    symbology_result: Mapping[str, Any], root: str, days: Sequence[dt.date]
) -> dict[int, str]:
    """instrument_id -> contract (e.g. 5482 -> ``ESH1``) for the root's outright contracts.

    Parameters
    ----------
    symbology_result : Mapping
        ``{raw_symbol: [{"d0": date, "d1": date, "s": instrument_id}]}`` as in symbology.json's
        ``result`` (d1 exclusive); ISO strings or dates. The reverse direction
        (``{instrument_id: [{..., "s": raw_symbol}]}``) is read too.
    root : str
        Root symbol, e.g. ``ES``; spreads (``ESH1-ESM1``) and other roots are left out.
    days : Sequence[date]
        UTC days of the session: only intervals overlapping them count.

    Raises
    ------
    ValueError
        One instrument_id mapped to two of the root's contracts within ``days``.
    """
    first, last = min(days), max(days)
    found: dict[int, str] = {}
    for key, intervals in symbology_result.items():
        if not isinstance(intervals, list):
            continue  # a request field (stype_in, ...) beside the mappings, not a symbol
        for interval in intervals:
            if not isinstance(interval, Mapping):
                continue
            start, end = _as_date(interval.get("d0")), _as_date(interval.get("d1"))
            if start is None or end is None or start > last or end <= first:
                continue
            contract, instrument = _contract_and_id(str(key), str(interval.get("s", "")), root)
            if contract is None:
                continue
            if found.setdefault(instrument, contract) != contract:
                raise ValueError(
                    f"instrument_id {instrument} maps to both {found[instrument]} and {contract} "
                    f"between {first} and {last}"
                )
    return found


def degraded_days(condition: Any, days: Sequence[dt.date]) -> list[dt.date]:
    """The days among ``days`` that condition.json marks ``degraded``.

    Reads Databento's list form (``[{"date": "2024-01-02", "condition": "degraded"}]``) and a
    plain ``{date: condition}`` mapping.
    """
    if isinstance(condition, Mapping):
        entries = [{"date": day, "condition": state} for day, state in condition.items()]
    else:
        entries = condition if isinstance(condition, Sequence) else []
    marked = {
        _as_date(entry.get("date"))
        for entry in entries
        if isinstance(entry, Mapping) and str(entry.get("condition", "")).lower() == "degraded"
    }
    return [day for day in days if day in marked]


@contextlib.contextmanager
def _open_zip(path: Path) -> Iterator[zipfile.ZipFile]:
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
        yield archive


def _check_member_name(path: Path, name: str) -> None:
    """Refuse names that would escape a folder if the archive were ever extracted."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts or (posix.parts and ":" in posix.parts[0]):
        raise ArchiveError(
            path, name, "unsafe member path (absolute or containing '..'); refusing the archive"
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


def _contract_and_id(key: str, value: str, root: str) -> tuple[str | None, int]:
    if contract_root(key) == root and value.isdigit():
        return key, int(value)
    if contract_root(value) == root and key.isdigit():
        return value, int(key)
    return None, 0


def _as_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None
