"""Features stage: one trading day's SLIM files (all symbols) -> bars, features and labels as
daily parquet files at every configured bar interval, with DuckDB views over all days."""

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg

from hft_pipeline.config import FeatureSettings, PipelineSettings
from hft_pipeline.features.compute import PreviousDay, check_settings, compute_day, write_day
from hft_pipeline.features.quality import (
    TableCheck,
    bars_per_session,
    check_day_tables,
    class_balance,
)
from hft_pipeline.features.schema import DIRECTION_CLASSES, direction_column
from hft_pipeline.features.store import (
    FEATURES_VIEW,
    LABELS_VIEW,
    interval_view_name,
    refresh_named_views,
)
from hft_pipeline.ingest.check_records import failed_checks
from hft_pipeline.layout import Layout
from hft_pipeline.partitions import DATE_DIMENSION, PipelinePartitions, parse_date_key

CHECK_NAMES = ("no_infinite_values", "nulls_where_allowed", "rows_match_session")


def checked_slim_files(
    layout: Layout, day, symbols: tuple[str, ...], partition_key: str
) -> dict[str, Path]:
    """The day's SLIM files, refusing any that is missing or whose latest checks failed."""
    files = {symbol: layout.slim_file(day, symbol) for symbol in symbols}
    problems = []
    for symbol, path in files.items():
        if not path.is_file():
            problems.append(f"{symbol}: {path} is missing (materialize slim_parquet first)")
            continue
        try:
            failed = failed_checks(path)
        except FileNotFoundError as error:
            problems.append(f"{symbol}: {error}")
            continue
        if failed:
            problems.append(f"{symbol}: latest slim_parquet check(s) failed: {failed}")
    if problems:
        raise dg.Failure(f"features[{partition_key}] refused: " + "; ".join(problems))
    return files


def interval_folder(bar_seconds: int, settings: FeatureSettings) -> int | None:
    """``Layout.features_file``'s interval argument: None for the training interval."""
    return None if bar_seconds == settings.bar_seconds else bar_seconds


def view_patterns(layout: Layout, settings: FeatureSettings) -> dict[str, str]:
    """Every view of the features stage (see ``store.py``) -> glob of its daily files."""
    patterns = {FEATURES_VIEW: layout.features_glob(), LABELS_VIEW: layout.labels_glob()}
    for interval in settings.bar_intervals:
        folder = interval_folder(interval, settings)
        patterns[interval_view_name(FEATURES_VIEW, interval)] = layout.features_glob(folder)
        patterns[interval_view_name(LABELS_VIEW, interval)] = layout.labels_glob(folder)
    return patterns


def build_features_assets(
    settings: PipelineSettings, partitions: PipelinePartitions
) -> list[dg.AssetsDefinition]:
    layout = Layout(settings.home)
    symbols = settings.data.symbols
    feature_settings = settings.features
    check_settings(feature_settings)

    def previous_day(day: dt.date, partition_key: str) -> tuple[PreviousDay | None, str]:
        """The previous day to warm up from, and the warm-up mode this run uses."""
        if feature_settings.warmup == "session":
            return None, "session"
        earlier = partitions.window_days(day, 2)[:-1]
        if not earlier:
            return None, "session (first trading day of history, no previous day)"
        files = checked_slim_files(layout, earlier[0], symbols, partition_key)
        return PreviousDay(files, partitions.calendar.session(earlier[0])), "previous_day"

    @dg.asset(
        group_name="features",
        partitions_def=partitions.trading_days,
        deps=[
            dg.AssetDep(
                "slim_parquet",
                partition_mapping=dg.MultiToSingleDimensionPartitionMapping(DATE_DIMENSION),
            )
        ],
        check_specs=[
            dg.AssetCheckSpec(name, asset="features", blocking=True) for name in CHECK_NAMES
        ],
        kinds={"duckdb", "parquet"},
    )
    def features(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """Regular bars of every configured symbol for one trading day, at every configured
        interval, with their features (point-in-time) and, in separate files, their
        forward-looking labels for every horizon."""
        day = parse_date_key(context.partition_key)
        session = partitions.calendar.session(day)
        slim_files = checked_slim_files(layout, day, symbols, context.partition_key)
        previous, warmup = previous_day(day, context.partition_key)
        run_settings = dataclasses.replace(
            feature_settings, warmup="previous_day" if previous else "session"
        )
        metadata: dict[str, Any] = {"warmup": warmup}
        checks: dict[int, list[TableCheck]] = {}
        for interval in feature_settings.bar_intervals:
            feature_table, label_table = compute_day(
                slim_files, session, run_settings, bar_seconds=interval, previous_day=previous
            )
            folder = interval_folder(interval, feature_settings)
            paths = (layout.features_file(day, folder), layout.labels_file(day, folder))
            write_day(feature_table, label_table, *paths)
            expected = bars_per_session(session.open_ns, session.close_ns, interval)
            checks[interval] = check_day_tables(
                feature_table, label_table, list(slim_files), expected, interval
            )
            metadata |= _interval_metadata(
                interval, feature_table, label_table, paths, run_settings
            )
        refresh_named_views(layout.duckdb_file, view_patterns(layout, feature_settings))
        return dg.MaterializeResult(
            metadata={
                **metadata,
                "features_path": dg.MetadataValue.path(str(layout.features_file(day))),
                "labels_path": dg.MetadataValue.path(str(layout.labels_file(day))),
                "bar_seconds": dg.MetadataValue.int(feature_settings.bar_seconds),
                "bar_intervals": list(feature_settings.bar_intervals),
                "horizons_bars": list(feature_settings.horizons_bars),
            },
            check_results=[_check_result(name, checks) for name in CHECK_NAMES],
        )

    return [features]


def _interval_metadata(
    interval: int, features, labels, paths: tuple[Path, Path], settings: FeatureSettings
) -> dict[str, Any]:
    """Rows, columns, paths and the direction class shares of every horizon of one interval,
    keys prefixed ``<N>s_``."""
    metadata: dict[str, Any] = {
        f"{interval}s_rows": dg.MetadataValue.int(features.num_rows),
        f"{interval}s_feature_columns": dg.MetadataValue.int(features.num_columns),
        f"{interval}s_features_path": dg.MetadataValue.path(str(paths[0])),
    }
    for horizon in settings.horizons_bars:
        balance = class_balance(labels, direction_column(horizon))
        for cls, share in balance.items():
            name = f"{interval}s_h{horizon}_share_{DIRECTION_CLASSES[int(cls)]}"
            metadata[name] = dg.MetadataValue.float(share)
    return metadata


def _check_result(name: str, checks: dict[int, list[TableCheck]]) -> dg.AssetCheckResult:
    """One asset check over every interval: passed when it passed at each."""
    verdicts = {
        interval: next(check for check in interval_checks if check.name == name)
        for interval, interval_checks in checks.items()
    }
    return dg.AssetCheckResult(
        check_name=name,
        passed=all(check.passed for check in verdicts.values()),
        description=next(iter(verdicts.values())).description,
        metadata={f"{interval}s": check.metadata for interval, check in verdicts.items()},
    )
