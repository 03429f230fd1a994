import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from hft_pipeline.automation import BucketCursor
from hft_pipeline.config import PipelineSettings
from hft_pipeline.definitions import build_definitions
from hft_pipeline.resources import raw_store_resource


def _settings(tmp_path: Path, raw_url: str) -> PipelineSettings:
    return PipelineSettings.load({"HFT_HOME": str(tmp_path)}).with_overrides(
        data={
            "raw_url": raw_url,
            "start": dt.date(2024, 1, 2),
            "end": dt.date(2024, 12, 31),
            "symbols": ("ES", "ZN"),
        }
    )


def _put(client, bucket: str, day: str, symbol: str, body: bytes = b"zip") -> None:
    key = f"raw/{day[:4]}/{day}/{symbol}/glbx-mdp3-{day}-{symbol}.zip"
    client.put_object(Bucket=bucket, Key=key, Body=body)


def _tick(defs: dg.Definitions, instance, cursor, raw_url: str):
    sensor = defs.get_sensor_def("raw_bucket_sensor")
    resource = raw_store_resource(raw_url)
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"raw_store": resource},
        repository_def=defs.get_repository_def(),
    ) as context:
        return sensor.evaluate_tick(context)


def test_sensor_requests_complete_sessions_once_and_new_objects_later(s3_bucket, tmp_path):
    client, bucket = s3_bucket
    raw_url = f"s3://{bucket}"
    defs = build_definitions(_settings(tmp_path, raw_url))
    for day in ("20240101", "20240102", "20240103"):  # sessions of Jan 2 and Jan 3
        _put(client, bucket, day, "ES")
    _put(client, bucket, "20240107", "ZN")  # Sunday: Monday's session is not complete yet
    _put(client, bucket, "20240102", "CL")  # a symbol nobody configured

    with dg.instance_for_test() as instance:
        first = _tick(defs, instance, None, raw_url)
        second = _tick(defs, instance, first.cursor, raw_url)
        _put(client, bucket, "20240108", "ZN")
        third = _tick(defs, instance, second.cursor, raw_url)
        fourth = _tick(defs, instance, third.cursor, raw_url)

    assert sorted(r.partition_key for r in first.run_requests) == ["2024-01-02|ES", "2024-01-03|ES"]
    assert {e.partition for e in first.asset_events} >= {"2024-01-01|ES", "2024-01-07|ZN"}
    assert second.run_requests == [] and "no new raw archive" in second.skip_message
    assert [r.partition_key for r in third.run_requests] == ["2024-01-08|ZN"]
    assert fourth.run_requests == []


def test_sensor_rewritten_archive_gets_a_new_run_key(s3_bucket, tmp_path):
    client, bucket = s3_bucket
    raw_url = f"s3://{bucket}"
    defs = build_definitions(_settings(tmp_path, raw_url))
    _put(client, bucket, "20240101", "ES")
    _put(client, bucket, "20240102", "ES")

    with dg.instance_for_test() as instance:
        first = _tick(defs, instance, None, raw_url)
        _put(client, bucket, "20240102", "ES", body=b"corrected archive")
        second = _tick(defs, instance, first.cursor, raw_url)

    assert [r.partition_key for r in second.run_requests] == ["2024-01-02|ES"]
    assert second.run_requests[0].run_key != first.run_requests[0].run_key


def test_sensor_reports_unconfigured_symbols_instead_of_dropping_them(s3_bucket, tmp_path):
    client, bucket = s3_bucket
    raw_url = f"s3://{bucket}"
    defs = build_definitions(_settings(tmp_path, raw_url))
    _put(client, bucket, "20240102", "CL")

    with dg.instance_for_test() as instance:
        result = _tick(defs, instance, None, raw_url)

    assert result.run_requests == []
    assert "unconfigured symbols: ['CL']" in result.skip_message


def test_bucket_cursor_catches_out_of_order_uploads():
    from hft_pipeline.resources import StoredObject

    stamp = dt.datetime(2024, 1, 9, 12, tzinfo=dt.UTC)
    later = StoredObject("raw/2024/20240102/ES/a.zip", 1, "e1", stamp)
    cursor = BucketCursor().advanced([later])
    earlier_key_uploaded_later = StoredObject(
        "raw/2024/20240101/ES/a.zip", 1, "e2", stamp + dt.timedelta(seconds=1)
    )
    same_instant = StoredObject("raw/2024/20231229/ES/a.zip", 1, "e3", stamp)

    assert not cursor.is_new(later)
    assert cursor.is_new(earlier_key_uploaded_later)
    assert cursor.is_new(same_instant)
    assert BucketCursor.parse(cursor.serialize()) == cursor


@pytest.mark.parametrize(
    ("tick", "expected_day"),
    [
        (dt.datetime(2024, 1, 9, 6), "2024-01-08"),  # Tuesday morning: Monday's session
        (dt.datetime(2024, 1, 16, 6), "2024-01-15"),  # MLK day is an early-close trading day
        (dt.datetime(2024, 12, 26, 6), None),  # Christmas: holiday, skipped
        (dt.datetime(2024, 1, 7, 6), None),  # Sunday morning: Saturday is no trading day
    ],
)
def test_daily_schedule_ingests_yesterday_and_skips_non_trading_days(tmp_path, tick, expected_day):
    defs = build_definitions(_settings(tmp_path, tmp_path.as_uri()))
    schedule = defs.get_schedule_def("daily_roll30_schedule")

    with (
        dg.instance_for_test() as instance,
        dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=tick.replace(tzinfo=dt.UTC),
            repository_def=defs.get_repository_def(),
        ) as context,
    ):
        result = schedule.evaluate_tick(context)

    if expected_day is None:
        assert result.run_requests == [] and "not a trading day" in result.skip_message
    else:
        keys = sorted(r.partition_key for r in result.run_requests)
        assert keys == [f"{expected_day}|ES", f"{expected_day}|ZN"]


def test_chain_sensor_runs_a_day_once_all_its_symbols_landed(tmp_path):
    defs = build_definitions(_settings(tmp_path, tmp_path.as_uri()))
    sensor = defs.get_sensor_def("daily_chain_sensor")

    def land(instance, partition: str) -> None:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key="slim_parquet", partition=partition)
        )

    def tick(instance, cursor):
        with dg.build_sensor_context(
            instance=instance, cursor=cursor, repository_def=defs.get_repository_def()
        ) as context:
            return sensor.evaluate_tick(context)

    with dg.instance_for_test() as instance:
        land(instance, "2024-01-03|ES")
        only_es = tick(instance, None)
        land(instance, "2024-01-03|ZN")
        both = tick(instance, only_es.cursor)
        again = tick(instance, both.cursor)
        land(instance, "2024-01-03|ES")  # a re-ingested day runs its chain again
        redo = tick(instance, again.cursor)

    assert only_es.run_requests == []
    assert [r.partition_key for r in both.run_requests] == ["2024-01-03"]
    assert again.run_requests == []
    assert [r.partition_key for r in redo.run_requests] == ["2024-01-03"]
    assert redo.run_requests[0].run_key != both.run_requests[0].run_key
