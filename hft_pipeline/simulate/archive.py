"""Databento-style batch-download ZIPs of simulated MBP-10 data, byte-for-byte deterministic.

One ZIP per UTC day per root symbol, at ``raw/<yyyy>/<yyyymmdd>/<SYMBOL>/glbx-mdp3-<yyyymmdd>-
<SYMBOL>.zip``, holding:

- ``glbx-mdp3-<yyyymmdd>.mbp-10.dbn.zst``: a DBN v3 stream (metadata from
  ``databento_dbn.Metadata.encode``, then the records' raw bytes), zstd-compressed, stored.
- ``metadata.json``: the job (``job_id``, ``query`` with dataset/schema/symbols/stype/start/end/
  encoding/compression, ``customizations`` with the split and packaging) plus a ``simulation``
  block saying how it was generated.
- ``symbology.json``: a ``symbology.resolve`` answer, contract code -> instrument id for the day.
- ``condition.json``: ``metadata.get_dataset_condition`` rows for the day.
- ``manifest.json``: every other member with its size and ``sha256:<hex>`` hash.

Members carry a fixed timestamp and JSON keeps its key order, so the same inputs give the same
bytes. Contract codes follow the quarterly H/M/U/Z cycle.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import databento_dbn
import numpy as np
import zstandard

from hft_pipeline.ingest.dbn_layout import MBP10_DTYPE
from hft_pipeline.instruments import MONTH_CODES

DATASET = "GLBX.MDP3"
SCHEMA = "mbp-10"
DBN_VERSION = 3
ZSTD_LEVEL = 3
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)  # the earliest a ZIP can hold: no build time leaks in
QUARTER_MONTHS = (3, 6, 9, 12)
# Equity-index futures roll on the Thursday 8 days before their third-Friday expiry; the same
# rule is used for every simulated root.
ROLL_DAYS_BEFORE_EXPIRY = 8
_NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class Contract:
    code: str  # e.g. ESH4
    instrument_id: int


def contract(code: str) -> Contract:
    """A contract with its instrument id, a stable function of the code (8 digits)."""
    return Contract(code, 10_000_000 + zlib.crc32(code.encode()) % 90_000_000)


def third_friday(year: int, month: int) -> dt.date:
    first = dt.date(year, month, 1)
    return first + dt.timedelta(days=(4 - first.weekday()) % 7 + 14)


def front_contract(root: str, day: dt.date) -> Contract:
    """The quarterly contract that is front on ``day`` (rolled 8 days before expiry)."""
    year, month = day.year, QUARTER_MONTHS[(day.month - 1) // 3]
    while day >= third_friday(year, month) - dt.timedelta(days=ROLL_DAYS_BEFORE_EXPIRY):
        year, month = (year + 1, 3) if month == 12 else (year, month + 3)
    return contract(f"{root}{MONTH_CODES[month - 1]}{year % 10}")


def archive_key(utc_day: dt.date, symbol: str) -> str:
    """Bucket key of one UTC day's archive of one root symbol."""
    return f"raw/{utc_day:%Y}/{utc_day:%Y%m%d}/{symbol}/glbx-mdp3-{utc_day:%Y%m%d}-{symbol}.zip"


def dbn_member_name(utc_day: dt.date) -> str:
    return f"glbx-mdp3-{utc_day:%Y%m%d}.{SCHEMA}.dbn.zst"


@dataclass(frozen=True)
class _Interval:  # databento_dbn.MappingInterval
    start_date: dt.date
    end_date: dt.date
    symbol: str


@dataclass(frozen=True)
class _SymbolMapping:  # databento_dbn.SymbolMapping
    raw_symbol: str
    intervals: tuple[_Interval, ...]


def encode_dbn(records: np.ndarray, utc_day: dt.date, contracts: list[Contract]) -> bytes:
    """A zstd-compressed DBN v3 stream: metadata for the UTC day, then the records."""
    if records.dtype != MBP10_DTYPE:
        raise TypeError(f"records must have dbn_layout.MBP10_DTYPE, found {records.dtype}")
    next_day = utc_day + dt.timedelta(days=1)
    metadata = databento_dbn.Metadata(
        dataset=DATASET,
        start=_day_ns(utc_day),
        end=_day_ns(next_day),
        stype_in=databento_dbn.SType.RAW_SYMBOL,
        stype_out=databento_dbn.SType.INSTRUMENT_ID,
        schema=databento_dbn.Schema.MBP_10,
        symbols=[c.code for c in contracts],
        partial=[],
        not_found=[],
        mappings=[
            _SymbolMapping(c.code, (_Interval(utc_day, next_day, str(c.instrument_id)),))
            for c in contracts
        ],
        version=DBN_VERSION,
    ).encode()  # includes the prelude: b"DBN", version, u32 metadata length
    body = np.ascontiguousarray(records).view(np.uint8)
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj(
        size=len(metadata) + body.size
    )
    return compressor.compress(metadata) + compressor.compress(body) + compressor.flush()


