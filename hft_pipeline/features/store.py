"""DuckDB views over the daily feature and label files, and reading a training window.

Daily partitions write their own parquet files (in parallel, no lock involved); ``hft.duckdb``
holds only views, whose ``read_parquet(glob)`` lists the files again at every query, so a new
day shows up without recreating the view:

- ``features`` and ``labels``: every day at the training interval (``bar_seconds``);
- ``features_<N>s`` and ``labels_<N>s``: every day at each interval N of ``bar_intervals``
  (:func:`interval_view_name`), the training one included;
- those other stages register with :func:`refresh_view` (e.g. ``walk_forward``).

The refresh takes the DuckDB file's lock for well under a second and waits while another
process holds it, so partitions materializing in parallel never fail on the lock.
"""

from __future__ import annotations

import glob
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from hft_pipeline.features.schema import BAR_INDEX, KEY_COLUMNS, SESSION_DATE, SYMBOL, TS

FEATURES_VIEW = "features"
LABELS_VIEW = "labels"
# A concurrent refresher holds the file for well under a second; wait up to this long.
LOCK_TIMEOUT_S = 30.0
_FIRST_RETRY_DELAY_S = 0.05


def refresh_views(
    duckdb_path: Path,
    features_glob: str,
    labels_glob: str,
    lock_timeout_s: float = LOCK_TIMEOUT_S,
) -> None:
    """Creates or replaces the views ``features`` and ``labels`` over the daily parquet files.

    A view is created only once its glob matches a file: until then it is absent (an existing
    one is dropped), because DuckDB cannot bind ``read_parquet`` over zero files. Columns are
    matched by name across days (``union_by_name``), so days written before a feature was added
    read it as NULL.

    Parameters
    ----------
    duckdb_path : Path
        The DuckDB file; created when missing.
    features_glob, labels_glob : str
        Glob patterns of the daily files, e.g. ``<home>/features/*/features_*.parquet``.
    lock_timeout_s : float, default LOCK_TIMEOUT_S
        How long to retry while another process (a concurrent refresher) holds the file.

    Raises
    ------
    TimeoutError
        When the file stayed locked for ``lock_timeout_s`` seconds.
    """
    refresh_named_views(
        duckdb_path, {FEATURES_VIEW: features_glob, LABELS_VIEW: labels_glob}, lock_timeout_s
    )


def refresh_view(
    duckdb_path: Path, view: str, pattern: str, lock_timeout_s: float = LOCK_TIMEOUT_S
) -> None:
    """Creates or replaces one view ``view`` over the parquet files matching ``pattern`` (e.g.
    the walk-forward metrics), with the rules of :func:`refresh_views`."""
    refresh_named_views(duckdb_path, {view: pattern}, lock_timeout_s)


def interval_view_name(table: str, bar_seconds: int) -> str:
    """Name of the view over one interval's daily files, e.g. ``features_1s``."""
    return f"{table}_{bar_seconds}s"


def refresh_named_views(
    duckdb_path: Path, patterns: Mapping[str, str], lock_timeout_s: float = LOCK_TIMEOUT_S
) -> None:
    """Creates or replaces each view (name -> glob of parquet files) in one connection, with
    the rules of :func:`refresh_views`."""
    statements = [_view_statement(view, pattern) for view, pattern in patterns.items()]
    duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    connection = _connect_when_unlocked(duckdb_path, read_only=False, timeout_s=lock_timeout_s)
    with connection:
        for statement in statements:
            connection.execute(statement)


def load_window(
    duckdb_path: Path | None,
    feature_files: Sequence[Path],
    label_files: Sequence[Path],
    columns: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reads the feature and label rows of a window's days as two aligned frames.

    Parameters
    ----------
    duckdb_path : Path or None
        Where the query runs: None for an in-memory DuckDB (no file lock taken, the usual
        choice), or a DuckDB file opened read-only. Rows come from the listed files either way,
        never from the views, so a window reads exactly the days it names.
    feature_files, label_files : Sequence[Path]
        The daily features and labels files of the window (same days, any order).
    columns : Sequence[str] or None, default None
        Feature columns to read besides the key columns; None reads all of them.

    Returns
    -------
    tuple[pd.DataFrame, pd.DataFrame]
        ``(features, labels)``: key columns (ts, session_date, symbol, bar_index) then the
        values, both sorted by symbol then ts, row i of one being row i of the other; a
        symbol's rows are contiguous, so sequences can be cut from them directly. NULLs read
        as NaN, except the direction label (pandas ``Int8`` with ``<NA>``); ``session_date`` is
        ``datetime64``.

    Raises
    ------
    ValueError
        When no file is given, a requested column is missing, or the two sides' rows differ.
    """
    if not feature_files or not label_files:
        raise ValueError(
            f"load_window needs feature and label files, found {len(feature_files)} feature "
            f"and {len(label_files)} label file(s)"
        )
    connection = (
        duckdb.connect()
        if duckdb_path is None
        else _connect_when_unlocked(duckdb_path, read_only=True, timeout_s=LOCK_TIMEOUT_S)
    )
    with connection:
        features = _read_sorted(connection, feature_files, columns)
        labels = _read_sorted(connection, label_files, None)
    _check_aligned(features, labels, feature_files)
    return features, labels


def _view_statement(view: str, pattern: str) -> str:
    if not view.isidentifier():
        raise ValueError(f"view name {view!r} is not an identifier")
    if not glob.glob(pattern, recursive=True):
        return f"DROP VIEW IF EXISTS {view}"
    return (
        f"CREATE OR REPLACE VIEW {view} AS "
        f"SELECT * FROM read_parquet({_sql_string(pattern)}, union_by_name = true)"
    )


def _connect_when_unlocked(
    path: Path, read_only: bool, timeout_s: float
) -> duckdb.DuckDBPyConnection:
    """Opens ``path``, retrying with growing pauses while another process holds its lock."""
    deadline = time.monotonic() + timeout_s
    delay = _FIRST_RETRY_DELAY_S
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as error:
            if "lock" not in str(error).lower():
                raise
            if time.monotonic() + delay > deadline:
                raise TimeoutError(
                    f"{path} stayed locked by another process for {timeout_s:.0f} s "
                    f"({error}); close other DuckDB sessions on it (UI, notebooks) and retry"
                ) from error
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _read_sorted(
    connection: duckdb.DuckDBPyConnection,
    files: Sequence[Path],
    columns: Sequence[str] | None,
) -> pd.DataFrame:
    paths = [str(path) for path in files]
    relation = connection.sql(
        "SELECT * FROM read_parquet($paths, union_by_name = true)", params={"paths": paths}
    )
    if columns is not None:
        missing = sorted(set(columns) - set(relation.columns))
        if missing:
            raise ValueError(
                f"column(s) {missing} are in none of {len(paths)} file(s) starting with "
                f"{paths[0]}; known: {[c for c in relation.columns if c not in KEY_COLUMNS]}"
            )
        relation = relation.select(*KEY_COLUMNS, *columns)
    return relation.order(f"{SYMBOL}, {TS}").df()


def _check_aligned(features: pd.DataFrame, labels: pd.DataFrame, feature_files) -> None:
    keys = [TS, SYMBOL, SESSION_DATE, BAR_INDEX]
    if len(features) != len(labels) or not all(
        np.array_equal(features[key].to_numpy(), labels[key].to_numpy()) for key in keys
    ):
        raise ValueError(
            f"feature rows ({len(features)}) and label rows ({len(labels)}) do not match bar for "
            f"bar; pass the labels files of the same days as the features files "
            f"({[path.name for path in feature_files]})"
        )


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
