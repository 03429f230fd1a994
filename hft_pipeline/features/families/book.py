"""The book itself, level by level: where each of the ten levels per side sits relative to the
mid and how much rests there, at the bar close.

These names are a contract with the ``lob_transformer`` model, which reads the book as a
sequence of levels: for LL in 00..09, ``bid_offset_ticks_LL``, ``ask_offset_ticks_LL``,
``bid_log_size_LL``, ``ask_log_size_LL``. An empty level is NULL (``bars.py`` empties price and
size together), so a thin book shows as missing levels rather than as levels of size 0.
"""

from __future__ import annotations

from hft_pipeline.features.families.base import (
    BOOK_DEPTH,
    NULL_SPARSE,
    NULL_WARMUP,
    FeatureSpec,
)


def _offset_null_where(side: str, level: int) -> str:
    # A deeper level's offset is NULL where its size is (the level is empty) or the mid is.
    return f"mid IS NULL OR {side}_log_size_{level:02d} IS NULL" if level else ""


def _level_features(level: int) -> tuple[FeatureSpec, ...]:
    suffix = f"{level:02d}"
    # The best level is empty only where the mid is undefined; deeper levels empty in a thin book.
    null_policy = NULL_WARMUP if level == 0 else NULL_SPARSE
    where = f"level {level + 1} at the bar close; NULL when the level is empty"
    return (
        FeatureSpec(
            name=f"bid_offset_ticks_{suffix}",
            formula=f"(mid - bid_px_{suffix}) / tick_size",
            lookback_bars=0,
            unit="ticks",
            description=f"distance of the bid price of {where}",
            null_where=_offset_null_where("bid", level),
            sql=f"(mid - bid_px_{suffix}) / tick_size",
            null_policy=null_policy,
        ),
        FeatureSpec(
            name=f"ask_offset_ticks_{suffix}",
            formula=f"(ask_px_{suffix} - mid) / tick_size",
            lookback_bars=0,
            unit="ticks",
            description=f"distance of the ask price of {where}",
            null_where=_offset_null_where("ask", level),
            sql=f"(ask_px_{suffix} - mid) / tick_size",
            null_policy=null_policy,
        ),
        FeatureSpec(
            name=f"bid_log_size_{suffix}",
            formula=f"ln(1 + bid_sz_{suffix})",
            lookback_bars=0,
            unit="log(1 + lots)",
            description=f"size resting on the bid of {where}",
            sql=f"ln(1 + bid_sz_{suffix})",
            null_policy=null_policy,
        ),
        FeatureSpec(
            name=f"ask_log_size_{suffix}",
            formula=f"ln(1 + ask_sz_{suffix})",
            lookback_bars=0,
            unit="log(1 + lots)",
            description=f"size resting on the ask of {where}",
            sql=f"ln(1 + ask_sz_{suffix})",
            null_policy=null_policy,
        ),
    )


# Level by level from the best, the four values of a level together.
BOOK_LEVEL_FEATURES: tuple[FeatureSpec, ...] = tuple(
    spec for level in range(BOOK_DEPTH) for spec in _level_features(level)
)
