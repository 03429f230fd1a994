"""The inference artifact of every model kind: TorchScript equals the eager model, and the
artifact alone predicts what score_day's model predicts."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import torch

from hft_pipeline.export.torchscript import (
    ARTIFACT_FILES,
    ArtifactPredictor,
    export_artifact,
    load_torchscript,
    verify_artifact,
)
from hft_pipeline.training.dataset import Scaler, build_window_arrays, predict_sequences, to_tensors
from hft_pipeline.training.model import MODEL_KINDS, load_model
from hft_pipeline_tests.training.synthetic import make_window, train_tiny_window

# The LSTM reads three plain features; the transformer also two book levels (8 features).
BOOK_LEVELS = {"lstm_multitask": 0, "lob_transformer": 2}


@pytest.fixture(scope="module", params=sorted(MODEL_KINDS))
def kind(request):
    return request.param


@pytest.fixture(scope="module")
def window_dir(tmp_path_factory, kind):
    out_dir = tmp_path_factory.mktemp(f"fit_{kind}") / "20240102_20240104"
    return train_tiny_window(
        out_dir, bars=120, book_levels=BOOK_LEVELS[kind], model_kind=kind, epochs=2,
        num_layers=2, dropout=0.1,
    )  # fmt: skip


@pytest.fixture(scope="module")
def artifact_dir(window_dir, tmp_path_factory):
    artifact_dir = tmp_path_factory.mktemp("artifacts") / window_dir.name
    export_artifact(window_dir, artifact_dir)
    return artifact_dir


def test_export_artifact_writes_files_and_describes_them(window_dir, kind, tmp_path):
    target = tmp_path / "artifact"

    described = export_artifact(window_dir, target)

    features = json.loads((target / "features.json").read_text())
    assert sorted(p.name for p in target.iterdir()) == sorted(ARTIFACT_FILES)
    assert json.loads((target / "config.json").read_text())["model_kind"] == kind
    assert features[:3] == ["f0", "f1", "f2"]
    assert len(features) == 3 + 4 * BOOK_LEVELS[kind]
    assert (target / "scaler.json").read_bytes() == (window_dir / "scaler.json").read_bytes()
    assert described["context"] == 8
    assert described["window_end"] == "2024-01-04"
    assert set(described["sha256"]) == set(ARTIFACT_FILES)


def test_verify_artifact_torchscript_matches_eager_within_1e_5(artifact_dir, window_dir):
    difference = verify_artifact(artifact_dir, window_dir)

    assert difference < 1e-5


def test_artifact_predictor_equals_score_day_model_predictions(artifact_dir, window_dir, kind):
    day = make_window(
        days=1, bars=60, seed=4, first_day=dt.date(2024, 1, 8), book_levels=BOOK_LEVELS[kind]
    )
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
    n_features = len(predictor.feature_columns)

    with pytest.raises(ValueError, match=rf"expected \(seq, {n_features}\)"):
        predictor.predict(np.zeros((8, n_features + 1)))


def test_artifact_predictor_incomplete_folder_raises(tmp_path):
    (tmp_path / "model.ts").write_bytes(b"")

    with pytest.raises(FileNotFoundError, match="re-run the export"):
        ArtifactPredictor(tmp_path)


def test_export_multi_horizon_model_verifies_and_lists_horizons(kind, tmp_path):
    window_dir = train_tiny_window(
        tmp_path / "20240102_20240104", bars=80, book_levels=BOOK_LEVELS[kind], model_kind=kind,
        epochs=1, extra_horizons=(6, 9),
    )  # fmt: skip
    artifact_dir = tmp_path / "artifact"

    export_artifact(window_dir, artifact_dir)
    difference = verify_artifact(artifact_dir, window_dir)
    config = json.loads((artifact_dir / "config.json").read_text())
    n_features = len(json.loads((artifact_dir / "features.json").read_text()))
    scripted = load_torchscript(artifact_dir / "model.ts")
    logits, _, _ = scripted.forward_horizons(torch.zeros(2, 8, n_features))

    assert difference < 1e-5
    assert config["horizon"] == 3
    assert config["horizons"] == [3, 6, 9]
    assert logits.shape == (2, 3, 3)  # (batch, horizons, classes)
