"""The device plumbing this CPU machine can check: every tensor of a training step follows the
data's device (the ``meta`` device stands in for a card), and a CPU run never calls CUDA even
where CUDA is present."""

from __future__ import annotations

import pytest
import torch

from hft_pipeline.training.dataset import (
    build_window_arrays,
    chronological_split,
    fit_scaler,
    horizon_class_weights,
    sequence_batch,
    to_tensors,
)
from hft_pipeline.training.heads import combine_loss
from hft_pipeline.training.loop import loss_weights
from hft_pipeline.training.model import MODEL_KINDS, build_model
from hft_pipeline.training.train import model_config, train_window
from hft_pipeline_tests.training.synthetic import make_window, tiny_settings

# The torch.cuda calls a training run could make (state, names, counts, initialization).
CUDA_CALLS = (
    "_lazy_init",
    "init",
    "get_rng_state",
    "get_rng_state_all",
    "set_rng_state",
    "set_rng_state_all",
    "get_device_name",
    "synchronize",
    "device_count",
    "current_device",
)


class CudaTouched(AssertionError):
    pass


def refuse(name: str):
    def call(*args, **kwargs):
        raise CudaTouched(f"torch.cuda.{name} called on a CPU run")

    return call


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
def test_training_step_on_meta_device_keeps_every_tensor_there(kind):
    data = make_window(days=2, bars=60, book_levels=2)
    arrays = build_window_arrays(data.features, data.labels, data.feature_columns, 3, 8)
    split = chronological_split(arrays, validation_fraction=0.25, embargo_bars=2)
    scaler = fit_scaler(arrays, split)
    settings = tiny_settings(model_kind=kind)
    config = model_config(settings, data.feature_columns, arrays.horizons, scaler)
    model = build_model(kind, config).to("meta")
    tensors = to_tensors(arrays, scaler.transform(arrays.features), scaler, "meta")
    class_weight = torch.as_tensor(
        horizon_class_weights(arrays, split), dtype=torch.float32, device="meta"
    )

    x, *targets = sequence_batch(tensors, torch.from_numpy(split.train_ends[:16]).to("meta"))
    terms = model.objective_terms(x, tuple(targets), class_weight)
    losses = combine_loss(terms, loss_weights(settings))
    losses["loss"].backward()

    assert x.shape == (16, 8, len(data.feature_columns))
    assert {t.device.type for t in (x, *targets, *terms.values(), *losses.values())} == {"meta"}
    assert {p.grad.device.type for p in model.parameters() if p.grad is not None} == {"meta"}


def test_train_window_cpu_run_where_cuda_is_present_never_calls_cuda(tmp_path, monkeypatch):
    data = make_window(days=2, bars=60)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for name in CUDA_CALLS:
        monkeypatch.setattr(torch.cuda, name, refuse(name))
    settings = tiny_settings(epochs=2, device="cpu")

    def kill_after_first_epoch(row: dict) -> None:
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    def run(**hooks):
        return train_window(
            data.features, data.labels, data.feature_columns, settings, data.horizon,
            tmp_path / "window", **hooks,
        )  # fmt: skip

    with pytest.raises(KeyboardInterrupt):
        run(on_epoch_end=kill_after_first_epoch)  # writes the epoch's checkpoint
    result = run()  # resumes from it

    assert result.device == "cpu"
    assert [row["epoch"] for row in result.history] == [1, 2]
