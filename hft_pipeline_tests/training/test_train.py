"""train_window end to end on tiny synthetic windows: files, determinism, learning, no leaks."""

from __future__ import annotations

import json
import math

import pytest
import torch

from hft_pipeline.training.dataset import (
    build_window_arrays,
    chronological_split,
    fit_scaler,
    horizon_class_weights,
    to_tensors,
)
from hft_pipeline.training.lob_transformer import LobTransformer
from hft_pipeline.training.loop import LoopConfig, evaluate_loss, learning_rate_at
from hft_pipeline.training.model import MODEL_KINDS, load_model
from hft_pipeline.training.train import train_window
from hft_pipeline_tests.training.synthetic import make_window, tiny_settings

WINDOW_FILES = {
    "model.pt",
    "model_config.json",
    "metrics.json",
    "scaler.json",
    "training_history.json",
    "baselines.json",
}


def train(tmp_path, name="window", settings=None, **window):
    data = make_window(**window)
    settings = settings or tiny_settings()
    return train_window(
        data.features, data.labels, data.feature_columns, settings, data.horizon, tmp_path / name
    )


def test_train_window_writes_the_window_folder(tmp_path):
    result = train(tmp_path, settings=tiny_settings(epochs=2))

    folder = tmp_path / "window"
    state = torch.load(folder / "model.pt", weights_only=True)
    config = json.loads((folder / "model_config.json").read_text())
    history = json.loads((folder / "training_history.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())

    assert {p.name for p in folder.iterdir()} == WINDOW_FILES
    assert result.out_dir == folder
    assert set(state) == set(load_model(folder).state_dict())
    assert config["feature_columns"] == ["f0", "f1", "f2"]
    assert (config["window_start"], config["window_end"]) == ("2024-01-02", "2024-01-05")
    assert config["training"]["hidden_size"] == 16
    assert config["n_train_sequences"] == result.n_train > 0
    assert config["n_val_sequences"] == result.n_val > 0
    assert [row["epoch"] for row in history] == [1, 2]
    assert {"train_loss", "val_loss", "lr", "seconds", "sequences_per_second"} <= set(history[0])
    assert {"accuracy", "macro_f1", "log_loss", "ic", "loss"} <= set(metrics)
    assert result.device == "cpu"


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
def test_train_window_same_inputs_identical_weights(tmp_path, kind):
    settings = tiny_settings(model_kind=kind, epochs=2, dropout=0.2, num_layers=2)
    first = train(tmp_path, "a", settings=settings, book_levels=2)
    second = train(tmp_path, "b", settings=settings, book_levels=2)

    weights_a = torch.load(first.out_dir / "model.pt", weights_only=True)
    weights_b = torch.load(second.out_dir / "model.pt", weights_only=True)

    assert all(torch.equal(weights_a[name], weights_b[name]) for name in weights_a)
    assert first.metrics["loss"] == second.metrics["loss"]


def test_train_window_lob_transformer_records_kind_and_book_losses(tmp_path):
    result = train(
        tmp_path, settings=tiny_settings(model_kind="lob_transformer", epochs=2), book_levels=3
    )

    folder = tmp_path / "window"
    config = json.loads((folder / "model_config.json").read_text())
    model = load_model(folder)

    assert config["model_kind"] == "lob_transformer"
    assert config["training"]["model_kind"] == "lob_transformer"
    assert len(config["model"]["offset_mean"]) == 6  # 3 levels x 2 sides
    assert isinstance(model, LobTransformer)
    assert model.n_tokens == 6
    assert {"val_book_mse", "val_structural_penalty"} <= set(result.history[0])
    assert result.metrics["structural_penalty"] >= 0


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
def test_train_window_planted_relation_beats_naive_baseline(tmp_path, kind):
    result = train(tmp_path, settings=tiny_settings(model_kind=kind, epochs=6), bars=300, lag=2)

    accuracy = result.metrics["accuracy"]
    naive = result.metrics["baseline_naive_accuracy"]
    logistic = result.metrics["baseline_logistic_accuracy"]
    written = json.loads((result.out_dir / "metrics.json").read_text())

    assert accuracy > naive + 0.25
    assert result.metrics["ic"] > 0.5
    # The margin over the logistic baseline is reported, whatever its sign.
    assert written["accuracy_margin_over_logistic"] == pytest.approx(accuracy - logistic)
    assert written["accuracy_margin_over_naive"] == pytest.approx(accuracy - naive)


def test_train_window_pure_noise_accuracy_within_binomial_interval(tmp_path):
    result = train(tmp_path, settings=tiny_settings(epochs=4), bars=300, planted=False)

    majority = max(result.metrics[f"share_{name}"] for name in ("down", "flat", "up"))
    sigma = math.sqrt(majority * (1 - majority) / result.n_val)

    assert majority - 4 * sigma <= result.metrics["accuracy"] <= majority + 3 * sigma


def test_train_window_validation_loss_stalling_stops_early_with_best_epoch_weights(tmp_path):
    # Pure noise: the validation loss stops falling after a few epochs.
    data = make_window(bars=300, planted=False)
    settings = tiny_settings(epochs=12, learning_rate=3e-2, hidden_size=32)
    loop = LoopConfig(patience=2)

    result = train_window(
        data.features, data.labels, data.feature_columns, settings, data.horizon,
        tmp_path / "window", loop=loop,
    )  # fmt: skip
    arrays = build_window_arrays(
        data.features, data.labels, data.feature_columns, data.horizon, settings.context
    )
    split = chronological_split(arrays, settings.validation_fraction, settings.embargo_bars)
    scaler = fit_scaler(arrays, split)
    tensors = to_tensors(arrays, scaler.transform(arrays.features), scaler, "cpu")
    class_weight = torch.as_tensor(horizon_class_weights(arrays, split), dtype=torch.float32)
    saved = evaluate_loss(
        load_model(result.out_dir), tensors, split.val_ends, class_weight, settings, loop
    )

    val_losses = [row["val_loss"] for row in result.history]
    best_epoch = 1 + val_losses.index(min(val_losses))
    assert len(result.history) == best_epoch + loop.patience < settings.epochs
    assert result.metrics["best_epoch"] == best_epoch
    assert saved["loss"] == pytest.approx(min(val_losses), rel=1e-6)


def test_train_window_max_train_sequences_caps_each_epoch(tmp_path):
    result = train(tmp_path, settings=tiny_settings(epochs=2, max_train_sequences=100))

    assert [row["train_sequences"] for row in result.history] == [100, 100]


def test_train_window_too_short_sessions_raise(tmp_path):
    with pytest.raises(ValueError, match="no sequence of 50 bars"):
        train(tmp_path, settings=tiny_settings(context=50), days=2, bars=30)


def test_train_window_unknown_model_kind_raises(tmp_path):
    with pytest.raises(ValueError, match="model_kind='gru' is unknown"):
        train(tmp_path, settings=tiny_settings(model_kind="gru"), days=1, bars=30)


def test_train_window_transformer_heads_not_dividing_width_raise(tmp_path):
    settings = tiny_settings(model_kind="lob_transformer", d_model=10, attention_heads=4)

    with pytest.raises(ValueError, match="d_model=10 must be a multiple of attention_heads=4"):
        train(tmp_path, settings=settings, days=1, bars=30)


def test_learning_rate_at_warmup_peak_then_cosine_floor():
    rates = [learning_rate_at(step, 100, 10, 1.0, 0.1) for step in range(101)]

    assert rates[0] == pytest.approx(0.1)
    assert rates[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:], strict=False))
    assert rates[100] == pytest.approx(0.1)
