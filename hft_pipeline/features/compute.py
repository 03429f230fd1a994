"""One trading day of SLIM files -> point-in-time features and forward labels, in DuckDB.

Steps, all in one in-memory DuckDB database per call:
1. ``all_bars``: regular right-closed bars of every symbol (``bars.py``, an Arrow table); with
   the "previous_day" warm-up, also the bars of the previous trading day's last
   ``previous_tail_bars`` intervals, put before the session's (``bar_index`` < 0,
   ``session_part`` 0); and each bar's ``previous_mid``;
2. ``bar_inputs``: the bars plus the registry's ``BAR_INPUTS`` (the 1-bar mid log return, the
   candle's open...);
3. ``bar_indicators``: the registry's ``INDICATORS``, recursive filters run in numpy over the
   bars per symbol (``indicators.py``), in a thread beside steps 2 and 4;
4. ``bar_timeframes``: the 1-min and 5-min core features, as of each bar's close
   (``families/timeframes.py``);
5. features, in two queries run side by side (look-back windows only): those that call a
   window function and the others, each over ``bar_inputs`` joined with only those tables of
   steps 3 and 4 whose columns it reads (the windowed ones read none, so they start as soon as
   ``bar_inputs`` exists);
6. labels: a separate query looking forward over ``bar_inputs`` (``labels.py``), in a thread
   beside steps 3-5.
Each query runs on a cursor of its own, with one DuckDB thread.
Only the session's own bars (``session_part`` 1) are returned.

Windows and filters run per symbol over the bars of step 1, so with the "session" warm-up they
restart at the open (NULL during the warm-up) and with "previous_day" they start in the previous
day's tail. Labels never cross the session end: they are NULL over the last H bars.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hft_pipeline.config import FeatureSettings
from hft_pipeline.features.bars import SlimSource, bar_table, read_slim_source
from hft_pipeline.features.families.base import PREVIOUS_MID, FeatureSpec
from hft_pipeline.features.families.timeframes import (
    TIMEFRAME_FEATURES,
    TIMEFRAME_TABLE,
    timeframe_bars_sql,
    timeframe_join_sql,
)
from hft_pipeline.features.indicators import per_session
from hft_pipeline.features.labels import (
    THRESHOLD_MODES,
    horizon_labels_sql,
    labels_schema,
    threshold_ticks_sql,
)
from hft_pipeline.features.quality import bars_per_session
from hft_pipeline.features.registry import (
    BAR_INPUTS,
    BAR_WINDOW_SQL,
    FEATURES,
    INDICATORS,
    TIMEFRAMES,
    features_at,
    max_warmup_bars,
)
from hft_pipeline.features.schema import BAR_INDEX, SESSION_DATE, SYMBOL, TS
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
ALL_BARS_TABLE = "all_bars"
WARMUP_MODES = ("session", "previous_day")
# Keys of the parquet metadata of every features and labels file.
META_BAR_SECONDS = "hft.bar_seconds"
META_WARMUP = "hft.warmup"
# The previous day's tail is this many times the longest warm-up, so that the EMAs, whose
# memory outlasts their nominal warm-up, have forgotten where the tail starts.
_TAIL_WARMUPS = 2
_NS_PER_SECOND = 1_000_000_000
# compute_day runs its queries side by side, each on a cursor of its own; within one query,
# DuckDB's own threads cost more than they bring on one day's bars (on 2 cores: 1.42-1.59 s
# against 1.53-2.09 s for a busy day of 1-s bars, and less CPU).
_ONE_THREAD_PER_QUERY = {"threads": 1}
_WINDOW_CALL = re.compile(r"\bOVER\b", re.IGNORECASE)
# Per table joined to bar_inputs for the features: a pattern of the columns it adds.
_JOINED_COLUMNS = {
    table: re.compile(r"\b(?:" + "|".join(spec.name for spec in specs) + r")\b")
    for table, specs in ((INDICATORS_TABLE, INDICATORS), (TIMEFRAME_TABLE, TIMEFRAME_FEATURES))
}


@dataclass(frozen=True)
class PreviousDay:
    """The previous trading day's SLIM files (root symbol -> path) and its session, whose tail
    warms up the features of the day computed ("previous_day" warm-up)."""

    slim_files: Mapping[str, Path]
    session: Session


def previous_tail_bars(bar_seconds: int) -> int:
    """Bars of the previous day put before a session with the "previous_day" warm-up: twice the
    longest warm-up, rounded up to whole 5-min bars so that those stay aligned on its close."""
    per_slowest = max(seconds for _, seconds in TIMEFRAMES) // bar_seconds
    return math.ceil(_TAIL_WARMUPS * max_warmup_bars(bar_seconds) / per_slowest) * per_slowest


def compute_day(
    slim_files: Mapping[str, Path],
    session: Session,
    settings: FeatureSettings,
    *,
    bar_seconds: int | None = None,
    previous_day: PreviousDay | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Features and labels of every symbol of one trading day at one bar interval.

    Parameters
    ----------
    slim_files : Mapping[str, Path]
        Root symbol -> that symbol's SLIM parquet file of the day. The tick size comes from each
        file's metadata; a file with zero rows gives bars whose features are NULL.
    session : Session
        The trading day's session; bars cover [open, close).
    settings : FeatureSettings
        Label horizons, direction threshold and warm-up mode.
    bar_seconds : int or None, default None
        Bar interval in seconds, dividing 60; None means ``settings.bar_seconds``.
    previous_day : PreviousDay or None, default None
        Required with ``settings.warmup == "previous_day"`` (one SLIM file per symbol of
        ``slim_files``), refused otherwise.

    Returns
    -------
    tuple[pa.Table, pa.Table]
        ``(features, labels)``, one row per bar and symbol, both sorted by symbol then ts with
        the key columns first. ``features`` has ``FEATURES_SCHEMA``; ``labels`` has
        ``labels_schema(KEY_FIELDS, settings.horizons_bars)``, NULL over the last H bars of the
        session. Both carry the bar interval and warm-up mode in their schema metadata
        (``META_BAR_SECONDS``, ``META_WARMUP``).
    """
    bar_seconds = settings.bar_seconds if bar_seconds is None else bar_seconds
    check_settings(settings)
    _check_bar_seconds(bar_seconds)
    _check_previous_day(settings.warmup, previous_day, slim_files, session)
    sources = [read_slim_source(symbol, path, session) for symbol, path in slim_files.items()]
    with duckdb.connect(config=_ONE_THREAD_PER_QUERY) as connection:
        all_bars = _all_bars(sources, session, bar_seconds, previous_day)
        day = {"session_date": session.day}
        windowed, pointwise = _split_by_window(features_at(bar_seconds))
        # DuckDB's window operators leave a core idle much of the time. Beside this cursor's
        # windowed features (they read bar_inputs only), threads run the numpy indicators and,
        # each on a cursor of its own, the labels and the timeframes with the features that
        # call no window function.
        with (
            connection.cursor() as labeller,
            connection.cursor() as pointwise_cursor,
            ThreadPoolExecutor(max_workers=3) as background,
        ):
            pending_indicators = background.submit(_indicators_table, all_bars)
            connection.register(ALL_BARS_TABLE, all_bars)
            connection.execute(_bar_inputs_sql())
            pending_labels = background.submit(_sorted, labeller, _labels_sql(settings), day)
            pending_pointwise = background.submit(
                _pointwise_features,
                pointwise_cursor,
                pending_indicators,
                pointwise,
                bar_seconds,
                day,
            )
            features = _side_by_side(
                _sorted(connection, _features_sql(windowed), day), pending_pointwise.result()
            )
            labels = pending_labels.result()
    metadata = {META_BAR_SECONDS: str(bar_seconds), META_WARMUP: settings.warmup}
    return (
        features.cast(FEATURES_SCHEMA).replace_schema_metadata(metadata),
        labels.cast(labels_schema(KEY_FIELDS, settings.horizons_bars)).replace_schema_metadata(
            metadata
        ),
    )


