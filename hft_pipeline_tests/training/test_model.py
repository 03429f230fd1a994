"""The multi-task LSTM: shapes, capacity (it can overfit), scripting; the shared loss; the
factory of model kinds and the config file that records the kind."""

from __future__ import annotations

import warnings

import pytest
import torch

from hft_pipeline.training.heads import LossWeights, combine_loss
from hft_pipeline.training.lob_transformer import LobTransformer, LobTransformerConfig
from hft_pipeline.training.model import (
    LstmMultitask,
    ModelConfig,
    build_model,
    load_model,
    load_model_config,
    save_model_config,
)
from hft_pipeline_tests.training.synthetic import tiny_batch_loss_ratio


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
    assert tiny_batch_loss_ratio(model, torch.randn(16, 10, 4), steps=100) <= 0.1


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


@pytest.mark.parametrize(
    ("kind", "config", "model_class"),
    [
        ("lstm_multitask", ModelConfig(n_features=3, hidden_size=8), LstmMultitask),
        (
            "lob_transformer",
            LobTransformerConfig(("a", "bid_offset_ticks_00", "bid_log_size_00"), d_model=8),
            LobTransformer,
        ),
    ],
)
def test_build_model_saved_and_loaded_by_kind(tmp_path, kind, config, model_class):
    torch.manual_seed(0)
    model = build_model(kind, config)
    save_model_config(config, tmp_path / "model_config.json")
    torch.save(model.state_dict(), tmp_path / "model.pt")

    loaded_config, document = load_model_config(tmp_path / "model_config.json")
    loaded = load_model(tmp_path)

    assert document["model_kind"] == kind
    assert loaded_config == config
    assert type(loaded) is model_class
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_build_model_config_of_other_kind_raises():
    with pytest.raises(TypeError, match="'lob_transformer' takes a LobTransformerConfig"):
        build_model("lob_transformer", ModelConfig(n_features=3))


def test_load_model_config_unknown_kind_raises(tmp_path):
    path = tmp_path / "model_config.json"
    path.write_text('{"model_kind": "gru", "model": {}}')

    with pytest.raises(ValueError, match="model_kind is 'gru'"):
        load_model_config(path)


def test_combine_loss_adds_weighted_book_terms_only_when_present():
    sums = dict(cross_entropy_sum=2.0, weight_sum=4.0, return_se_sum=8.0, volatility_se_sum=4.0,
                count=4.0)  # fmt: skip
    book = dict(book_se_sum=6.0, book_count=3.0, structural_sum=1.0, book_forecasts=2.0)
    weights = LossWeights(
        return_weight=0.5, volatility_weight=0.25, book_forecast_weight=0.1, structural_weight=2.0
    )

    plain = combine_loss({k: torch.tensor(v) for k, v in sums.items()}, weights)
    with_book = combine_loss({k: torch.tensor(v) for k, v in {**sums, **book}.items()}, weights)

    # CE 2/4, return MSE 8/4, volatility MSE 4/4; book MSE 6/3, structural penalty 1/2.
    assert float(plain["loss"]) == pytest.approx(0.5 + 0.5 * 2 + 0.25 * 1)
    assert "structural_penalty" not in plain
    assert float(with_book["loss"]) == pytest.approx(1.75 + 0.1 * 2 + 2.0 * 0.5)
    assert float(with_book["structural_penalty"]) == pytest.approx(0.5)
