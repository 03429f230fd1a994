"""Checks of a window's features and labels frames, each error naming the column, row and fix
(used by ``dataset.build_window_arrays``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from hft_pipeline.features.schema import KEY_COLUMNS, SYMBOL, TS, label_columns


def check_frames(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    feature_columns: Sequence[str],
    horizons: Sequence[int],
) -> list[tuple[str, str, str]]:
    """Raises a precise error unless both frames hold the columns and the same rows; returns
    each horizon's label columns (return, volatility, direction)."""
    for horizon in horizons:
        if horizon < 1:
            raise ValueError(f"horizon must be at least 1 bar, found {horizon}")
    if len(feature_columns) == 0:
        raise ValueError("feature_columns is empty; pass the model's input columns")
    label_names = [label_columns(horizon) for horizon in horizons]
    for frame_name, frame, needed in (
        ("features", features, (*KEY_COLUMNS, *feature_columns)),
        ("labels", labels, (*KEY_COLUMNS, *(name for names in label_names for name in names))),
    ):
        missing = [name for name in needed if name not in frame.columns]
        if missing:
            raise KeyError(
                f"{frame_name} lacks column(s) {missing}; found {list(frame.columns)[:12]}..."
            )
    if len(features) != len(labels):
        raise ValueError(
            f"features has {len(features)} rows but labels has {len(labels)}; both must hold "
            "one row per bar per symbol per session"
        )
    for key in (TS, SYMBOL):
        if not np.array_equal(features[key].to_numpy(), labels[key].to_numpy()):
            row = int(np.flatnonzero(features[key].to_numpy() != labels[key].to_numpy())[0])
            raise ValueError(
                f"features and labels differ in column {key!r} at row {row} "
                f"({features[key].iloc[row]!r} vs {labels[key].iloc[row]!r}); "
                "sort both by symbol, ts"
            )
    return label_names


def check_sorted(ts: np.ndarray, session: np.ndarray) -> None:
    same_block = session[1:] == session[:-1]
    bad = np.flatnonzero(same_block & (ts[1:] <= ts[:-1]))
    if len(bad):
        row = int(bad[0]) + 1
        raise ValueError(
            f"ts is not increasing within a session at row {row} (found {ts[row - 1]} followed "
            f"by {ts[row]}); sort features and labels by symbol, ts and drop duplicate bars"
        )


def check_directions(direction: np.ndarray, column: str) -> None:
    bad = ~np.isin(direction, (0, 1, 2))
    if bad.any():
        raise ValueError(
            f"{column} holds {direction[bad][0]!r}; classes are 0 down / 1 flat / 2 up"
        )