def write_day(features: pa.Table, labels: pa.Table, features_path: Path, labels_path: Path) -> None:
    """Writes one day's features and labels as zstd parquet, each file atomically (a failed or
    killed write leaves the previous file, if any, untouched)."""
    for table, path in ((features, features_path), (labels, labels_path)):
        with atomic_file(path) as temporary:
            pq.write_table(table, temporary, compression=PARQUET_COMPRESSION)


def check_settings(settings: FeatureSettings) -> None:
    """Raises ValueError naming the first inconsistent feature setting and how to fix it."""
    for interval in settings.bar_intervals:
        _check_bar_seconds(interval)
    if settings.bar_seconds not in settings.bar_intervals:
        raise ValueError(
            f"bar_seconds={settings.bar_seconds} (the training interval) is not in "
            f"bar_intervals={settings.bar_intervals}; add it to the list"
        )
    if not settings.horizons_bars or min(settings.horizons_bars) < 1:
        raise ValueError(f"horizons_bars must be >= 1 bar each, found {settings.horizons_bars}")
    if settings.horizon_bars not in settings.horizons_bars:
        raise ValueError(
            f"horizon_bars={settings.horizon_bars} (the primary horizon) is not in "
            f"horizons_bars={settings.horizons_bars}; add it to the list"
        )
    if settings.direction_threshold_mode not in THRESHOLD_MODES:
        raise ValueError(
            f"direction_threshold_mode must be one of {THRESHOLD_MODES}, found "
            f"{settings.direction_threshold_mode!r}"
        )
    if settings.direction_threshold_mode == "ticks" and not settings.direction_threshold_ticks > 0:
        raise ValueError(
            "direction_threshold_ticks must be > 0 (0 would make 'flat' impossible), "
            f"found {settings.direction_threshold_ticks}"
        )
    if not settings.cost_ticks >= 0:
        raise ValueError(f"cost_ticks must be >= 0, found {settings.cost_ticks}")
    if settings.warmup not in WARMUP_MODES:
        raise ValueError(f"warmup must be one of {WARMUP_MODES}, found {settings.warmup!r}")


