"""Schedules and sensors.

- `raw_bucket_sensor`: new raw archives -> the SLIM partitions whose sessions they complete.
- `daily_roll30_schedule`: every morning, yesterday's SLIM partitions (skips non-trading days).
- `daily_chain_sensor`: a trading day whose SLIM files all landed -> features, out-of-sample
  metrics, the day's window model and its artifact, in one daily-partitioned run.
"""

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from hft_pipeline.config import PipelineSettings
from hft_pipeline.ingest.raw_keys import (
    RawArchive,
    RawKeyParser,
    archives_fingerprint,
    session_archives,
)
from hft_pipeline.partitions import PipelinePartitions, date_key, multi_key, split_multi_key
from hft_pipeline.resources import RawStoreResource, StoredObject

# The day's chain after SLIM (DESIGN.md section 1), all partitioned by trading day.
DAILY_CHAIN = ("features", "walk_forward_metrics", "roll30_model", "inference_artifact")
# Materializations read per tick of the chain sensor (more wait for the next tick).
CHAIN_SENSOR_BATCH = 500
# Sessions end 16:00 CT; Databento's daily files are ready by early morning.
SCHEDULE_CRON = "0 6 * * *"
SCHEDULE_TIMEZONE = "America/Chicago"


@dataclass(frozen=True)
class BucketCursor:
    """High-water mark of LastModified, plus the objects (key and ETag) seen at that instant.

    Comparing upload times rather than key order catches archives uploaded out of date order
    and rewritten archives; the objects at the mark break ties within the listing's resolution
    (S3 reports whole seconds), so a rewrite in the same second is still seen.
    """

    high_water: str = ""  # ISO timestamp
    seen_at_high_water: tuple[str, ...] = ()  # "key@etag"

    @classmethod
    def parse(cls, text: str | None) -> "BucketCursor":
        if not text:
            return cls()
        data = json.loads(text)
        return cls(data["high_water"], tuple(data["seen_at_high_water"]))

    def serialize(self) -> str:
        return json.dumps(
            {"high_water": self.high_water, "seen_at_high_water": list(self.seen_at_high_water)}
        )

    def is_new(self, stored: StoredObject) -> bool:
        stamp = stored.last_modified.isoformat()
        return stamp > self.high_water or (
            stamp == self.high_water and _identity(stored) not in self.seen_at_high_water
        )

    def advanced(self, objects: Sequence[StoredObject]) -> "BucketCursor":
        if not objects:
            return self
        newest = max(stored.last_modified.isoformat() for stored in objects)
        if newest < self.high_water:
            return self
        at_mark = {_identity(s) for s in objects if s.last_modified.isoformat() == newest}
        if newest == self.high_water:
            at_mark |= set(self.seen_at_high_water)
        return BucketCursor(newest, tuple(sorted(at_mark)))


def _identity(stored: StoredObject) -> str:
    return f"{stored.key}@{stored.etag}"


@dataclass(frozen=True)
class SlimRequest:
    day: dt.date
    symbol: str
    run_key: str


def plan_slim_requests(
    new: Sequence[RawArchive],
    everything: Sequence[RawArchive],
    partitions: PipelinePartitions,
    symbols: Sequence[str],
) -> list[SlimRequest]:
    """SLIM partitions that new archives complete: every UTC day of the session is present.

    The run key carries the fingerprint of the session's archives, so a rewritten archive
    re-ingests on purpose while an unchanged one never runs twice.
    """
    valid_days = set(partitions.trading_days.get_partition_keys())
    requests: dict[tuple[dt.date, str], SlimRequest] = {}
    for archive in new:
        for symbol in [archive.symbol] if archive.symbol else symbols:
            if symbol not in symbols:
                continue
            # A UTC day's records belong to sessions of that day or of up to `lead` days later.
            lead = partitions.calendar.session_lead_days
            for day in (archive.utc_day + dt.timedelta(days=i) for i in range(lead + 1)):
                if date_key(day) not in valid_days or (day, symbol) in requests:
                    continue
                session = partitions.calendar.session(day)
                if archive.utc_day not in session.utc_days:
                    continue
                found, missing = session_archives(everything, session, symbol)
                if not missing:
                    key = f"slim:{date_key(day)}|{symbol}:{archives_fingerprint(found)}"
                    requests[(day, symbol)] = SlimRequest(day, symbol, key)
    return sorted(requests.values(), key=lambda r: (r.day, r.symbol))


