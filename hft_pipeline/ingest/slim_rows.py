"""DBN records -> SLIM rows: one conversion per record layout, shared by every source
(DBN, Databento CSV) that yields the layouts of :mod:`hft_pipeline.ingest.dbn_layout`.

Book and trade records (MBP-10, MBP-1/TBBO, trades, and MBP-10 replayed from MBO) keep their
receive time. Bars (OHLCV) have none: a bar opening at ``ts_event`` is known when it closes, so
its row gets ``ts_recv = ts_event + interval`` (DESIGN.md section 4). SLIM then stays sorted by
the time a fact was known, and no feature sees a bar before its close.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from hft_pipeline.ingest.dbn_layout import (
    BAR_INTERVAL_NS_BY_RTYPE,
    MBO_DTYPE,
    OHLCV_DTYPE,
    PRICE_SCALE,
    UNDEF_PRICE,
)
from hft_pipeline.ingest.decode import RTYPE_BY_SCHEMA
from hft_pipeline.ingest.slim_schema import SLIM_SCHEMA

# One-character strings indexed by byte value: DBN action/side bytes -> SLIM strings.
_CHARACTERS = pa.array([chr(code) for code in range(256)], pa.string())


def bar_interval_ns(schema: str) -> int | None:
    """The bar interval of a DBN schema in ns (``ohlcv-1m`` -> 60e9); None for non-bar schemas.

    This is the value of the SLIM metadata key ``hft.bar_interval_ns`` for bar sources.
    """
    rtype = RTYPE_BY_SCHEMA.get(schema)
    return None if rtype is None else BAR_INTERVAL_NS_BY_RTYPE.get(rtype)


def records_to_slim_table(records: np.ndarray, contract: str, symbol: str) -> pa.Table:
    """DBN records of one contract -> rows of the full SLIM schema, whatever their layout.

    Parameters
    ----------
    records : numpy.ndarray
        Records of one layout: MBP-10, MBP-1, trade, or OHLCV (any bar interval; ``rtype``
        says which). MBO order events are refused: replay them into MBP-10 first with
        :class:`hft_pipeline.ingest.mbo_book.MboBookReplay`.
    contract, symbol : str
        ``raw_symbol`` (e.g. ``ESH1``) and root ``symbol`` (e.g. ``ES``) of every row.

    Returns
    -------
    pyarrow.Table
        Prices as float64 currency units (fixed-point / 1e9; undefined -> null), sizes and
        counts int64. Trade rows (action ``T``) fill ``trade_px/trade_sz/trade_side``; book
        columns carry the record's levels (10, 1 or none); bars fill ``open/high/low/close/
        volume`` with ``ts_recv`` at the bar's close. Every other column is null.
    """
    if records.dtype == OHLCV_DTYPE:
        return _bars_to_slim_table(records, contract, symbol)
    if records.dtype == MBO_DTYPE:
        raise ValueError(
            f"{len(records)} MBO order events of {contract} cannot become SLIM rows directly; "
            "replay them with mbo_book.MboBookReplay and convert its MBP-10 records"
        )
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
    return _full_table(columns, count)


def traded_volume(records: np.ndarray) -> int:
    """Contracts traded in ``records``: the bars' volume, else the size of trade records (``T``).

    Fills (``F``) of MBO-derived rows are the resting side of the same trades; not counted.
    """
    if records.dtype == OHLCV_DTYPE:
        return int(records["volume"].sum(dtype=np.uint64))
    return int(records["size"][records["action"] == b"T"].sum(dtype=np.int64))


def slim_ts_recv(records: np.ndarray) -> np.ndarray:
    """Each record's SLIM ``ts_recv`` (int64 ns): its receive time, or for a bar its close.

    Use it to keep a session's records (``open_ns <= ts_recv < close_ns``) whatever the layout.
    """
    if records.dtype != OHLCV_DTYPE:
        return records["ts_recv"].astype(np.int64)
    unknown = set(np.unique(records["rtype"]).tolist()) - set(BAR_INTERVAL_NS_BY_RTYPE)
    if unknown:
        raise ValueError(
            f"bars with rtype {sorted(unknown)}, not one of the OHLCV intervals "
            f"{sorted(BAR_INTERVAL_NS_BY_RTYPE)}"
        )
    intervals = np.zeros(256, np.int64)
    intervals[list(BAR_INTERVAL_NS_BY_RTYPE)] = list(BAR_INTERVAL_NS_BY_RTYPE.values())
    return records["ts_event"].astype(np.int64) + intervals[records["rtype"]]


def _bars_to_slim_table(bars: np.ndarray, contract: str, symbol: str) -> pa.Table:
    """OHLCV bars -> SLIM rows known at the bar's close; book, trade and flag columns null."""
    count = len(bars)
    columns = {
        "ts_recv": pa.array(slim_ts_recv(bars)),
        "ts_event": pa.array(bars["ts_event"].astype(np.int64)),
        "symbol": pa.repeat(pa.scalar(symbol, pa.string()), count),
        "raw_symbol": pa.repeat(pa.scalar(contract, pa.string()), count),
        "instrument_id": pa.array(bars["instrument_id"].astype(np.int64)),
        **{name: _prices(bars[name]) for name in ("open", "high", "low", "close")},
        "volume": pa.array(bars["volume"].astype(np.int64)),
    }
    return _full_table(columns, count)


def _full_table(columns: dict[str, pa.Array], count: int) -> pa.Table:
    """``columns`` in SLIM order; the schema's other columns as nulls."""
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