def _check_bar_seconds(bar_seconds: int) -> None:
    if not (isinstance(bar_seconds, int) and bar_seconds > 0 and 60 % bar_seconds == 0):
        raise ValueError(
            f"a bar interval must be a whole number of seconds dividing 60 (1-min and 5-min "
            f"bars are whole groups of bars), found {bar_seconds!r}"
        )


def _check_previous_day(
    warmup: str,
    previous_day: PreviousDay | None,
    slim_files: Mapping[str, Path],
    session: Session,
) -> None:
    if warmup == "session" and previous_day is not None:
        raise ValueError(
            "a previous day was given but warmup='session' restarts every session; set "
            "warmup='previous_day' or leave previous_day out"
        )
    if warmup == "previous_day":
        if previous_day is None:
            raise ValueError(
                f"warmup='previous_day' needs the SLIM files of the trading day before "
                f"{session.day}; pass previous_day, or compute with warmup='session'"
            )
        missing = sorted(set(slim_files) - set(previous_day.slim_files))
        if missing or previous_day.session.close_ns > session.open_ns:
            raise ValueError(
                f"previous day {previous_day.session.day} for {session.day}: it must close "
                f"before the session opens and hold every symbol; missing {missing}"
            )


def _all_bars(
    sources: list[SlimSource],
    session: Session,
    bar_seconds: int,
    previous_day: PreviousDay | None,
) -> pa.Table:
    """The session's bars (``session_part`` 1) of every symbol, after the previous day's tail
    (``session_part`` 0, ``bar_index`` counted back from the session's first bar; the whole
    previous session when it is shorter than the tail) when one is given, by symbol then
    bar_index, with ``previous_mid``: the mid of the symbol's bar before (NULL for its first)."""
    parts = [_numbered(bar_table(sources, session, bar_seconds), first_bar=0, session_part=1)]
    if previous_day is not None:
        previous = previous_day.session
        tail_ns = previous_tail_bars(bar_seconds) * bar_seconds * _NS_PER_SECOND
        tail = Session(
            previous.day, max(previous.open_ns, previous.close_ns - tail_ns), previous.close_ns
        )
        tail_bars = bars_per_session(tail.open_ns, tail.close_ns, bar_seconds)
        tail_sources = [
            read_slim_source(symbol, path, previous)
            for symbol, path in previous_day.slim_files.items()
        ]
        parts.insert(
            0,
            _numbered(bar_table(tail_sources, tail, bar_seconds), -tail_bars, session_part=0),
        )
    bars = _in_key_order(pa.concat_tables(parts), BAR_INDEX)
    mid = bars["mid"].to_numpy(zero_copy_only=False)
    symbols = bars[SYMBOL].to_numpy(zero_copy_only=False)
    previous_mid = np.r_[np.nan, mid[:-1]]
    previous_mid[np.flatnonzero(np.r_[True, symbols[1:] != symbols[:-1]])] = np.nan
    return bars.append_column(PREVIOUS_MID, pa.array(previous_mid, from_pandas=True))


def _numbered(bars: pa.Table, first_bar: int, session_part: int) -> pa.Table:
    """``bars`` with bar_index counted from ``first_bar`` and a ``session_part`` column."""
    bar_index = pc.add(bars[BAR_INDEX], pa.scalar(first_bar, pa.int32()))
    bars = bars.set_column(bars.schema.get_field_index(BAR_INDEX), BAR_INDEX, bar_index)
    return bars.append_column("session_part", pa.array(np.full(len(bars), session_part, np.int32)))


def _in_key_order(table: pa.Table, second_key: str) -> pa.Table:
    """``table`` by symbol, then ``second_key``. Arrow sorts the two key columns and gathers each
    column once, and not at all when the rows are already in that order (DuckDB's window
    operators often return them so)."""
    order = pc.sort_indices(table, [(SYMBOL, "ascending"), (second_key, "ascending")])
    if np.array_equal(order.to_numpy(), np.arange(len(order))):
        return table
    return table.take(order)


def _sorted(
    connection: duckdb.DuckDBPyConnection, query: str, params: Mapping[str, object]
) -> pa.Table:
    """The query's rows by symbol, then ts. Arrow sorts them (``_in_key_order``): a DuckDB
    ORDER BY carries all the wide rows through its sort (15-30% of the feature query on a day
    of 1-s bars)."""
    return _in_key_order(connection.sql(query, params=params).to_arrow_table(), TS)