def write_archive(
    out_dir: Path,
    utc_day: dt.date,
    symbol: str,
    records: np.ndarray,
    contracts: list[Contract],
    simulation: dict[str, Any],
) -> Path:
    """Writes one UTC day's ZIP for one root symbol under ``out_dir``; returns its path.

    Parameters
    ----------
    out_dir : Path
        Bucket root: the archive lands at ``out_dir / archive_key(utc_day, symbol)``.
    utc_day : datetime.date
        The UTC calendar day every record's ``ts_recv`` falls in.
    symbol : str
        Root symbol (``ES``), the folder and file-name suffix.
    records : numpy.ndarray
        ``MBP10_DTYPE`` records sorted by ``ts_recv``.
    contracts : list[Contract]
        The contracts whose instrument ids appear in ``records``.
    simulation : dict
        How the data was generated (seed, signal, ...), copied into ``metadata.json``.
    """
    job_id = _job_id(utc_day, symbol, simulation)
    data_name = dbn_member_name(utc_day)
    data = encode_dbn(records, utc_day, contracts)
    support = {
        "metadata.json": _metadata_json(job_id, utc_day, contracts, simulation, records.size),
        "symbology.json": _symbology_json(utc_day, contracts),
        "condition.json": _condition_json(utc_day),
    }
    members = {name: _json_bytes(body) for name, body in support.items()}
    members[data_name] = data
    files = [
        {"filename": name, "size": len(body), "hash": f"sha256:{hashlib.sha256(body).hexdigest()}"}
        for name, body in members.items()
    ]
    members["manifest.json"] = _json_bytes({"job_id": job_id, "files": files})

    path = out_dir / archive_key(utc_day, symbol)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, body in members.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_TIMESTAMP)
            # The DBN member is already zstd: deflating it again would cost time for nothing.
            info.compress_type = zipfile.ZIP_STORED if name == data_name else zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, whatever machine writes it
            info.external_attr = 0o644 << 16
            archive.writestr(info, body)
    return path


def _metadata_json(
    job_id: str,
    utc_day: dt.date,
    contracts: list[Contract],
    simulation: dict[str, Any],
    record_count: int,
) -> dict[str, Any]:
    return {
        "version": 1,
        "job_id": job_id,
        "query": {
            "dataset": DATASET,
            "schema": SCHEMA,
            "symbols": [c.code for c in contracts],
            "stype_in": "raw_symbol",
            "stype_out": "instrument_id",
            "start": _iso_ns(utc_day),
            "end": _iso_ns(utc_day + dt.timedelta(days=1)),
            "limit": None,
            "encoding": "dbn",
            "compression": "zstd",
            "pretty_px": False,
            "pretty_ts": False,
            "map_symbols": False,
        },
        "customizations": {
            "split_duration": "day",
            "split_symbols": False,
            "split_size": None,
            "packaging": "zip",
            "delivery": "download",
        },
        "simulation": {**simulation, "record_count": record_count},
    }


def _symbology_json(utc_day: dt.date, contracts: list[Contract]) -> dict[str, Any]:
    next_day = (utc_day + dt.timedelta(days=1)).isoformat()
    return {
        "result": {
            c.code: [{"d0": utc_day.isoformat(), "d1": next_day, "s": str(c.instrument_id)}]
            for c in contracts
        },
        "symbols": [c.code for c in contracts],
        "stype_in": "raw_symbol",
        "stype_out": "instrument_id",
        "start_date": utc_day.isoformat(),
        "end_date": next_day,
        "partial": [],
        "not_found": [],
        "message": "OK",
        "status": 0,
    }


def _condition_json(utc_day: dt.date) -> list[dict[str, str]]:
    modified = (utc_day + dt.timedelta(days=1)).isoformat()
    return [{"date": utc_day.isoformat(), "condition": "available", "last_modified_date": modified}]


def _job_id(utc_day: dt.date, symbol: str, simulation: dict[str, Any]) -> str:
    """Databento-like ``GLBX-<yyyymmdd>-<10 characters>``, stable for the same inputs."""
    digest = hashlib.sha256(f"{utc_day}|{symbol}|{_json_bytes(simulation)!r}".encode()).digest()
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return f"GLBX-{utc_day:%Y%m%d}-" + "".join(alphabet[b % len(alphabet)] for b in digest[:10])


def _json_bytes(body: Any) -> bytes:
    return (json.dumps(body, indent=2) + "\n").encode()


def _day_ns(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * _NS_PER_DAY


def _iso_ns(day: dt.date) -> str:
    return f"{day.isoformat()}T00:00:00.000000000Z"
