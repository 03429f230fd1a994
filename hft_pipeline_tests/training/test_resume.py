"""Per-epoch checkpoints: a run killed after some epoch and started again ends exactly like an
uninterrupted one, for every model kind; a checkpoint of other settings or data is not
resumed."""

from __future__ import annotations

import pytest
import torch

from hft_pipeline.training.checkpoint import CHECKPOINT_FORMAT, checkpoint_path
from hft_pipeline.training.model import MODEL_KINDS
from hft_pipeline.training.train import TrainResult, train_window
from hft_pipeline_tests.training.synthetic import make_window, tiny_settings

# Dropout, two layers and a capped epoch exercise every random state the loop draws from.
SETTINGS = dict(epochs=5, dropout=0.2, num_layers=2, max_train_sequences=300)
# Two book levels give the lob_transformer its tokens and auxiliary forecast; the LSTM reads
# them as plain features.
BOOK_LEVELS = 2


class Killed(Exception):
    """Stands in for the process dying after an epoch's checkpoint is written."""


def kill_after(epoch: int):
    def hook(finished: dict) -> None:
        if finished["epoch"] == epoch:
            raise Killed(f"killed after epoch {epoch}")

    return hook


def record_epochs(epochs: list[int]):
    return lambda finished: epochs.append(finished["epoch"])


def train(out_dir, settings=None, on_epoch_end=None, seed=0) -> TrainResult:
    data = make_window(seed=seed, book_levels=BOOK_LEVELS)
    return train_window(
        data.features,
        data.labels,
        data.feature_columns,
        settings or tiny_settings(**SETTINGS),
        data.horizon,
        out_dir,
        on_epoch_end=on_epoch_end,
    )


def assert_same_run(first: TrainResult, second: TrainResult) -> None:
    weights_a = torch.load(first.out_dir / "model.pt", weights_only=True)
    weights_b = torch.load(second.out_dir / "model.pt", weights_only=True)
    losses = ("epoch", "train_loss", "val_loss", "lr")
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[name], weights_b[name]) for name in weights_a)
    assert [[row[k] for k in losses] for row in first.history] == [
        [row[k] for k in losses] for row in second.history
    ]
    assert first.metrics["loss"] == second.metrics["loss"]


# The kill points are loop logic, the same for every kind: each further kind is killed mid-run.
KILLS = [(1, "lstm_multitask"), (3, "lstm_multitask"), (5, "lstm_multitask")] + [
    (3, kind) for kind in sorted(MODEL_KINDS) if kind != "lstm_multitask"
]


@pytest.mark.parametrize(("killed_after", "kind"), KILLS)
def test_train_window_killed_then_restarted_identical_to_uninterrupted(
    tmp_path, killed_after, kind
):
    settings = tiny_settings(**SETTINGS, model_kind=kind)
    uninterrupted = train(tmp_path / "uninterrupted", settings)
    with pytest.raises(Killed):
        train(tmp_path / "resumed", settings, on_epoch_end=kill_after(killed_after))

    left_behind = checkpoint_path(tmp_path / "resumed").exists()
    folder_after_kill = (tmp_path / "resumed").exists()
    resumed_epochs = []
    resumed = train(
        tmp_path / "resumed", settings, on_epoch_end=lambda row: resumed_epochs.append(row["epoch"])
    )

    assert left_behind
    assert not folder_after_kill
    assert resumed_epochs == list(range(killed_after + 1, 6))
    assert_same_run(uninterrupted, resumed)
    assert not checkpoint_path(tmp_path / "resumed").exists()


def test_train_window_killed_checkpoint_is_plain_dict_beside_folder(tmp_path):
    with pytest.raises(Killed):
        train(tmp_path / "window", on_epoch_end=kill_after(2))

    path = checkpoint_path(tmp_path / "window")
    checkpoint = torch.load(path, weights_only=True)

    assert path == tmp_path / ".window.checkpoint.pt"
    assert not (tmp_path / "window").exists()
    assert checkpoint["format"] == CHECKPOINT_FORMAT
    assert checkpoint["epoch"] == 2
    assert [row["epoch"] for row in checkpoint["history"]] == [1, 2]
    assert checkpoint["step"] > 0
    assert checkpoint["best_state"].keys() == checkpoint["model"].keys()
    assert {"torch", "cuda", "numpy", "sampler"} == set(checkpoint["rng"])
    assert {"state", "param_groups"} == set(checkpoint["optimizer"])


@pytest.mark.parametrize(
    "other_run",
    [
        dict(settings=tiny_settings(**{**SETTINGS, "learning_rate": 5e-3})),
        dict(seed=1),
    ],
    ids=["other_settings", "other_data"],
)
def test_train_window_mismatching_checkpoint_ignored(tmp_path, other_run):
    with pytest.raises(Killed):
        train(tmp_path / "window", on_epoch_end=kill_after(2))

    epochs_run = []
    restarted = train(tmp_path / "window", on_epoch_end=record_epochs(epochs_run), **other_run)
    fresh = train(tmp_path / "fresh", **other_run)

    assert epochs_run == [1, 2, 3, 4, 5]
    assert_same_run(fresh, restarted)
    assert not checkpoint_path(tmp_path / "window").exists()
