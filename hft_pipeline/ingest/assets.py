"""Ingest stage: raw archives observed in the bucket -> one SLIM parquet file per symbol and
trading day, with blocking data-quality checks."""

import datetime as dt
import json

import dagster as dg

from hft_pipeline.config import PipelineSettings
from hft_pipeline.ingest.quality import QUALITY_CHECKS, run_quality_checks, write_check_record
from hft_pipeline.ingest.raw_keys import (
    RawArchive,
    RawKeyParser,
    archives_of,
    list_day_archives,
    list_session_archives,
    session_archives,
)
from hft_pipeline.ingest.slim import ArchiveError, build_slim_day, read_slim_metadata
from hft_pipeline.ingest.slim_schema import META_CONTRACT_VOLUMES
from hft_pipeline.instruments import root_spec
from hft_pipeline.layout import Layout
from hft_pipeline.partitions import (
    PipelinePartitions,
    parse_date_key,
    session_archives_mapping,
    split_multi_key,
)
from hft_pipeline.resources import RawStoreResource


def archive_metadata(archives: list[RawArchive]) -> dict[str, dg.MetadataValue]:
    return {
        "objects": dg.MetadataValue.int(len(archives)),
        "bytes": dg.MetadataValue.int(sum(a.object.size for a in archives)),
        "archives": dg.MetadataValue.json(
            [{"key": a.object.key, "size": a.object.size, "etag": a.object.etag} for a in archives]
        ),
    }


def build_ingest_assets(
    settings: PipelineSettings, partitions: PipelinePartitions
) -> list[dg.AssetsDefinition]:
    layout = Layout(settings.home)
    parser = RawKeyParser(settings.data.raw_key_pattern, settings.data.raw_day_prefix)
    calendar = partitions.calendar
    partitions_start = parse_date_key(partitions.trading_days.get_first_partition_key())

    @dg.asset(group_name="ingest", partitions_def=partitions.raw, kinds={"s3"})
    def raw_archive(
        context: dg.AssetExecutionContext, raw_store: RawStoreResource
    ) -> dg.MaterializeResult:
        """Vendor archives (Databento ZIPs) of one UTC day and symbol as they sit in the bucket:
        observed (key, size, ETag), never copied."""
        utc_day, symbol = split_multi_key(context.partition_key)
        listed = list_day_archives(raw_store.get_store(), parser, utc_day)
        return dg.MaterializeResult(metadata=archive_metadata(archives_of(listed, utc_day, symbol)))

    def previous_contract_volumes(day: dt.date, symbol: str) -> dict[str, int] | None:
        """Yesterday's per-contract volumes: the front contract is chosen without looking ahead."""
        if day <= partitions_start:
            return None
        previous = layout.slim_file(calendar.previous_trading_day(day), symbol)
        if not previous.is_file():
            return None
        return json.loads(read_slim_metadata(previous).get(META_CONTRACT_VOLUMES, "{}")) or None

    @dg.asset(
        group_name="ingest",
        partitions_def=partitions.slim,
        deps=[
            dg.AssetDep(raw_archive, partition_mapping=session_archives_mapping(calendar)),
        ],
        check_specs=[
            dg.AssetCheckSpec(name, asset="slim_parquet", blocking=True) for name in QUALITY_CHECKS
        ],
        kinds={"parquet"},
    )
    def slim_parquet(
        context: dg.AssetExecutionContext, raw_store: RawStoreResource
    ) -> dg.MaterializeResult:
        """One root symbol's trading session of book updates and trades, in arrival order
        (SLIM schema), gathered from every raw archive whose UTC day overlaps the session."""
        day, symbol = split_multi_key(context.partition_key)
        session = calendar.session(day)
        store = raw_store.get_store()
        archives, missing_days = session_archives(
            list_session_archives(store, parser, session), session, symbol
        )
        if not archives:
            raise dg.Failure(
                f"slim_parquet[{context.partition_key}]: no raw archive for {symbol} on UTC days "
                f"{[d.isoformat() for d in session.utc_days]} in {store.describe()} "
                f"(keys must match {parser.pattern!r})"
            )
        local_files = [store.fetch(archive.object, layout.raw_cache_dir) for archive in archives]
        out_path = layout.slim_file(day, symbol)
        try:
            summary = build_slim_day(
                local_files,
                session,
                symbol,
                out_path,
                expected_utc_days=session.utc_days,
                previous_contract_volumes=previous_contract_volumes(day, symbol),
            )
        except ArchiveError as error:
            raise dg.Failure(f"slim_parquet[{context.partition_key}]: {error}") from error
        checks = run_quality_checks(out_path, root_spec(symbol).tick_size, len(missing_days))
        write_check_record(out_path, checks)
        if settings.data.upload_slim:
            store.upload(out_path, f"slim/{day:%Y}/{out_path.name}")
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(out_path)),
                "rows": dg.MetadataValue.int(summary.rows),
                "contract": dg.MetadataValue.text(summary.contract),
                "contract_volumes": dg.MetadataValue.json(summary.contract_volumes),
                "degraded": dg.MetadataValue.bool(summary.degraded),
                "partial": dg.MetadataValue.bool(summary.partial),
                "source_archives": dg.MetadataValue.json([a.object.key for a in archives]),
                "missing_utc_days": dg.MetadataValue.json([d.isoformat() for d in missing_days]),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=check.name,
                    passed=check.passed,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description=check.description,
                    metadata={"violations": check.violations, "rows": check.rows},
                )
                for check in checks
            ],
        )

    return [raw_archive, slim_parquet]
