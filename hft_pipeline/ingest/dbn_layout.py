"""DBN's fixed-size record layouts as numpy dtypes: one definition for the decoder and the
simulator, checked against databento-dbn's own decoder in the tests.

DBN stream: b"DBN", a version byte (1, 2 or 3), a little-endian u32 metadata length, the
metadata, then records. Each record starts with a 16-byte header whose first byte is the
record length in 4-byte words. Prices are int64 fixed-point with scale 1e-9. The layouts here
(MBP-10, MBP-1/TBBO, trades, OHLCV, MBO) are identical in versions 1, 2 and 3; the versions
differ in the metadata and in records not decoded here (definitions, statistics, errors).
"""

from __future__ import annotations

import numpy as np

PRICE_SCALE = 1_000_000_000
UNDEF_PRICE = np.iinfo(np.int64).max
PRELUDE_SIZE = 8  # b"DBN" + version (1 byte) + metadata length (u32)

# rtype values (databento-dbn RType).
RTYPE_MBP_0 = 0x00  # trades
RTYPE_MBP_1 = 0x01
RTYPE_MBP_10 = 0x0A
RTYPE_OHLCV_1S = 0x20
RTYPE_OHLCV_1M = 0x21
RTYPE_OHLCV_1H = 0x22
RTYPE_OHLCV_1D = 0x23
RTYPE_MBO = 0xA0

RECORD_HEADER_FIELDS = [
    ("length", "u1"),  # record size / 4
    ("rtype", "u1"),
    ("publisher_id", "<u2"),
    ("instrument_id", "<u4"),
    ("ts_event", "<u8"),
]

_MBP_COMMON_FIELDS = [
    *RECORD_HEADER_FIELDS,
    ("price", "<i8"),
    ("size", "<u4"),
    ("action", "S1"),
    ("side", "S1"),
    ("flags", "u1"),
    ("depth", "u1"),
    ("ts_recv", "<u8"),
    ("ts_in_delta", "<i4"),
    ("sequence", "<u4"),
]

BID_ASK_PAIR = np.dtype(
    [
        ("bid_px", "<i8"),
        ("ask_px", "<i8"),
        ("bid_sz", "<u4"),
        ("ask_sz", "<u4"),
        ("bid_ct", "<u4"),
        ("ask_ct", "<u4"),
    ]
)

TRADE_DTYPE = np.dtype(_MBP_COMMON_FIELDS)  # 48 bytes
MBP1_DTYPE = np.dtype([*_MBP_COMMON_FIELDS, ("levels", BID_ASK_PAIR, (1,))])  # 80 bytes
MBP10_DTYPE = np.dtype([*_MBP_COMMON_FIELDS, ("levels", BID_ASK_PAIR, (10,))])  # 368 bytes

# OHLCV bars: ts_event is the bar's open; no ts_recv (a bar is known at its close).
OHLCV_DTYPE = np.dtype(
    [
        *RECORD_HEADER_FIELDS,
        ("open", "<i8"),
        ("high", "<i8"),
        ("low", "<i8"),
        ("close", "<i8"),
        ("volume", "<u8"),
    ]
)  # 56 bytes
# Market-by-order: one order event each; replayed into a book to give MBP-10 rows.
MBO_DTYPE = np.dtype(
    [
        *RECORD_HEADER_FIELDS,
        ("order_id", "<u8"),
        ("price", "<i8"),
        ("size", "<u4"),
        ("flags", "u1"),
        ("channel_id", "u1"),
        ("action", "S1"),
        ("side", "S1"),
        ("ts_recv", "<u8"),
        ("ts_in_delta", "<i4"),
        ("sequence", "<u4"),
    ]
)  # 56 bytes

# Each bar type's interval in ns: a bar opening at ts_event is known at ts_event + interval.
BAR_INTERVAL_NS_BY_RTYPE = {
    RTYPE_OHLCV_1S: 1_000_000_000,
    RTYPE_OHLCV_1M: 60_000_000_000,
    RTYPE_OHLCV_1H: 3_600_000_000_000,
    RTYPE_OHLCV_1D: 86_400_000_000_000,
}

DTYPE_BY_RTYPE = {
    RTYPE_MBP_0: TRADE_DTYPE,
    RTYPE_MBP_1: MBP1_DTYPE,
    RTYPE_MBP_10: MBP10_DTYPE,
    RTYPE_MBO: MBO_DTYPE,
    **dict.fromkeys(BAR_INTERVAL_NS_BY_RTYPE, OHLCV_DTYPE),
}
