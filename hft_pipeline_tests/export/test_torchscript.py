"""The inference artifact: TorchScript equals the eager model, and the artifact alone predicts
what score_day's model predicts."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from hft_pipeline.export.torchscript import (
    ARTIFACT_FILES,
    ArtifactPredictor,
    export_artifact,
    verify_artifact,
)
from hft_pipeline.training.dataset import Scaler, build_window_arrays, predict_sequences, to_tensors
from hft_pipeline.training.model import load_model
from hft_pipeline_tests.training.synthetic import make_window, train_tiny_window


@pytest.fixture(scope="module")
def window_dir(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("fit") / "20240102_20240104"
    return train_tiny_window(out_dir, bars=120, epochs=2, num_layers=2, dropout=0.1)


@pytest.fixture(scope="module")
def artifact_dir(window_dir, tmp_path_factory):
    artifact_dir = tmp_path_factory.mktemp("artifacts") / window_dir.name
    export_artifact(window_dir, artifact_dir)
    return artifact_dir


def test_export_artifact_writes_files_and_describes_them(window_dir, tmp_path):
    target = tmp_path / "artifact"

    described = export_artifact(window_dir, target)

    assert sorted(p.name for p in target.iterdir()) == sorted(ARTIFACT_FILES)
    assert json.loads((target / "features.json").read_text()) == ["f0", "f1", "f2"]
    assert (target / "scaler.json").read_bytes() == (window_dir / "scaler.json").read_bytes()
    assert described["context"] == 8
    assert described["window_end"] == "2024-01-04"
    assert set(described["sha256"]) == set(ARTIFACT_FILES)


def test_verify_artifact_torchscript_matches_eager_within_1e_5(artifact_dir, window_dir):
    difference = verify_artifact(artifact_dir, window_dir)

    assert difference < 1e-5


def test_artifact_predictor_equals_score_day_model_predictions(artifact_dir, window_dir):
    day = make_window(days=1, bars=60, seed=4, first_day=dt.date(2024, 1, 8))
    arrays = build_window_arrays(day.features, day.labels, day.feature_columns, day.horizon, 8)
    scaler = Scaler.load(window_dir / "scaler.json")
    tensors = to_tensors(arrays, scaler.transform(arrays.features), scaler, "cpu")
    proba, scaled_return, scaled_volatility = predict_sequences(
        load_model(window_dir), tensors, arrays.ends
    )
    predictor = ArtifactPredictor(artifact_dir)

    raw_windows = [arrays.features[end - 7 : end + 1] for end in arrays.ends[[0, 10, -1]]]
    single = [predictor.predict(window) for window in raw_windows]
    batch = predictor.predict(np.stack(raw_windows))

    for index, (row, prediction) in enumerate(zip([0, 10, -1], single, strict=True)):
        assert np.allclose(prediction.probabilities, proba[row], atol=1e-6)
        assert prediction.forward_return == pytest.approx(
            scaled_return[row] * scaler.return_scale, abs=1e-9
        )
        assert prediction.volatility == pytest.approx(
            scaled_volatility[row] * scaler.volatility_scale, abs=1e-9
        )
        assert np.allclose(batch.probabilities[index], prediction.probabilities, atol=1e-6)


def test_artifact_predictor_wrong_feature_count_raises(artifact_dir):
    predictor = ArtifactPredictor(artifact_dir)

    with pytest.raises(ValueError, match=r"expected \(seq, 3\)"):
        predictor.predict(np.zeros((8, 4)))


def test_artifact_predictor_incomplete_folder_raises(tmp_path):
    (tmp_path / "model.ts").write_bytes(b"")

    with pytest.raises(FileNotFoundError, match="re-run the export"):
        ArtifactPredictor(tmp_path)
