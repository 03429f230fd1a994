"""Builders of small synthetic DBN streams and Databento-like batch ZIPs for the ingest tests.

No tests here (the module is named test_* so that it lives beside the tests it serves): records
are numpy arrays of the dbn_layout dtypes behind a header from ``databento_dbn.Metadata``, so
the bytes are what Databento's own encoder would write.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import struct
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace

import databento_dbn
import numpy as np
import zstandard

from hft_pipeline.ingest.dbn_layout import (
    DTYPE_BY_RTYPE,
    MBO_DTYPE,
    OHLCV_DTYPE,
    PRICE_SCALE,
    RTYPE_MBO,
    UNDEF_PRICE,
)
from hft_pipeline.partitions import Session

ES_TICK_FIXED = PRICE_SCALE // 4  # 0.25 index points in DBN fixed-point units
BASE_PRICE_FIXED = 3_700 * PRICE_SCALE
# A CME session of 2021-01-05: 2021-01-04 23:00 UTC -> 2021-01-05 22:00 UTC.
SESSION = Session(dt.date(2021, 1, 5), 1_609_801_200 * 10**9, 1_609_884_000 * 10**9)
SESSION_DAY0 = dt.date(2021, 1, 4)
_RTYPE_BY_DTYPE = {dtype: rtype for rtype, dtype in DTYPE_BY_RTYPE.items()}


def make_records(
    dtype: np.dtype,
    ts_recv: Sequence[int],
    *,
    instrument_ids: int | Sequence[int] = 5482,
    actions: bytes | Sequence[bytes] = b"A",
    sizes: int | Sequence[int] = 1,
    sequence: Sequence[int] | None = None,
) -> np.ndarray:
    """Records of ``dtype`` with a valid header and a book around 3700 that moves each row."""
    count = len(ts_recv)
    steps = np.arange(count) % 8
    records = np.zeros(count, dtype)
    records["length"] = dtype.itemsize // 4
    records["rtype"] = _RTYPE_BY_DTYPE[dtype]
    records["publisher_id"] = 1
    records["instrument_id"] = instrument_ids
    records["ts_recv"] = ts_recv
    records["ts_event"] = np.asarray(ts_recv, dtype=np.uint64) - 500
    records["sequence"] = np.arange(1, count + 1) if sequence is None else sequence
    records["action"] = actions
    records["side"] = np.where(steps % 2 == 0, b"B", b"A")
    records["price"] = BASE_PRICE_FIXED + steps * ES_TICK_FIXED
    records["size"] = sizes
    records["flags"] = 128
    if "levels" in dtype.names:
        for depth in range(records["levels"].shape[1]):
            level = records["levels"][:, depth]
            level["bid_px"] = BASE_PRICE_FIXED + (steps - depth - 1) * ES_TICK_FIXED
            level["ask_px"] = BASE_PRICE_FIXED + (steps + depth) * ES_TICK_FIXED
            level["bid_sz"], level["ask_sz"] = 10 + depth, 20 + depth
            level["bid_ct"], level["ask_ct"] = 1 + depth, 2 + depth
    return records


def dbn_stream(
    records: np.ndarray,
    schema: str | None,
    *,
    start_ns: int = SESSION.open_ns,
    end_ns: int | None = SESSION.close_ns,
    version: int = 3,
    compress: bool = True,
) -> bytes:
    """A DBN stream (zstd-compressed unless asked not to) holding ``records``."""
    metadata = databento_dbn.Metadata(
        dataset="GLBX.MDP3",
        start=start_ns,
        end=end_ns,
        stype_in=databento_dbn.SType.RAW_SYMBOL,
        stype_out=databento_dbn.SType.INSTRUMENT_ID,
        schema=None if schema is None else databento_dbn.Schema.from_str(schema),
        symbols=["ES.FUT"],
        version=version,
    )
    raw = metadata.encode() + records.tobytes()
    return zstandard.ZstdCompressor().compress(raw) if compress else raw


def symbology(
    contracts: Mapping[str, int],
    first_day: dt.date = SESSION_DAY0,
    end_day: dt.date = SESSION.day + dt.timedelta(days=1),
) -> dict:
    """symbology.json of a raw_symbol -> instrument_id request, d1 exclusive."""
    return {
        "result": {
            contract: [{"d0": first_day.isoformat(), "d1": end_day.isoformat(), "s": str(iid)}]
            for contract, iid in contracts.items()
        },
        "stype_in": "raw_symbol",
        "stype_out": "instrument_id",
    }


def write_archive(
    path: Path,
    members: Mapping[str, bytes],
    *,
    symbology_json: dict | None = None,
    condition_json: list | None = None,
    with_manifest: bool = True,
) -> Path:
    """A batch ZIP: members, sidecars and a manifest.json of every file's SHA-256."""
    files = dict(members)
    if symbology_json is not None:
        files["symbology.json"] = json.dumps(symbology_json).encode()
    if condition_json is not None:
        files["condition.json"] = json.dumps(condition_json).encode()
    if with_manifest:
        manifest = [
            {"filename": name, "size": len(data), "hash": f"sha256:{sha256(data)}"}
            for name, data in files.items()
        ]
        files["manifest.json"] = json.dumps({"files": manifest}).encode()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def es_archive(path: Path, records: np.ndarray, schema: str = "mbp-10", **kwargs) -> Path:
    """An archive of one ESH1 (5482) / ESM1 (5483) member for the session of 2021-01-05."""
    member = f"glbx-mdp3-20210105.{schema}.dbn.zst"
    return write_archive(
        path,
        {member: dbn_stream(records, schema)},
        symbology_json=symbology({"ESH1": 5482, "ESM1": 5483, "ESH1-ESM1": 9999}),
        **kwargs,
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def session_times(count: int, *, step_ns: int = 1_000_000) -> np.ndarray:
    """``count`` increasing receive times from one second after the session opens."""
    return SESSION.open_ns + 10**9 + np.arange(count, dtype=np.uint64) * step_ns


def make_ohlcv_records(
    rtype: int, ts_event: Sequence[int], closes: Sequence[float], *, instrument_id: int = 5482
) -> np.ndarray:
    """Bars of ``rtype`` opening at ``ts_event``: open one tick under the close, high and low
    one tick either side, volume 10 per bar; prices in index points."""
    close = np.round(np.asarray(closes) * PRICE_SCALE).astype(np.int64)
    records = np.zeros(len(ts_event), OHLCV_DTYPE)
    records["length"] = OHLCV_DTYPE.itemsize // 4
    records["rtype"] = rtype
    records["publisher_id"] = 1
    records["instrument_id"] = instrument_id
    records["ts_event"] = ts_event
    records["open"] = close - ES_TICK_FIXED
    records["high"] = close + ES_TICK_FIXED
    records["low"] = close - 2 * ES_TICK_FIXED
    records["close"] = close
    records["volume"] = 10
    return records


def make_mbo_records(
    events: Sequence[tuple[str, str, int, float | None, int]],
    *,
    instrument_id: int = 5482,
    flags: int = 128,
    start_ns: int = SESSION.open_ns,
) -> np.ndarray:
    """MBO records from ``(action, side, order_id, price, size)`` tuples, one per microsecond.

    Prices are in index points (``None``: undefined, as on a clear-book record); every record
    carries ``flags`` (default F_LAST: each event is complete on its own)."""
    records = np.zeros(len(events), MBO_DTYPE)
    records["length"] = MBO_DTYPE.itemsize // 4
    records["rtype"] = RTYPE_MBO
    records["publisher_id"] = 1
    records["instrument_id"] = instrument_id
    records["ts_recv"] = start_ns + np.arange(len(events), dtype=np.uint64) * 1_000
    records["ts_event"] = records["ts_recv"] - 500
    records["sequence"] = np.arange(1, len(events) + 1)
    records["flags"] = flags
    for record, (action, side, order_id, price, size) in zip(records, events, strict=True):
        record["action"], record["side"] = action.encode(), side.encode()
        record["order_id"], record["size"] = order_id, size
        record["price"] = UNDEF_PRICE if price is None else round(price * PRICE_SCALE)
    return records


def read_zstd(path: Path) -> bytes:
    """A zstd-compressed file's decompressed bytes (the real .dbn.zst files are small)."""
    with path.open("rb") as compressed:
        return zstandard.ZstdDecompressor().stream_reader(compressed).read()


def upgrade_to_v2(data: bytes) -> bytes:
    """databento-dbn's own transcoding of a DBN v1 stream into a DBN v2 stream."""
    out = io.BytesIO()
    transcoder = databento_dbn.Transcoder(
        out,
        databento_dbn.Encoding.DBN,
        databento_dbn.Compression.NONE,
        upgrade_policy=databento_dbn.VersionUpgradePolicy.UPGRADE_TO_V2,
    )
    transcoder.write(data)
    transcoder.flush()
    return out.getvalue()


def dbn_at_version(data: bytes, version: int) -> bytes:
    """The same DBN stream with its metadata encoded by databento-dbn as DBN ``version``.

    MBP-10, MBP-1/TBBO, trade, OHLCV and MBO records have one layout in versions 1-3, so the
    record bytes follow unchanged: the real v3 fixtures of every schema become real v1 and v2
    streams (databento-dbn itself only upgrades, it never writes an older version)."""
    found = databento_dbn.Metadata.decode(data)
    (length,) = struct.unpack_from("<I", data, 4)
    metadata = databento_dbn.Metadata(
        dataset=found.dataset,
        start=found.start,
        end=found.end,
        limit=found.limit,
        stype_in=found.stype_in,
        stype_out=found.stype_out,
        schema=found.schema,
        symbols=found.symbols,
        partial=found.partial,
        not_found=found.not_found,
        mappings=[
            SimpleNamespace(
                raw_symbol=raw,
                intervals=[
                    SimpleNamespace(
                        start_date=i["start_date"], end_date=i["end_date"], symbol=i["symbol"]
                    )
                    for i in intervals
                ],
            )
            for raw, intervals in found.mappings.items()
        ],
        ts_out=found.ts_out,
        version=version,
    )
    return metadata.encode() + data[8 + length :]


class TrickleStream(io.RawIOBase):
    """Returns at most 7 bytes per read, as a decompressor may: reads must be looped."""

    def __init__(self, data: bytes):
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._inner.read(min(size, 7) if size >= 0 else 7)
