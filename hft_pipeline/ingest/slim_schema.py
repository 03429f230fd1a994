"""The SLIM parquet schema (DESIGN.md section 4): fixed, versioned, one file per root symbol per
trading day, rows in the order we received them (``ts_recv``, ties by ``sequence``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from hft_pipeline.partitions import Session

SLIM_SCHEMA_VERSION = "1"
BOOK_LEVELS = 10


def _level_columns(prefix: str, arrow_type: pa.DataType) -> list[pa.Field]:
    return [pa.field(f"{prefix}_{level:02d}", arrow_type) for level in range(BOOK_LEVELS)]


SLIM_SCHEMA = pa.schema(
    [
        pa.field("ts_recv", pa.int64(), nullable=False),  # ns since epoch, UTC
        pa.field("ts_event", pa.int64(), nullable=False),  # ns since epoch, UTC
        pa.field("sequence", pa.int64()),  # venue sequence number; orders ties in ts_recv
        pa.field("symbol", pa.string(), nullable=False),  # root, e.g. ES
        pa.field("raw_symbol", pa.string()),  # contract, e.g. ESH4
        pa.field("instrument_id", pa.int64()),
        pa.field("action", pa.string()),  # DBN action: A add, C cancel, M modify, T trade, ...
        *_level_columns("bid_px", pa.float64()),
        *_level_columns("ask_px", pa.float64()),
        *_level_columns("bid_sz", pa.int64()),
        *_level_columns("ask_sz", pa.int64()),
        *_level_columns("bid_ct", pa.int64()),
        *_level_columns("ask_ct", pa.int64()),
        pa.field("trade_px", pa.float64()),
        pa.field("trade_sz", pa.int64()),
        pa.field("trade_side", pa.string()),  # aggressor: B buy, A sell, N none
        pa.field("open", pa.float64()),
        pa.field("high", pa.float64()),
        pa.field("low", pa.float64()),
        pa.field("close", pa.float64()),
        pa.field("volume", pa.int64()),
        pa.field("flags", pa.int64()),
    ]
)

# Keys of the parquet file's key-value metadata (values are UTF-8 strings; JSON where noted).
META_SCHEMA_VERSION = "hft.slim_schema_version"
META_TRADING_DAY = "hft.trading_day"  # YYYY-MM-DD
META_SYMBOL = "hft.symbol"
META_TICK_SIZE = "hft.tick_size"  # float as text
META_PRICE_SCALE = "hft.price_scale"  # DBN fixed-point scale, 1e9
META_SOURCE_FILES = "hft.source_files"  # JSON list of {archive, member, sha256}
META_CONTRACT = "hft.contract"  # chosen front contract, e.g. ESH4
META_CONTRACT_VOLUMES = "hft.contract_volumes"  # JSON {raw_symbol: traded volume in session}
META_SESSION_OPEN_NS = "hft.session_open_ns"
META_SESSION_CLOSE_NS = "hft.session_close_ns"
# JSON [[start_ns, end_ns], ...]: the calendar's breaks inside the session (no data expected);
# absent in files written before breaks were recorded, which then count as having none.
META_SESSION_BREAKS_NS = "hft.session_breaks_ns"
META_DEGRADED = "hft.degraded"  # "true"/"false"
META_PARTIAL = "hft.partial"  # "true" when an archive overlapping the session was missing
META_BAR_INTERVAL_NS = "hft.bar_interval_ns"  # bar sources only
META_FRONT_CONTRACT_RULE = "hft.front_contract_rule"  # the configured rule
# What decided hft.contract under that rule: one of FRONT_CONTRACT_BASES.
META_FRONT_CONTRACT_BASIS = "hft.front_contract_basis"
BASIS_PREVIOUS_DAY_VOLUME = "previous_day_volume"  # the most traded on the previous day
BASIS_NEAREST_EXPIRY = "nearest_expiry"  # the rule asks for the first to expire
# The rule asks for volume, but no candidate traded on the previous day in what was read
# (the first day, or the previous day not ingested yet): the first to expire was taken.
BASIS_NO_PREVIOUS_VOLUME = "nearest_expiry_without_previous_day_volume"
FRONT_CONTRACT_BASES = (BASIS_PREVIOUS_DAY_VOLUME, BASIS_NEAREST_EXPIRY, BASIS_NO_PREVIOUS_VOLUME)
# The previous trading day's volume per contract the choice read; JSON {raw_symbol: volume}.
META_PREVIOUS_CONTRACT_VOLUMES = "hft.previous_contract_volumes"
META_TRADING_HOURS = "hft.trading_hours"  # "eth" or "rth": which part of the session is kept
# Times ts_recv decreased from one source record to the next (before SLIM's sort); JSON int.
META_SOURCE_TS_RECV_REGRESSIONS = "hft.source_ts_recv_regressions"
META_TICK_SIZE_SOURCE = "hft.tick_size_source"  # one of TICK_SIZE_SOURCES
TICK_FROM_DEFINITION = "definition"  # the contract's definition record (min_price_increment)
TICK_FROM_ROOT_SPEC = "root_spec"  # instruments.ROOT_SPECS: the archive had no definition
TICK_SIZE_SOURCES = (TICK_FROM_DEFINITION, TICK_FROM_ROOT_SPEC)
# Grid of trade prices when it is finer than the book's (LOBSTER: hidden orders execute at
# midpoints, half a tick); absent: trades are on the tick grid. Float as text.
META_TRADE_TICK_SIZE = "hft.trade_tick_size"


def session_metadata(session: Session) -> dict[str, str]:
    """The metadata that records a file's session: its open, close and breaks."""
    return {
        META_SESSION_OPEN_NS: str(session.open_ns),
        META_SESSION_CLOSE_NS: str(session.close_ns),
        META_SESSION_BREAKS_NS: json.dumps([list(interval) for interval in session.breaks]),
    }
