"""The whole graph materialized through Dagster, reading simulated Databento ZIPs from moto's
S3 server exactly as it would read them from R2."""

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from hft_pipeline.config import PipelineSettings
from hft_pipeline.layout import Layout
from hft_pipeline.runner import materialize_range
from hft_pipeline.simulate import simulate_bucket
from hft_pipeline_tests.conftest import REPO_ROOT, upload_folder

START, END = dt.date(2024, 1, 2), dt.date(2024, 1, 5)  # 4 trading days
SYMBOLS = ("ES", "ZN")


def _small_settings(home: Path, raw_url: str) -> PipelineSettings:
    return PipelineSettings.load({"HFT_HOME": str(home), "HFT_CONFIG": "/dev/null"}).with_overrides(
        data={"raw_url": raw_url, "start": START, "end": END, "symbols": SYMBOLS},
        features={
            "bar_seconds": 5,
            "bar_intervals": (5,),
            "horizon_bars": 6,
            "horizons_bars": (6,),
        },
        training={
            "window_days": 2,
            "context": 12,
            "hidden_size": 8,
            "num_layers": 1,
            "epochs": 1,
            "batch_size": 256,
            "max_train_sequences": 4000,
        },
    )


@pytest.fixture(scope="module")
def simulated_bucket(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bucket")
    simulate_bucket(folder, START, END, SYMBOLS, signal=1.0, seed=3, events_per_second=0.5)
    return folder


def test_materialize_range_over_s3_writes_seed_layout_and_metrics(
    simulated_bucket, s3_bucket, tmp_path
):
    client, bucket = s3_bucket
    upload_folder(client, bucket, simulated_bucket)
    settings = _small_settings(tmp_path / "home", f"s3://{bucket}")
    layout = Layout(settings.home)

    with dg.instance_for_test() as instance:
        summary = materialize_range(settings, START, END, instance, echo=lambda _: None)
        slim_checks = instance.get_latest_materialization_event(dg.AssetKey("slim_parquet"))

    days = [dt.date(2024, 1, d) for d in (2, 3, 4, 5)]
    for day in days:
        for symbol in SYMBOLS:
            assert layout.slim_file(day, symbol).is_file()
        assert layout.features_file(day).is_file() and layout.labels_file(day).is_file()
    for start, end in zip(days, days[1:], strict=False):
        window = layout.window_dir(start, end)
        for name in (
            "model.pt",
            "model_config.json",
            "metrics.json",
            "scaler.json",
            "training_history.json",
            "baselines.json",
        ):
            assert (window / name).is_file(), name
        assert layout.train_log(end).read_text().strip()
        assert (layout.artifact_dir(start, end) / "model.ts").is_file()
    scored = pd.concat(pd.read_parquet(layout.metrics_file(day)) for day in days[2:])
    assert set(scored["model"]) == {"model", "baseline_naive", "baseline_logistic"}
    assert scored["accuracy"].between(0, 1).all() and (scored["n"] > 0).all()
    assert set(summary["model"]) == {"model", "baseline_naive", "baseline_logistic"}
    pointer = json.loads(layout.production_pointer.read_text())
    assert pointer["window"] == "20240104_20240105"
    assert slim_checks is not None


def test_corrupt_archive_fails_its_partition_and_keeps_earlier_output(simulated_bucket, tmp_path):
    settings = _small_settings(tmp_path / "home", (tmp_path / "bucket").as_uri())
    bucket = tmp_path / "bucket"
    subprocess.run(["cp", "-r", str(simulated_bucket), str(bucket)], check=True)
    layout = Layout(settings.home)
    from hft_pipeline.definitions import build_definitions

    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        good = dg.materialize(
            list(defs.assets),
            selection=["slim_parquet"],
            partition_key="2024-01-03|ES",
            instance=instance,
            resources=dict(defs.resources),
        )
        before = layout.slim_file(dt.date(2024, 1, 3), "ES").read_bytes()
        archive = next((bucket / "raw/2024/20240103/ES").glob("*.zip"))
        archive.write_bytes(archive.read_bytes()[:200])
        bad = dg.materialize(
            list(defs.assets),
            selection=["slim_parquet"],
            partition_key="2024-01-03|ES",
            instance=instance,
            resources=dict(defs.resources),
            raise_on_error=False,
        )

    assert good.success and not bad.success
    failure = bad.get_step_failure_events()[0].event_specific_data.error.message
    assert "2024-01-03|ES" in failure and archive.name in failure
    assert layout.slim_file(dt.date(2024, 1, 3), "ES").read_bytes() == before


def test_definitions_validate_on_workspace(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env={"HFT_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "DAGSTER_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stderr[-2000:]