def _key_columns_sql() -> str:
    return f"{TS}, $session_date::DATE AS {SESSION_DATE}, {SYMBOL}, {BAR_INDEX}"


def _bar_inputs_sql() -> str:
    derived = ", ".join(f"{sql} AS {name}" for name, sql in BAR_INPUTS)
    return f"CREATE OR REPLACE TABLE bar_inputs AS SELECT *, {derived} FROM {ALL_BARS_TABLE}"


def _indicators_table(bars: pa.Table) -> pa.Table:
    """Symbol, bar index and every ``INDICATORS`` column (NULL in warm-up and where an input is
    NULL), one row per bar of ``bars`` (``_all_bars``: by symbol, then bar_index)."""
    names = sorted({name for spec in INDICATORS for name in spec.inputs})
    # NULL -> NaN: the numpy filters treat NaN as undefined.
    columns = {
        name: bars[name].to_numpy(zero_copy_only=False).astype(float, copy=False) for name in names
    }
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


def _split_by_window(
    specs: tuple[FeatureSpec, ...],
) -> tuple[tuple[FeatureSpec, ...], tuple[FeatureSpec, ...]]:
    """``specs`` that call a window function, and the others. Computed in one query, the
    window operator carries every other feature's inputs through its sort of the rows; the two
    halves apart, on two cursors, take 0.3-0.45 s of a day of 1-s bars against 0.5-0.75 s."""
    windowed = tuple(spec for spec in specs if _WINDOW_CALL.search(spec.sql))
    return windowed, tuple(spec for spec in specs if spec not in windowed)


def _side_by_side(windowed: pa.Table, pointwise: pa.Table) -> pa.Table:
    """The feature columns of both (each sorted by symbol, then ts), in ``FEATURES_SCHEMA``
    order."""
    for key in (SYMBOL, BAR_INDEX):
        if not windowed[key].equals(pointwise[key]):
            raise RuntimeError(f"the two feature queries returned different {key} columns")
    columns = {name: table[name] for table in (windowed, pointwise) for name in table.column_names}
    return pa.table({name: columns[name] for name in FEATURES_SCHEMA.names})


def _create_table(connection: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
    """Copies ``table`` into the database as ``name``, where every cursor sees it (a registered
    Arrow table is seen by its own cursor only)."""
    connection.register("arrow_source", table)
    connection.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM arrow_source")
    connection.unregister("arrow_source")


def _pointwise_features(
    cursor: duckdb.DuckDBPyConnection,
    pending_indicators: Future[pa.Table],
    specs: tuple[FeatureSpec, ...],
    bar_seconds: int,
    params: Mapping[str, object],
) -> pa.Table:
    """Creates the timeframe and indicator tables, then returns the ``specs`` features."""
    for label, seconds in TIMEFRAMES:
        cursor.execute(timeframe_bars_sql(label, seconds, bar_seconds))
    cursor.execute(timeframe_join_sql())
    _create_table(cursor, INDICATORS_TABLE, pending_indicators.result())
    return _sorted(cursor, _features_sql(specs), params)


def _features_sql(specs: tuple[FeatureSpec, ...]) -> str:
    """The ``specs`` features of the session's bars, over ``bar_inputs`` joined with the
    indicator and timeframe tables whose columns they read (a join costs each feature query
    a tenth of its time)."""
    columns = ", ".join(f"({spec.sql})::DOUBLE AS {spec.name}" for spec in specs)
    joins = " ".join(
        f"JOIN {table} USING ({SYMBOL}, {BAR_INDEX})"
        for table, added_columns in _JOINED_COLUMNS.items()
        if any(added_columns.search(spec.sql) for spec in specs)
    )
    return f"""
        SELECT * EXCLUDE (session_part) FROM (
            SELECT {_key_columns_sql()}, session_part, {columns}
            FROM bar_inputs {joins}
            WINDOW {BAR_WINDOW_SQL}
        )
        WHERE session_part = 1
    """


def _labels_sql(settings: FeatureSettings) -> str:
    threshold = threshold_ticks_sql(
        settings.direction_threshold_mode,
        settings.direction_threshold_ticks,
        settings.cost_ticks,
    )
    horizons = ", ".join(
        horizon_labels_sql(horizon, "threshold_ticks") for horizon in settings.horizons_bars
    )
    return f"""
        WITH thresholded AS (
            SELECT *, {threshold} AS threshold_ticks FROM bar_inputs WINDOW {BAR_WINDOW_SQL}
        )
        SELECT * EXCLUDE (session_part) FROM (
            SELECT {_key_columns_sql()}, session_part, {horizons}
            FROM thresholded
            WINDOW {BAR_WINDOW_SQL}
        )
        WHERE session_part = 1
    """
