"""DBN records -> SLIM rows: one conversion per record layout, shared by every source
(DBN, Databento CSV) that yields the layouts of :mod:`hft_pipeline.ingest.dbn_layout`."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from hft_pipeline.ingest.dbn_layout import PRICE_SCALE, UNDEF_PRICE
from hft_pipeline.ingest.slim_schema import SLIM_SCHEMA

# One-character strings indexed by byte value: DBN action/side bytes -> SLIM strings.
_CHARACTERS = pa.array([chr(code) for code in range(256)], pa.string())


def records_to_slim_table(records: np.ndarray, contract: str, symbol: str) -> pa.Table:
    """DBN MBP-10, MBP-1 or trade records of one contract -> rows of the full SLIM schema.

    Prices become float64 currency units (fixed-point / 1e9; undefined -> null), sizes and
    counts int64. Trade rows (action ``T``) fill ``trade_px/trade_sz/trade_side``; book
    columns carry the record's levels (10, 1 or none); every other column is null.
    """
    count = len(records)
    is_trade = records["action"] == b"T"
    columns: dict[str, pa.Array] = {
        "ts_recv": pa.array(records["ts_recv"].astype(np.int64)),
        "ts_event": pa.array(records["ts_event"].astype(np.int64)),
        "sequence": pa.array(records["sequence"].astype(np.int64)),
        "symbol": pa.repeat(pa.scalar(symbol, pa.string()), count),
        "raw_symbol": pa.repeat(pa.scalar(contract, pa.string()), count),
        "instrument_id": pa.array(records["instrument_id"].astype(np.int64)),
        "action": _characters(records["action"]),
        "trade_px": _prices(records["price"], valid=is_trade),
        "trade_sz": pa.array(records["size"].astype(np.int64), mask=~is_trade),
        "trade_side": _characters(records["side"], valid=is_trade),
        "flags": pa.array(records["flags"].astype(np.int64)),
    }
    if "levels" in records.dtype.names:
        levels = records["levels"]  # (rows, depth) of BID_ASK_PAIR
        for depth in range(levels.shape[1]):
            for side in ("bid", "ask"):
                columns[f"{side}_px_{depth:02d}"] = _prices(levels[f"{side}_px"][:, depth])
                for kind in ("sz", "ct"):
                    column = levels[f"{side}_{kind}"][:, depth].astype(np.int64)
                    columns[f"{side}_{kind}_{depth:02d}"] = pa.array(column)
    arrays = [
        columns[field.name] if field.name in columns else pa.nulls(count, field.type)
        for field in SLIM_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=SLIM_SCHEMA)


def _prices(fixed_point: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """int64 fixed-point (1e-9 units) -> float64; UNDEF_PRICE and invalid rows -> null."""
    missing = fixed_point == UNDEF_PRICE
    if valid is not None:
        missing |= ~valid
    return pa.array(fixed_point / PRICE_SCALE, mask=missing)


def _characters(codes: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """DBN one-byte character fields (``S1``) -> one-character strings; invalid rows -> null."""
    indices = pa.array(codes.view(np.uint8), mask=None if valid is None else ~valid)
    return _CHARACTERS.take(indices)
