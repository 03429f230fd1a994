"""The training matrix: entries from settings, their folders, the checks before training, the
sequential and parallel runs, and the Dagster assets' per-epoch observations."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import torch
import yaml

from hft_pipeline.config import PipelineSettings
from hft_pipeline.definitions import build_definitions
from hft_pipeline.features.registry import MODEL_FEATURES
from hft_pipeline.features.schema import KEY_COLUMNS, SESSION_DATE
from hft_pipeline.layout import Layout
from hft_pipeline.training import matrix_pool
from hft_pipeline.training.matrix import (
    MatrixEntry,
    check_inputs,
    matrix_entries,
    plan_jobs,
    window_inputs,
)
from hft_pipeline.training.matrix_pool import plan_lanes, run_matrix
from hft_pipeline_tests.conftest import REPO_ROOT
from hft_pipeline_tests.training.synthetic import make_window

DAYS = (dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4))  # 3 trading days
HORIZONS = (12, 24)  # label horizons the synthetic files hold; 12 is the primary one
TINY_TRAINING = {
    "window_days": len(DAYS),
    "context": 8,
    "hidden_size": 8,
    "num_layers": 1,
    "dropout": 0.0,
    "epochs": 2,
    "batch_size": 64,
    "validation_fraction": 0.25,
    "embargo_bars": 2,
    "device": "cpu",
}


def write_window_home(home: Path, horizons: tuple[int, ...] = HORIZONS, bars: int = 120) -> None:
    """Daily features and labels files of DAYS under ``home``: every model input, two symbols,
    labels for each of ``horizons`` (the same features whatever the horizon)."""
    windows = [
        make_window(days=len(DAYS), bars=bars, n_features=len(MODEL_FEATURES), horizon=h)
        for h in horizons
    ]
    renamed = dict(zip(windows[0].feature_columns, MODEL_FEATURES, strict=True))
    features = windows[0].features.rename(columns=renamed)
    labels = pd.concat(
        [windows[0].labels, *(w.labels.drop(columns=list(KEY_COLUMNS)) for w in windows[1:])],
        axis=1,
    )
    layout = Layout(home)
    for day in DAYS:
        rows = (features[SESSION_DATE] == day).to_numpy()
        for frame, path in (
            (features, layout.features_file(day)),
            (labels, layout.labels_file(day)),
        ):
            path.parent.mkdir(parents=True, exist_ok=True)
            frame[rows].to_parquet(path, index=False)


def tiny_settings(home: Path, **training) -> PipelineSettings:
    base = PipelineSettings.load({"HFT_HOME": str(home), "HFT_CONFIG": os.devnull})
    return base.with_overrides(
        data={"start": DAYS[0], "end": DAYS[-1], "symbols": ("ES", "ZN")},
        training={**TINY_TRAINING, **training},
    )


def planned(home: Path, settings: PipelineSettings, entries: list[MatrixEntry]):
    inputs = window_inputs(Layout(home), DAYS, settings.training.window_days)
    return inputs, plan_jobs(settings, inputs, entries, MODEL_FEATURES)


def test_matrix_entries_without_matrix_settings_is_the_primary_model_alone(tmp_path):
    settings = tiny_settings(tmp_path)

    entries = matrix_entries(settings)
    inputs, [job] = planned(tmp_path, settings, entries)

    assert entries == [MatrixEntry("lstm_multitask", None, 12)]
    assert job.is_primary and job.out_dir == inputs.window_dir
    assert job.log_path == Layout(tmp_path).train_log(DAYS[-1])


def test_matrix_entries_cross_the_axes_and_name_their_folders(tmp_path):
    settings = tiny_settings(tmp_path, matrix_symbols=("ES", "ZN"), matrix_horizons=(12, 24))

    entries = matrix_entries(settings)
    overridden = matrix_entries(settings, symbols=("ZN",), horizons=(24, 24))
    inputs, jobs = planned(tmp_path, settings, entries)

    assert [entry.name for entry in entries] == [
        "lstm_multitask_ES_h12",
        "lstm_multitask_ES_h24",
        "lstm_multitask_ZN_h12",
        "lstm_multitask_ZN_h24",
    ]
    assert overridden == [MatrixEntry("lstm_multitask", "ZN", 24)]
    assert jobs[1].out_dir == inputs.window_dir / "matrix" / "lstm_multitask_ES_h24"
    assert jobs[1].log_path.name == "train_20240104_lstm_multitask_ES_h24.log"
    assert not any(job.is_primary for job in jobs)


def test_window_shorter_than_window_days_is_refused(tmp_path):
    with pytest.raises(ValueError, match="needs 5 trading days but history has only 3"):
        window_inputs(Layout(tmp_path), DAYS, 5)


def test_check_inputs_absent_horizon_names_the_horizon_and_labels_file(tmp_path):
    write_window_home(tmp_path, horizons=(12,))
    settings = tiny_settings(tmp_path)
    inputs, _ = planned(tmp_path, settings, [])
    entries = [MatrixEntry("lstm_multitask", "ES", 12), MatrixEntry("lstm_multitask", "ES", 36)]

    with pytest.raises(ValueError, match="horizon 36 bars is not in .*labels_20240102.parquet"):
        check_inputs(inputs, entries)


def test_check_inputs_symbol_without_rows_names_the_symbols_found(tmp_path):
    write_window_home(tmp_path, horizons=(12,))
    inputs, _ = planned(tmp_path, tiny_settings(tmp_path), [])

    with pytest.raises(ValueError, match=r"symbol CL has no rows .*\['ES', 'ZN'\]"):
        check_inputs(inputs, [MatrixEntry("lstm_multitask", "CL", 12)])


def test_check_inputs_missing_day_asks_for_features(tmp_path):
    write_window_home(tmp_path, horizons=(12,))
    Layout(tmp_path).labels_file(DAYS[1]).unlink()
    inputs, _ = planned(tmp_path, tiny_settings(tmp_path), [])

    with pytest.raises(FileNotFoundError, match="materialize `features`"):
        check_inputs(inputs, [MatrixEntry("lstm_multitask", None, 12)])


def test_matrix_entries_unknown_model_kind_is_refused(tmp_path):
    with pytest.raises(ValueError, match="model_kind='gru' is unknown"):
        matrix_entries(tiny_settings(tmp_path), models=("lstm_multitask", "gru"))


def test_run_matrix_trains_each_entry_on_its_kind_symbol_and_horizon(tmp_path):
    write_window_home(tmp_path)
    settings = tiny_settings(tmp_path, d_model=8, attention_heads=2, transformer_layers=1)
    entries = [MatrixEntry("lstm_multitask", "ES", 24), MatrixEntry("lob_transformer", "ZN", 12)]
    _, jobs = planned(tmp_path, settings, entries)
    epochs_seen = []

    results = run_matrix(jobs, on_epoch=lambda entry, row: epochs_seen.append((entry, row)))

    configs = [json.loads((job.out_dir / "model_config.json").read_text()) for job in jobs]
    assert [(c["model_kind"], c["symbols"], c["horizon"]) for c in configs] == [
        ("lstm_multitask", ["ES"], 24),
        ("lob_transformer", ["ZN"], 12),
    ]
    for job in jobs:
        for name in ("model.pt", "metrics.json", "scaler.json", "baselines.json"):
            assert (job.out_dir / name).is_file(), name
        assert (job.out_dir / "training_history.json").is_file()
        assert job.log_path.read_text().strip()
    assert [outcome.entry for outcome in results] == entries
    assert [(entry, row["epoch"]) for entry, row in epochs_seen] == [
        (entries[0], 1), (entries[0], 2), (entries[1], 1), (entries[1], 2)
    ]  # fmt: skip
    assert epochs_seen[-1][1] == results[1].result.history[-1]


def test_run_matrix_in_two_processes_forwards_progress_and_keeps_order(tmp_path):
    write_window_home(tmp_path, horizons=(12,))
    entries = [MatrixEntry("lstm_multitask", "ES", 12), MatrixEntry("lstm_multitask", "ZN", 12)]
    _, jobs = planned(tmp_path, tiny_settings(tmp_path, epochs=1), entries)
    epochs_seen = []

    results = run_matrix(jobs, workers=2, on_epoch=lambda entry, row: epochs_seen.append(entry))

    assert [outcome.entry for outcome in results] == entries
    assert sorted(epochs_seen, key=entries.index) == entries
    assert all((job.out_dir / "model.pt").is_file() for job in jobs)


def test_plan_lanes_gives_each_card_one_lane_and_each_cpu_entry_its_own(tmp_path, monkeypatch):
    settings = tiny_settings(tmp_path, device="auto", matrix_horizons=(12, 24, 36))
    _, jobs = planned(tmp_path, settings, matrix_entries(settings))
    monkeypatch.setattr(matrix_pool, "resolve_device", lambda name: torch.device("cpu"))
    on_cpu = plan_lanes(jobs, workers=2)
    monkeypatch.setattr(matrix_pool, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)

    on_cards = plan_lanes(jobs, workers=4)

    assert on_cpu == [[job] for job in jobs]
    assert [[job.entry.horizon for job in lane] for lane in on_cards] == [[12, 36], [24]]
    assert [{job.training.device for job in lane} for lane in on_cards] == [{"cuda:0"}, {"cuda:1"}]


def test_retraining_the_primary_model_keeps_the_matrix_entries(tmp_path):
    write_window_home(tmp_path, horizons=(12,))
    settings = tiny_settings(tmp_path, epochs=1)
    entry, primary = (
        MatrixEntry("lstm_multitask", "ES", 12),
        MatrixEntry("lstm_multitask", None, 12),
    )
    inputs, jobs = planned(tmp_path, settings, [entry, primary])

    run_matrix(jobs)
    run_matrix(plan_jobs(settings, inputs, [primary], MODEL_FEATURES))

    assert (inputs.window_dir / "model.pt").is_file()
    assert (inputs.window_dir / "matrix" / entry.name / "model.pt").is_file()
    assert not any(path.name.startswith(".") for path in inputs.window_dir.parent.iterdir())


def observations(result: dg.ExecuteInProcessResult) -> list[dg.AssetObservation]:
    return [
        event.event_specific_data.asset_observation
        for event in result.get_asset_observation_events()
    ]


def chart_points(markdown: str) -> int:
    """Points of the train-loss line in a markdown SVG image (one per epoch drawn)."""
    encoded = markdown.split("base64,", 1)[1].split(")", 1)[0]
    svg = ET.fromstring(base64.b64decode(encoded))
    [train] = [line for line in svg.iter() if line.get("data-series") == "train_loss"]
    return len(train.get("points").split())


def materialize(settings: PipelineSettings, asset: str, run_config=None, **kwargs):
    defs = build_definitions(settings)
    return dg.materialize(
        list(defs.assets),
        selection=[asset],
        partition_key=DAYS[-1].isoformat(),
        resources=dict(defs.resources),
        instance=dg.DagsterInstance.ephemeral(),
        run_config=run_config,
        **kwargs,
    )


def test_roll30_model_observes_every_epoch_and_records_the_history(tmp_path):
    write_window_home(tmp_path, horizons=(12,))

    result = materialize(tiny_settings(tmp_path), "roll30_model")

    seen = observations(result)
    [materialization] = result.asset_materializations_for_node("roll30_model")
    assert [o.metadata["epoch"].value for o in seen] == [1, 2]
    assert {o.partition for o in seen} == {"2024-01-04"}
    assert {"train_loss", "val_loss", "learning_rate"} <= set(seen[0].metadata)
    assert materialization.metadata["epochs_run"].value == 2
    report = materialization.metadata["loss_curve"].value
    assert "](data:image/svg+xml;base64," in report
    assert sum(line.startswith("| ") for line in report.splitlines()) == 3  # header, 2 rows
    assert [chart_points(o.metadata["loss_curve"].value) for o in seen] == [1, 2]
    assert "val_accuracy_margin_over_logistic" in materialization.metadata


def test_roll30_matrix_run_config_selects_entries_and_tabulates_their_metrics(tmp_path):
    write_window_home(tmp_path)
    config = {"symbols": ["es"], "horizons": [12, 24]}

    result = materialize(
        tiny_settings(tmp_path, epochs=1),
        "roll30_matrix",
        run_config={"ops": {"roll30_matrix": {"config": config}}},
    )

    [materialization] = result.asset_materializations_for_node("roll30_matrix")
    table = materialization.metadata["entries"].value
    names = ["lstm_multitask_ES_h12", "lstm_multitask_ES_h24"]
    assert [record.data["entry"] for record in table.records] == names
    assert all(0 <= record.data["accuracy"] <= 1 for record in table.records)
    assert [o.metadata["entry"].value for o in observations(result)] == names
    assert "lstm_multitask_ES_h24/val_loss" in observations(result)[1].metadata


def test_training_assets_share_the_gpu_pool_which_the_instance_limits_to_one(tmp_path):
    defs = build_definitions(tiny_settings(tmp_path))
    instance = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())

    pools = {name: defs.get_assets_def(name).op.pool for name in ("roll30_model", "roll30_matrix")}

    assert pools == {"roll30_model": "gpu", "roll30_matrix": "gpu"}
    assert instance["concurrency"]["pools"]["default_limit"] == 1


def test_roll30_matrix_absent_horizon_fails_naming_it(tmp_path):
    write_window_home(tmp_path, horizons=(12,))

    result = materialize(
        tiny_settings(tmp_path),
        "roll30_matrix",
        run_config={"ops": {"roll30_matrix": {"config": {"horizons": [60]}}}},
        raise_on_error=False,
    )

    [failure] = [event for event in result.all_events if event.is_step_failure]
    message = failure.step_failure_data.error.message
    assert not result.success
    assert "roll30_matrix[2024-01-04]: label horizon 60 bars" in message
