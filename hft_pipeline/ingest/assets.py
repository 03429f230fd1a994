"""Ingest stage: raw archives observed in the bucket -> one SLIM parquet file per symbol and
trading day, with blocking data-quality checks."""

import dataclasses
import datetime as dt
import json

import dagster as dg

from hft_pipeline.config import PipelineSettings
from hft_pipeline.ingest.check_records import write_check_record
from hft_pipeline.ingest.quality import QUALITY_CHECKS, QualityCheck, run_quality_checks
from hft_pipeline.ingest.raw_keys import (
    RawArchive,
    RawKeyParser,
    archives_of,
    list_day_archives,
    list_session_archives,
    session_archives,
)
from hft_pipeline.ingest.slim import (
    ArchiveError,
    SlimSummary,
    build_slim_day,
    read_slim_metadata,
)
from hft_pipeline.ingest.slim_schema import META_CONTRACT_VOLUMES, META_TICK_SIZE
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


def source_metadata(summary: SlimSummary) -> dict[str, dg.MetadataValue]:
    """What only some sources have: the bars' interval, the MBO replay's counts."""
    metadata = {}
    if summary.bar_interval_ns is not None:
        metadata["bar_interval_ns"] = dg.MetadataValue.int(summary.bar_interval_ns)
    if summary.mbo_replay is not None:
        metadata["mbo_replay"] = dg.MetadataValue.json(dataclasses.asdict(summary.mbo_replay))
    return metadata


def check_metadata(check: QualityCheck) -> dict[str, dg.MetadataValue]:
    """A check's counts, and where to look when it says so."""
    metadata = {
        "violations": dg.MetadataValue.int(check.violations),
        "rows": dg.MetadataValue.int(check.rows),
    }
    if check.detail:
        metadata["detail"] = dg.MetadataValue.text(check.detail)
    if check.example_ts_recv is not None:
        metadata["example_ts_recv"] = dg.MetadataValue.int(check.example_ts_recv)
    return metadata


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
                front_contract_rule=settings.data.front_contract_rule,
                trading_hours=settings.data.trading_hours,
                memory_mb=settings.data.ingest_memory_mb,
                max_uncompressed_gb=settings.data.archive_max_uncompressed_gb,
                max_compression_ratio=settings.data.archive_max_compression_ratio,
            )
        except ArchiveError as error:
            raise dg.Failure(f"slim_parquet[{context.partition_key}]: {error}") from error
        # The tick the file was written with (a definition record's, when the archive had one).
        tick_size = float(read_slim_metadata(out_path)[META_TICK_SIZE])
        checks = run_quality_checks(
            out_path,
            tick_size,
            len(missing_days),
            max_gap_seconds=settings.data.max_gap_seconds,
        )
        write_check_record(out_path, checks)
        # Only a file that passed every check is shared: the bucket has no blocking checks.
        uploaded = settings.data.upload_slim and all(check.passed for check in checks)
        if uploaded:
            store.upload(out_path, f"slim/{day:%Y}/{out_path.name}")
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(out_path)),
                "rows": dg.MetadataValue.int(summary.rows),
                "contract": dg.MetadataValue.text(summary.contract),
                "front_contract_rule": dg.MetadataValue.text(summary.front_contract_rule),
                "front_contract_basis": dg.MetadataValue.text(summary.front_contract_basis),
                "trading_hours": dg.MetadataValue.text(settings.data.trading_hours),
                "source_ts_recv_regressions": dg.MetadataValue.int(
                    summary.source_ts_recv_regressions
                ),
                "contract_volumes": dg.MetadataValue.json(summary.contract_volumes),
                "tick_size": dg.MetadataValue.float(summary.tick_size),
                "tick_size_source": dg.MetadataValue.text(summary.tick_size_source),
                "schemas": dg.MetadataValue.json(summary.schemas),
                **source_metadata(summary),
                "degraded": dg.MetadataValue.bool(summary.degraded),
                "partial": dg.MetadataValue.bool(summary.partial),
                "uploaded": dg.MetadataValue.bool(uploaded),
                "source_archives": dg.MetadataValue.json([a.object.key for a in archives]),
                "missing_utc_days": dg.MetadataValue.json([d.isoformat() for d in missing_days]),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=check.name,
                    passed=check.passed,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description=check.description,
                    metadata=check_metadata(check),
                )
                for check in checks
            ],
        )

    return [raw_archive, slim_parquet]
