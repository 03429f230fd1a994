"""Checks of one day's feature and label tables (pure: tables in, verdicts out)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from hft_pipeline.features.schema import KEY_COLUMNS


@dataclass(frozen=True)
class TableCheck:
    name: str
    passed: bool
    description: str
    metadata: dict


def bars_per_session(open_ns: int, close_ns: int, bar_seconds: int) -> int:
    return math.ceil((close_ns - open_ns) / (bar_seconds * 1_000_000_000))


def check_day_tables(features: pa.Table, labels: pa.Table, expected_rows: int) -> list[TableCheck]:
    value_columns = [name for name in features.column_names if name not in KEY_COLUMNS]
    infinite = {
        name: int(pc.sum(pc.is_inf(features[name])).as_py() or 0)
        for name in value_columns
        if pa.types.is_floating(features.schema.field(name).type)
    }
    bad_columns = {name: count for name, count in infinite.items() if count}
    return [
        TableCheck(
            "no_infinite_values",
            not bad_columns,
            "no feature is +/-inf (undefined values are NULL)",
            {"columns_with_inf": bad_columns},
        ),
        TableCheck(
            "rows_match_session",
            features.num_rows == expected_rows == labels.num_rows,
            "one bar per interval of the session per symbol, in features and labels alike",
            {
                "feature_rows": features.num_rows,
                "label_rows": labels.num_rows,
                "expected_rows": expected_rows,
            },
        ),
    ]


def class_balance(labels: pa.Table, direction_column: str) -> dict[str, float]:
    """Share of each direction class among the labelled bars."""
    counts = pc.value_counts(pc.drop_null(labels[direction_column])).to_pylist()
    total = sum(item["counts"] for item in counts) or 1
    return {
        str(item["values"]): item["counts"] / total
        for item in sorted(counts, key=lambda item: item["values"])
    }
