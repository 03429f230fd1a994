"""Features stage: one trading day's SLIM files (all symbols) -> bars, features and labels as
daily parquet files, with DuckDB views over all days."""

from pathlib import Path

import dagster as dg

from hft_pipeline.config import PipelineSettings
from hft_pipeline.features.compute import compute_day, write_day
from hft_pipeline.features.quality import bars_per_session, check_day_tables, class_balance
from hft_pipeline.features.schema import DIRECTION_CLASSES, direction_column
from hft_pipeline.features.store import refresh_views
from hft_pipeline.ingest.quality import failed_checks
from hft_pipeline.layout import Layout
from hft_pipeline.partitions import DATE_DIMENSION, PipelinePartitions, parse_date_key


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


def build_features_assets(
    settings: PipelineSettings, partitions: PipelinePartitions
) -> list[dg.AssetsDefinition]:
    layout = Layout(settings.home)
    symbols = settings.data.symbols
    horizon = settings.features.horizon_bars

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
            dg.AssetCheckSpec("no_infinite_values", asset="features", blocking=True),
            dg.AssetCheckSpec("rows_match_session", asset="features", blocking=True),
        ],
        kinds={"duckdb", "parquet"},
    )
    def features(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """Regular bars of every configured symbol for one trading day with their features
        (point-in-time) and, in a separate file, their forward-looking labels."""
        day = parse_date_key(context.partition_key)
        session = partitions.calendar.session(day)
        slim_files = checked_slim_files(layout, day, symbols, context.partition_key)
        feature_table, label_table = compute_day(slim_files, session, settings.features)
        write_day(feature_table, label_table, layout.features_file(day), layout.labels_file(day))
        refresh_views(
            layout.duckdb_file,
            str(layout.home / "features" / "*" / "features_*.parquet"),
            str(layout.home / "features" / "*" / "labels_*.parquet"),
        )
        expected = len(symbols) * bars_per_session(
            session.open_ns, session.close_ns, settings.features.bar_seconds
        )
        checks = check_day_tables(feature_table, label_table, expected)
        balance = class_balance(label_table, direction_column(horizon))
        return dg.MaterializeResult(
            metadata={
                "features_path": dg.MetadataValue.path(str(layout.features_file(day))),
                "labels_path": dg.MetadataValue.path(str(layout.labels_file(day))),
                "rows": dg.MetadataValue.int(feature_table.num_rows),
                "feature_columns": dg.MetadataValue.int(feature_table.num_columns),
                "bar_seconds": dg.MetadataValue.int(settings.features.bar_seconds),
                **{
                    f"share_{DIRECTION_CLASSES[int(cls)]}": dg.MetadataValue.float(share)
                    for cls, share in balance.items()
                },
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=check.name,
                    passed=check.passed,
                    description=check.description,
                    metadata=check.metadata,
                )
                for check in checks
            ],
        )

    return [features]
