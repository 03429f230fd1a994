"""The multi-task LSTM: shapes, capacity (it can overfit), scripting and its config file."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.nn import functional as F

from hft_pipeline.training.model import (
    LstmMultitask,
    ModelConfig,
    load_model_config,
    save_model_config,
)


def test_lstm_multitask_batch_shapes_and_nonnegative_volatility():
    torch.manual_seed(0)
    model = LstmMultitask(ModelConfig(n_features=5, hidden_size=8, num_layers=2, context=7))
    x = torch.randn(4, 7, 5)  # (batch, seq, n_features)

    logits, forward_return, volatility = model(x)

    assert logits.shape == (4, 3)
    assert forward_return.shape == (4,)
    assert volatility.shape == (4,)
    assert bool((volatility >= 0).all())


def test_lstm_multitask_tiny_batch_loss_falls_90_percent():
    torch.manual_seed(0)
    model = LstmMultitask(ModelConfig(n_features=4, hidden_size=32, num_layers=1, dropout=0.0))
    x = torch.randn(16, 10, 4)
    direction = torch.randint(0, 3, (16,))
    forward_return, volatility = torch.randn(16), torch.rand(16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss_now() -> torch.Tensor:
        logits, predicted_return, predicted_volatility = model(x)
        return (
            F.cross_entropy(logits, direction)
            + F.mse_loss(predicted_return, forward_return)
            + F.mse_loss(predicted_volatility, volatility)
        )

    first = loss_now().item()
    for _ in range(100):
        optimizer.zero_grad()
        loss = loss_now()
        loss.backward()
        optimizer.step()
    last = loss_now().item()

    assert last <= 0.1 * first


def test_lstm_multitask_scripted_equals_eager():
    torch.manual_seed(0)
    model = LstmMultitask(ModelConfig(n_features=3, hidden_size=8, num_layers=2)).eval()
    x = torch.randn(5, 6, 3)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(model)
    with torch.no_grad():
        pairs = list(zip(model(x), scripted(x), strict=True))

    assert all(torch.allclose(a, b, atol=1e-6) for a, b in pairs)


def test_model_config_json_round_trip_keeps_fields_and_extras(tmp_path):
    config = ModelConfig(n_features=3, hidden_size=8, num_layers=1, dropout=0.0, horizon=5)

    save_model_config(config, tmp_path / "model_config.json", feature_columns=["a", "b", "c"])
    loaded, document = load_model_config(tmp_path / "model_config.json")

    assert loaded == config
    assert document["feature_columns"] == ["a", "b", "c"]


@pytest.mark.parametrize(
    "overrides", [{"n_features": 0}, {"hidden_size": -1}, {"dropout": 1.0}, {"horizon": 0}]
)
def test_model_config_invalid_value_raises(overrides):
    values = {"n_features": 3, **overrides}

    with pytest.raises(ValueError, match="ModelConfig"):
        ModelConfig(**values)
