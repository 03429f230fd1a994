"""Checks of one day's feature and label tables (pure: tables in, verdicts out)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hft_pipeline.features.families.base import (
    FEATURE_ROWS_WINDOW_SQL,
    NULL_NEVER,
    NULL_SPARSE,
    NULL_WARMUP,
    FeatureSpec,
)
from hft_pipeline.features.registry import FEATURES
from hft_pipeline.features.schema import KEY_COLUMNS, SYMBOL


@dataclass(frozen=True)
class TableCheck:
    name: str
    passed: bool
    description: str
    metadata: dict


def bars_per_session(open_ns: int, close_ns: int, bar_seconds: int) -> int:
    return math.ceil((close_ns - open_ns) / (bar_seconds * 1_000_000_000))


def check_day_tables(
    features: pa.Table,
    labels: pa.Table,
    symbols: Sequence[str],
    bars_per_symbol: int,
    bar_seconds: int,
) -> list[TableCheck]:
    """The asset checks of one day at one bar interval.

    Parameters
    ----------
    features, labels : pa.Table
        The day's tables as ``compute_day`` returns them (sorted by symbol, then ts).
    symbols : Sequence[str]
        The symbols whose SLIM files the day was computed from.
    bars_per_symbol : int
        Bars of the session at ``bar_seconds``.
    bar_seconds : int
        The tables' bar interval, which sets the warm-up of the multi-timeframe features.
    """
    value_columns = [name for name in features.column_names if name not in KEY_COLUMNS]
    infinite = {
        name: int(pc.sum(pc.is_inf(features[name])).as_py() or 0)
        for name in value_columns
        if pa.types.is_floating(features.schema.field(name).type)
    }
    bad_columns = {name: count for name, count in infinite.items() if count}
    misplaced_nulls = disallowed_nulls(features, bar_seconds)
    return [
        TableCheck(
            "no_infinite_values",
            not bad_columns,
            "no feature is +/-inf (undefined values are NULL)",
            {"columns_with_inf": bad_columns},
        ),
        TableCheck(
            "nulls_where_allowed",
            not misplaced_nulls,
            "every NULL is one its feature's null_policy allows (warm-up, empty book, or a "
            "quiet market for the 'sparse' features)",
            {"columns_with_disallowed_nulls": misplaced_nulls},
        ),
        _rows_check(features, labels, symbols, bars_per_symbol),
    ]


def disallowed_nulls(
    features: pa.Table, bar_seconds: int, specs: Sequence[FeatureSpec] = FEATURES
) -> dict[str, int]:
    """NULLs that their feature's ``null_policy`` does not allow, counted per feature.

    ``features`` is sorted by symbol, then ts. "never" allows none. "warmup" allows a NULL at
    bar t when the bars since the last gap (the session open, or a bar whose mid is NULL: an
    empty best side) are at most the feature's warm-up, ``t - gap <= warmup_bars``: a look-back
    that reaches a bar without a mid may be undefined. "sparse" allows the same, and where its
    ``null_where`` holds (a quiet or thin market read back from the file: no trade yet, an
    empty level); a "sparse" feature without ``null_where`` is not checked, as its condition
    needs columns the file does not hold (aggressor volumes, book depth).
    """
    checked = [
        spec.at(bar_seconds)
        for spec in specs
        if spec.null_policy in (NULL_NEVER, NULL_WARMUP)
        or (spec.null_policy == NULL_SPARSE and spec.null_where)
    ]
    bars_since_gap = _bars_since_gap(features)
    quiet = _null_where_rows(features, checked)
    counts = {}
    for spec in checked:
        nulls = features[spec.name].is_null().to_numpy(zero_copy_only=False)
        if spec.null_policy != NULL_NEVER:
            nulls = nulls & (bars_since_gap > spec.warmup_bars(bar_seconds))
        if spec.name in quiet:
            nulls = nulls & ~quiet[spec.name]
        if nulls.any():
            counts[spec.name] = int(nulls.sum())
    return counts


def _null_where_rows(features: pa.Table, specs: Sequence[FeatureSpec]) -> dict[str, np.ndarray]:
    """Per spec with a ``null_where``, whether it holds on each row of ``features``."""
    conditions = [spec for spec in specs if spec.null_where]
    if not conditions or not features.num_rows:
        return {}
    columns = ", ".join(f"coalesce({spec.null_where}, false) AS {spec.name}" for spec in conditions)
    with duckdb.connect() as connection:
        connection.register("feature_file", features)
        held = connection.sql(
            f"SELECT {columns} FROM feature_file WINDOW {FEATURE_ROWS_WINDOW_SQL} "
            f"ORDER BY {SYMBOL}, bar_index"
        ).to_arrow_table()
    return {spec.name: held[spec.name].to_numpy(zero_copy_only=False) for spec in conditions}


def _bars_since_gap(features: pa.Table) -> np.ndarray:
    """Per row, bars since the last row of the symbol without a mid, counting the session open
    as such a row just before the first bar; 0 on a row without a mid."""
    rows = np.arange(features.num_rows)
    symbols = features[SYMBOL].to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, symbols[1:] != symbols[:-1]]) if rows.size else rows
    gaps = np.where(features["mid"].is_null().to_numpy(zero_copy_only=False), rows, -1)
    gaps[starts] = np.maximum(gaps[starts], starts - 1)
    return rows - np.maximum.accumulate(gaps) if rows.size else rows


def _rows_check(
    features: pa.Table, labels: pa.Table, symbols: Sequence[str], bars_per_symbol: int
) -> TableCheck:
    found = {
        item["values"]: item["counts"] for item in pc.value_counts(features[SYMBOL]).to_pylist()
    }
    expected = {symbol: bars_per_symbol for symbol in symbols}
    return TableCheck(
        "rows_match_session",
        found == expected and labels.num_rows == features.num_rows,
        "one bar per interval of the session for every symbol with a SLIM file, in features "
        "and labels alike",
        {
            "feature_rows": features.num_rows,
            "label_rows": labels.num_rows,
            "bars_per_symbol": bars_per_symbol,
            "rows_per_symbol": found,
        },
    )


def class_balance(labels: pa.Table, direction_column: str) -> dict[str, float]:
    """Share of each direction class among the labelled bars."""
    counts = pc.value_counts(pc.drop_null(labels[direction_column])).to_pylist()
    total = sum(item["counts"] for item in counts) or 1
    return {
        str(item["values"]): item["counts"] / total
        for item in sorted(counts, key=lambda item: item["values"])
    }
