"""Multi-horizon heads (TrainingSettings.extra_horizons): shapes of every kind, the primary
slice, learning, the purge over the longest horizon and the per-horizon metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hft_pipeline.training.dataset import build_window_arrays, chronological_split, ts_after
from hft_pipeline.training.heads import LossWeights, combine_loss
from hft_pipeline.training.lob_transformer import LobTransformerConfig
from hft_pipeline.training.model import ModelConfig, build_model
from hft_pipeline.training.train import train_window
from hft_pipeline_tests.training.synthetic import book_feature_names, make_window, tiny_settings

COLUMNS = ("f0", *book_feature_names(2), "f1")  # two book levels and two plain features
HORIZONS = (12, 24, 60)

CONFIGS = {
    "lstm_multitask": ModelConfig(
        n_features=len(COLUMNS), hidden_size=16, num_layers=1, dropout=0.0, context=10,
        horizon=HORIZONS[0], extra_horizons=HORIZONS[1:],
    ),
    "lob_transformer": LobTransformerConfig(
        feature_columns=COLUMNS, d_model=16, n_heads=2, n_layers=1, dropout=0.0, context=10,
        horizon=HORIZONS[0], extra_horizons=HORIZONS[1:],
    ),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_forward_horizons_three_horizons_shapes(kind):
    torch.manual_seed(0)
    model = build_model(kind, CONFIGS[kind]).eval()
    x = torch.randn(4, 10, len(COLUMNS))  # (batch, seq, n_features)

    with torch.no_grad():
        logits, forward_return, volatility = model.forward_horizons(x)

    assert logits.shape == (4, 3, 3)  # (batch, horizons, classes)
    assert forward_return.shape == (4, 3)
    assert volatility.shape == (4, 3)
    assert bool((volatility >= 0).all())


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_forward_equals_primary_slice_of_forward_horizons(kind):
    torch.manual_seed(0)
    model = build_model(kind, CONFIGS[kind]).eval()
    x = torch.randn(4, 10, len(COLUMNS))

    with torch.no_grad():
        primary = model(x)
        every = model.forward_horizons(x)

    assert primary[0].shape == (4, 3)
    assert all(torch.equal(a, b[:, 0]) for a, b in zip(primary, every, strict=True))


@pytest.mark.parametrize("extra_horizons", [(12,), (24, 24)])
def test_model_config_repeated_horizon_raises(extra_horizons):
    with pytest.raises(ValueError, match="repeat a horizon"):
        ModelConfig(n_features=3, horizon=12, extra_horizons=extra_horizons)


def test_model_config_round_trip_keeps_extra_horizons():
    config = CONFIGS["lstm_multitask"]

    restored = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))

    assert restored == config
    assert restored.horizons == HORIZONS


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_two_horizon_model_tiny_batch_loss_falls_90_percent(kind):
    torch.manual_seed(0)
    config = CONFIGS[kind]
    model = build_model(kind, type(config).from_dict({**config.to_dict(), "extra_horizons": [24]}))
    x = torch.randn(16, 10, len(COLUMNS))
    # Random targets of both horizons: only memorization lowers the summed loss.
    targets = (torch.randint(0, 3, (16, 2)), torch.randn(16, 2), torch.rand(16, 2))
    class_weight = torch.ones(2, 3)
    weights = LossWeights(1.0, 1.0, book_forecast_weight=0.0, structural_weight=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss_now() -> torch.Tensor:
        return combine_loss(model.objective_terms(x, targets, class_weight), weights)["loss"]

    first = loss_now().item()
    for _ in range(150):
        optimizer.zero_grad()
        loss_now().backward()
        optimizer.step()

    assert loss_now().item() <= 0.1 * first


def test_chronological_split_purge_spans_the_longest_horizon():
    # one day: the validation start falls inside both symbols' sessions
    data = make_window(days=1, bars=120, horizon=4, extra_horizons=(9,))
    arrays = build_window_arrays(
        data.features, data.labels, data.feature_columns, 4, 6, extra_horizons=(9,)
    )

    split = chronological_split(arrays, validation_fraction=0.3, embargo_bars=0)

    assert arrays.horizons == (4, 9) and arrays.longest_horizon == 9
    # Every training row's 9-bar label ends before validation; with a 4-bar purge alone,
    # rows 5..9 bars before the validation start would have trained.
    assert (ts_after(arrays, split.train_ends, 9) < split.validation_start_ts).all()
    assert split.n_purged == 2 * 9  # two symbols
    assert len(split.train_ends) + len(split.val_ends) + split.n_purged == len(arrays.ends)


def test_build_window_arrays_sequence_needs_every_horizon_labelled():
    data = make_window(days=1, bars=60, symbols=("ES",), horizon=4, extra_horizons=(9,))

    arrays = build_window_arrays(
        data.features, data.labels, data.feature_columns, 4, 6, extra_horizons=(9,)
    )

    assert arrays.directions.shape == (len(arrays.ts), 2)
    assert np.isfinite(arrays.forward_returns[arrays.ends]).all()
    assert arrays.ends.max() == 60 - 9 - 1  # the last bars lack the 9-bar labels


def test_train_window_extra_horizons_writes_per_horizon_metrics(tmp_path):
    data = make_window(days=3, bars=80, horizon=3, extra_horizons=(6, 9))
    # The matrix passes its entry's horizon as the primary: it is dropped from the extras.
    settings = tiny_settings(epochs=1, extra_horizons=(3, 6, 9))

    result = train_window(
        data.features, data.labels, data.feature_columns, settings, 3, tmp_path / "window"
    )

    folder = tmp_path / "window"
    metrics = json.loads((folder / "metrics.json").read_text())
    config = json.loads((folder / "model_config.json").read_text())
    scaler = json.loads((folder / "scaler.json").read_text())
    assert sorted(metrics["horizons"]) == ["h6", "h9"]
    for scores in metrics["horizons"].values():
        assert scores["n"] == result.n_val
        assert 0.0 <= scores["accuracy"] <= 1.0
        assert scores["log_loss"] > 0.0
        assert {"ic", "macro_f1", "volatility_ic"} <= set(scores)
    assert config["horizons"] == [3, 6, 9]
    assert config["model"]["extra_horizons"] == [6, 9]
    assert len(config["extra_class_weights"]) == 2
    assert len(scaler["extra_return_scales"]) == len(scaler["extra_volatility_scales"]) == 2


def test_train_window_without_extra_horizons_has_no_horizons_metrics(tmp_path):
    data = make_window(days=3, bars=80, horizon=3)

    result = train_window(
        data.features, data.labels, data.feature_columns, tiny_settings(epochs=1), 3, tmp_path
    )

    assert "horizons" not in result.metrics
