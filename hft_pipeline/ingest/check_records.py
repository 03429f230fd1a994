"""The verdicts of a SLIM file's data-quality checks, stored beside it (``*.checks.json``), so
that a later run of ``features`` can refuse a day whose latest SLIM checks failed, whichever run
produced them. A record names the SHA-256 of the file it judged: an ingest stopped between
writing a new SLIM file and its checks leaves a record of the earlier file, which then no
longer counts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from hft_pipeline.ingest.quality import QualityCheck
from hft_pipeline.layout import atomic_file

_HASH_BLOCK_BYTES = 2**20


def checks_file(slim_path: Path) -> Path:
    return slim_path.with_name(slim_path.name.removesuffix(".parquet") + ".checks.json")


def write_check_record(slim_path: Path, checks: list[QualityCheck]) -> None:
    """Store ``checks`` beside the SLIM file, with the SHA-256 of the bytes they judged."""
    record = {"slim_sha256": _sha256(slim_path), "checks": [asdict(check) for check in checks]}
    with atomic_file(checks_file(slim_path)) as temporary:
        temporary.write_text(json.dumps(record, indent=1))


def failed_checks(slim_path: Path) -> list[str]:
    """Names of the failed checks of the file's latest ingest.

    Raises
    ------
    FileNotFoundError
        No check record, or one that judged other bytes than the file holds now (the ingest
        that wrote the file stopped before its checks were recorded).
    """
    record_path = checks_file(slim_path)
    rerun = "re-materialize its slim_parquet partition so its data-quality checks run"
    if not record_path.is_file():
        raise FileNotFoundError(
            f"{slim_path.name} has no check record ({record_path.name}): {rerun}"
        )
    record = json.loads(record_path.read_text())
    judged = record.get("slim_sha256") if isinstance(record, dict) else None
    if judged != (found := _sha256(slim_path)):
        raise FileNotFoundError(
            f"{slim_path.name} has no check record of its current bytes: {record_path.name} "
            f"judged SHA-256 {judged}, the file's is {found}; {rerun}"
        )
    return [check["name"] for check in record["checks"] if not check["passed"]]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(_HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()
