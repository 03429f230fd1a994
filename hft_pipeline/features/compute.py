"""One trading day of SLIM files -> point-in-time features and forward labels, in DuckDB.

Steps, all in one in-memory DuckDB connection per call:
1. ``bars``: regular right-closed bars of every symbol (``bars.py``);
2. ``bar_inputs``: the bars plus the registry's ``BAR_INPUTS`` (the 1-bar mid log return);
3. ``bar_indicators``: the registry's ``INDICATORS``, recursive filters run in numpy over
   ``bar_inputs`` per symbol (``indicators.py``), handed back to DuckDB as an Arrow table;
4. features: every ``FEATURES`` expression over ``bar_inputs`` joined with ``bar_indicators``
   (look-back windows only);
5. labels: a separate query looking forward (LEAD and FOLLOWING frames) over ``bar_inputs``.

Windows and filters are per symbol within the day, so neither features nor labels cross the
session edges: features are NULL during the warm-up at the session start, labels over the last H
bars.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hft_pipeline.config import FeatureSettings
from hft_pipeline.features.bars import BARS_TABLE, create_bars, read_slim_source
from hft_pipeline.features.indicators import per_session
from hft_pipeline.features.registry import (
    BAR_INPUTS,
    BAR_WINDOW,
    BAR_WINDOW_SQL,
    FEATURES,
    INDICATORS,
)
from hft_pipeline.features.schema import (
    BAR_INDEX,
    SESSION_DATE,
    SYMBOL,
    TS,
    direction_column,
    forward_return_column,
    forward_volatility_column,
)
from hft_pipeline.layout import atomic_file
from hft_pipeline.partitions import Session

KEY_FIELDS = (
    pa.field(TS, pa.int64()),
    pa.field(SESSION_DATE, pa.date32()),
    pa.field(SYMBOL, pa.string()),
    pa.field(BAR_INDEX, pa.int32()),
)
FEATURES_SCHEMA = pa.schema(
    [*KEY_FIELDS, *(pa.field(spec.name, pa.float64()) for spec in FEATURES)]
)
PARQUET_COMPRESSION = "zstd"
INDICATORS_TABLE = "bar_indicators"


def labels_schema(horizon_bars: int) -> pa.Schema:
    """Key columns, then forward return (float64), forward volatility (float64), direction
    (int8: 0 down, 1 flat, 2 up) for a horizon of ``horizon_bars`` bars."""
    return pa.schema(
        [
            *KEY_FIELDS,
            pa.field(forward_return_column(horizon_bars), pa.float64()),
            pa.field(forward_volatility_column(horizon_bars), pa.float64()),
            pa.field(direction_column(horizon_bars), pa.int8()),
        ]
    )


def compute_day(
    slim_files: Mapping[str, Path], session: Session, settings: FeatureSettings
) -> tuple[pa.Table, pa.Table]:
    """Features and labels of every symbol of one trading day.

    Parameters
    ----------
    slim_files : Mapping[str, Path]
        Root symbol -> that symbol's SLIM parquet file of the day. The tick size comes from each
        file's metadata; a file with zero rows gives bars whose features are NULL.
    session : Session
        The trading day's session; bars cover [open, close) at ``settings.bar_seconds``.
    settings : FeatureSettings
        Bar interval, label horizon (bars) and direction threshold (ticks).

    Returns
    -------
    tuple[pa.Table, pa.Table]
        ``(features, labels)``, one row per bar and symbol, both sorted by symbol then ts with
        the key columns first. ``features`` has ``FEATURES_SCHEMA``; ``labels`` has
        ``labels_schema(settings.horizon_bars)``, NULL over the last H bars of the session.
    """
    _check_settings(settings)
    sources = [read_slim_source(symbol, path, session) for symbol, path in slim_files.items()]
    with duckdb.connect() as connection:
        create_bars(connection, sources, session, settings.bar_seconds)
        connection.execute(_bar_inputs_sql())
        connection.register(INDICATORS_TABLE, _indicators_table(connection))
        day = {"session_date": session.day}
        features = connection.sql(_features_sql(), params=day).to_arrow_table()
        labels = connection.sql(
            _labels_sql(settings.horizon_bars, settings.direction_threshold_ticks), params=day
        ).to_arrow_table()
    return features.cast(FEATURES_SCHEMA), labels.cast(labels_schema(settings.horizon_bars))


def write_day(features: pa.Table, labels: pa.Table, features_path: Path, labels_path: Path) -> None:
    """Writes one day's features and labels as zstd parquet, each file atomically (a failed or
    killed write leaves the previous file, if any, untouched)."""
    for table, path in ((features, features_path), (labels, labels_path)):
        with atomic_file(path) as temporary:
            pq.write_table(table, temporary, compression=PARQUET_COMPRESSION)


def _check_settings(settings: FeatureSettings) -> None:
    if settings.horizon_bars < 1:
        raise ValueError(f"horizon_bars must be >= 1, found {settings.horizon_bars}")
    if not settings.direction_threshold_ticks > 0:
        raise ValueError(
            "direction_threshold_ticks must be > 0 (0 would make 'flat' impossible), "
            f"found {settings.direction_threshold_ticks}"
        )


def _key_columns_sql() -> str:
    return f"{TS}, $session_date::DATE AS {SESSION_DATE}, {SYMBOL}, {BAR_INDEX}"


def _bar_inputs_sql() -> str:
    derived = ", ".join(f"{sql} AS {name}" for name, sql in BAR_INPUTS)
    return f"""
        CREATE OR REPLACE TEMP TABLE bar_inputs AS
        SELECT *, {derived} FROM {BARS_TABLE} WINDOW {BAR_WINDOW_SQL}
    """


def _indicators_table(connection: duckdb.DuckDBPyConnection) -> pa.Table:
    """Symbol, bar index and every ``INDICATORS`` column (NULL in warm-up and where an input is
    NULL), one row per bar of ``bar_inputs``."""
    names = sorted({name for spec in INDICATORS for name in spec.inputs})
    inputs_sql = ", ".join(f"{name}::DOUBLE AS {name}" for name in names)
    bars = connection.sql(
        f"SELECT {SYMBOL}, {BAR_INDEX}, {inputs_sql} FROM bar_inputs ORDER BY {SYMBOL}, {BAR_INDEX}"
    ).to_arrow_table()
    # NULL -> NaN: the numpy filters treat NaN as undefined.
    columns = {name: bars[name].to_numpy(zero_copy_only=False) for name in names}
    symbols = bars[SYMBOL].to_numpy(zero_copy_only=False)
    session_starts = np.flatnonzero(np.r_[True, symbols[1:] != symbols[:-1]])
    indicators = {
        spec.name: pa.array(
            per_session(spec.function, [columns[name] for name in spec.inputs], session_starts),
            from_pandas=True,  # NaN -> NULL
        )
        for spec in INDICATORS
    }
    return pa.table({SYMBOL: bars[SYMBOL], BAR_INDEX: bars[BAR_INDEX], **indicators})


def _features_sql() -> str:
    columns = ", ".join(f"({spec.sql})::DOUBLE AS {spec.name}" for spec in FEATURES)
    return f"""
        SELECT {_key_columns_sql()}, {columns}
        FROM bar_inputs JOIN {INDICATORS_TABLE} USING ({SYMBOL}, {BAR_INDEX})
        WINDOW {BAR_WINDOW_SQL}
        ORDER BY {SYMBOL}, {TS}
    """


def _labels_sql(horizon_bars: int, threshold_ticks: float) -> str:
    """Forward labels; LEAD and FOLLOWING frames stop at the partition end, which is the session
    end, so the last H bars get NULL rather than a shorter horizon."""
    future_mid = f"lead(mid, {horizon_bars}) OVER {BAR_WINDOW}"
    following = f"({BAR_WINDOW} ROWS BETWEEN 1 FOLLOWING AND {horizon_bars} FOLLOWING)"
    # Prices sit on the tick grid; rounding removes float noise such as 0.9999999 ticks.
    move_ticks = f"round(({future_mid} - mid) / tick_size, 6)"
    return f"""
        SELECT
            {_key_columns_sql()},
            CASE WHEN mid > 0 AND {future_mid} > 0 THEN ln({future_mid} / mid) END
                AS {forward_return_column(horizon_bars)},
            CASE WHEN count(mid_log_return) OVER {following} = {horizon_bars}
                THEN sqrt(sum(mid_log_return * mid_log_return) OVER {following}) END
                AS {forward_volatility_column(horizon_bars)},
            (CASE
                WHEN {move_ticks} <= -{threshold_ticks!r} THEN 0
                WHEN {move_ticks} >= {threshold_ticks!r} THEN 2
                WHEN {move_ticks} IS NOT NULL THEN 1
            END)::TINYINT AS {direction_column(horizon_bars)}
        FROM bar_inputs
        WINDOW {BAR_WINDOW_SQL}
        ORDER BY {SYMBOL}, {TS}
    """