def build_automation(
    settings: PipelineSettings, partitions: PipelinePartitions
) -> tuple[list[dg.SensorDefinition], list[dg.ScheduleDefinition], list]:
    parser = RawKeyParser(settings.data.raw_key_pattern, settings.data.raw_day_prefix)
    symbols = settings.data.symbols
    slim_job = dg.define_asset_job("slim_job", selection=dg.AssetSelection.assets("slim_parquet"))

    @dg.sensor(job=slim_job, minimum_interval_seconds=120)
    def raw_bucket_sensor(
        context: dg.SensorEvaluationContext, raw_store: RawStoreResource
    ) -> dg.SensorResult:
        """Lists the raw bucket; requests the SLIM partitions whose sessions new archives
        complete, and records the new archives as raw_archive materializations."""
        cursor = BucketCursor.parse(context.cursor)
        listed = list(raw_store.get_store().list_objects(parser.listing_prefix))
        parsed = [(stored, parser.parse(stored)) for stored in listed]
        unrecognised = [s.key for s, archive in parsed if archive is None and cursor.is_new(s)]
        archives = [archive for _, archive in parsed if archive is not None]
        new = [archive for archive in archives if cursor.is_new(archive.object)]
        unconfigured = sorted({a.symbol for a in new if a.symbol and a.symbol not in symbols})
        if unrecognised or unconfigured:
            context.log.warning(
                f"raw bucket: {len(unrecognised)} new key(s) not matching {parser.pattern!r} "
                f"(first: {unrecognised[:3]}); archives of unconfigured symbols {unconfigured} "
                f"(configured: {list(symbols)}; set HFT_SYMBOLS to include them)"
            )
        requests = plan_slim_requests(new, archives, partitions, symbols)
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(run_key=r.run_key, partition_key=multi_key(r.day, r.symbol))
                for r in requests
            ],
            asset_events=_raw_archive_events(new, partitions, symbols),
            cursor=cursor.advanced(listed).serialize(),
            skip_reason=None if requests else _skip_reason(new, unconfigured),
        )

    daily_chain_job = dg.define_asset_job(
        "daily_chain_job", selection=dg.AssetSelection.assets(*DAILY_CHAIN)
    )

    @dg.schedule(job=slim_job, cron_schedule=SCHEDULE_CRON, execution_timezone=SCHEDULE_TIMEZONE)
    def daily_roll30_schedule(context: dg.ScheduleEvaluationContext):
        """At 06:00 CT, ingest yesterday's session of every symbol; `daily_chain_sensor` then
        runs the rest of the day's chain. Skips days that are not trading days."""
        day = context.scheduled_execution_time.date() - dt.timedelta(days=1)
        if date_key(day) not in partitions.trading_days.get_partition_keys():
            return dg.SkipReason(f"{day} is not a trading day of {partitions.calendar.name}")
        return [
            dg.RunRequest(
                run_key=f"daily:{date_key(day)}|{symbol}",
                partition_key=multi_key(day, symbol),
                tags={"hft/trading_day": str(day)},
            )
            for symbol in symbols
        ]

    @dg.sensor(job=daily_chain_job, minimum_interval_seconds=60)
    def daily_chain_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        """Once every symbol's SLIM file of a trading day has (re)landed: features, yesterday's
        model scored on the day, the day's window model and its artifact, in one run."""
        result = context.instance.fetch_materializations(
            dg.AssetKey("slim_parquet"),
            limit=CHAIN_SENSOR_BATCH,
            cursor=context.cursor,
            ascending=True,
        )
        landed_days = {split_multi_key(record.partition_key)[0] for record in result.records}
        materialized = context.instance.get_materialized_partitions(dg.AssetKey("slim_parquet"))
        complete = sorted(
            date_key(day)
            for day in landed_days
            if all(multi_key(day, symbol) in materialized for symbol in symbols)
        )
        newest = max((record.storage_id for record in result.records), default=0)
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(run_key=f"chain:{day}:{newest}", partition_key=day)
                for day in complete
            ],
            cursor=result.cursor if result.records else context.cursor,
            skip_reason=None if complete else "no trading day has all its SLIM files newly",
        )

    return (
        [raw_bucket_sensor, daily_chain_sensor],
        [daily_roll30_schedule],
        [slim_job, daily_chain_job],
    )


def _raw_archive_events(
    new: Sequence[RawArchive], partitions: PipelinePartitions, symbols: Sequence[str]
) -> list[dg.AssetMaterialization]:
    valid_days = set(partitions.utc_days.get_partition_keys())
    events = []
    for archive in new:
        if date_key(archive.utc_day) not in valid_days:
            continue
        for symbol in [archive.symbol] if archive.symbol else symbols:
            if symbol in symbols:
                events.append(
                    dg.AssetMaterialization(
                        asset_key="raw_archive",
                        partition=multi_key(archive.utc_day, symbol),
                        metadata={
                            "key": archive.object.key,
                            "size": archive.object.size,
                            "etag": archive.object.etag,
                        },
                    )
                )
    return events


def _skip_reason(new: Sequence[RawArchive], unconfigured: Sequence[str]) -> str:
    if not new:
        return "no new raw archive since the last tick"
    text = f"{len(new)} new archive(s), but no session is complete yet"
    return text + (f"; unconfigured symbols: {list(unconfigured)}" if unconfigured else "")
