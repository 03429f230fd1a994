"""The model kinds and their files: the multi-task LSTM (seeds 000/002), the factory that builds
any kind from its config, and ``model_config.json``.

Every kind reads scaled features (see ``dataset.Scaler``) and predicts the targets of
``heads.MultitaskHeads`` in training units: ``forward`` for the primary horizon,
``forward_horizons`` for every horizon of its config (``horizons``: the primary one, then
``extra_horizons``). Every kind also has ``objective_terms(x, targets, class_weight)``: the
loss's sums over a batch (``heads.loss_terms`` plus any auxiliary terms of its own), which is
all the training loop needs to know about it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hft_pipeline.training.heads import (
    MultitaskHeads,
    Outputs,
    check_horizons,
    loss_terms,
    primary_outputs,
)
from hft_pipeline.training.lob_transformer import MODEL_KIND as LOB_TRANSFORMER
from hft_pipeline.training.lob_transformer import LobTransformer, LobTransformerConfig

MODEL_KIND = "lstm_multitask"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    # Width of each bar's input vector: the length of the window's feature list.
    n_features: int
    # LSTM width; 64 keeps a 2-layer model under ~60k parameters, enough for a few dozen inputs.
    hidden_size: int = 64
    # Stacked LSTM layers; dropout between layers only applies when this is > 1.
    num_layers: int = 2
    # Dropout between LSTM layers and before the heads.
    dropout: float = 0.1
    # Bars per input sequence; the model itself accepts any length, this records what it saw.
    context: int = 120
    # Label horizon in bars the heads were trained on: the primary one, what forward returns.
    horizon: int = 12
    # Further horizons the heads forecast (forward_horizons), in this order after the primary.
    extra_horizons: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_positive("n_features", self.n_features)
        check_positive("hidden_size", self.hidden_size)
        check_positive("num_layers", self.num_layers)
        check_positive("context", self.context)
        check_positive("horizon", self.horizon)
        check_horizons("ModelConfig", self.horizons)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), found {self.dropout}")

    @property
    def horizons(self) -> tuple[int, ...]:
        """Every forecast horizon in bars, the primary one first."""
        return (self.horizon, *self.extra_horizons)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["extra_horizons"] = list(self.extra_horizons)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        names = {field.name for field in dataclasses.fields(cls)}
        kept = {key: value for key, value in values.items() if key in names}
        kept["extra_horizons"] = tuple(kept.get("extra_horizons", ()))
        return cls(**kept)


def check_positive(name: str, value: int) -> None:
    if int(value) != value or value < 1:
        raise ValueError(f"ModelConfig.{name} must be a positive integer, found {value!r}")


class LstmMultitask(nn.Module):
    """LSTM over the bars of a sequence; its last hidden state feeds the multitask heads."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.lstm = nn.LSTM(
            input_size=config.n_features,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            # PyTorch applies this between layers only and warns when there is just one.
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.heads = MultitaskHeads(config.hidden_size, config.dropout, len(config.horizons))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predicts the three targets of the primary horizon for the last bar of each sequence.

        Parameters
        ----------
        x : torch.Tensor
            Scaled features, shape (batch, seq, n_features).

        Returns
        -------
        tuple of torch.Tensor
            Direction logits (batch, 3), scaled forward return (batch,) and scaled forward
            volatility (batch,), the latter non-negative through a softplus.
        """
        return primary_outputs(self.forward_horizons(x))

    @torch.jit.export
    def forward_horizons(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predicts the three targets of every horizon (``config.horizons`` order).

        Parameters
        ----------
        x : torch.Tensor
            Scaled features, shape (batch, seq, n_features).

        Returns
        -------
        tuple of torch.Tensor
            Direction logits (batch, H, 3), scaled forward return (batch, H) and scaled forward
            volatility (batch, H).
        """
        # Sequence-first LSTM: measured ~15% faster on CPU than batch_first, which transposes
        # its input and output internally.
        _, (h_n, _) = self.lstm(x.transpose(0, 1))  # h_n: (num_layers, batch, hidden)
        return self.heads(h_n[-1])

    def objective_terms(
        self, x: torch.Tensor, targets: Outputs, class_weight: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``heads.loss_terms`` of the batch over every horizon: the LSTM has no auxiliary
        task."""
        return loss_terms(self.forward_horizons(x), targets, class_weight)


AnyModelConfig = ModelConfig | LobTransformerConfig
AnyModel = LstmMultitask | LobTransformer

# kind -> (config class, model class); the names are TrainingSettings.model_kind's values.
MODEL_KINDS: dict[str, tuple[type, type]] = {
    MODEL_KIND: (ModelConfig, LstmMultitask),
    LOB_TRANSFORMER: (LobTransformerConfig, LobTransformer),
}


def check_kind(kind: str) -> None:
    if kind not in MODEL_KINDS:
        raise ValueError(f"model_kind={kind!r} is unknown; known kinds: {sorted(MODEL_KINDS)}")


def build_model(kind: str, config: AnyModelConfig) -> AnyModel:
    """A freshly initialised model of ``kind`` (draws from torch's global generator)."""
    check_kind(kind)
    config_class, model_class = MODEL_KINDS[kind]
    if not isinstance(config, config_class):
        raise TypeError(
            f"model_kind={kind!r} takes a {config_class.__name__}, found {type(config).__name__}"
        )
    return model_class(config)


def model_kind_of(config: AnyModelConfig) -> str:
    """The kind whose config class ``config`` is."""
    for kind, (config_class, _) in MODEL_KINDS.items():
        if isinstance(config, config_class):
            return kind
    raise TypeError(f"{type(config).__name__} is the config of no kind in {sorted(MODEL_KINDS)}")


def save_model_config(config: AnyModelConfig, path: Path, **extra: Any) -> None:
    """Writes ``{"model_kind": ..., "model": <config fields>, **extra}`` as JSON
    (``model_config.json``)."""
    payload = {"model_kind": model_kind_of(config), "model": config.to_dict(), **extra}
    path.write_text(json.dumps(payload, indent=2, sort_keys=False))


def load_model_config(path: Path) -> tuple[AnyModelConfig, dict[str, Any]]:
    """Reads ``model_config.json``: the model's config (of its kind) and the whole document.
    A file without ``model_kind`` predates the transformer and holds an LSTM."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; is {path.parent} a trained window folder?")
    payload = json.loads(path.read_text())
    kind = payload.get("model_kind", MODEL_KIND)
    if kind not in MODEL_KINDS:
        raise ValueError(f"{path}: model_kind is {kind!r}; known kinds: {sorted(MODEL_KINDS)}")
    if "model" not in payload:
        raise ValueError(f"{path}: no 'model' section; found keys {sorted(payload)}")
    config_class, _ = MODEL_KINDS[kind]
    return config_class.from_dict(payload["model"]), payload


def load_model(window_dir: Path, device: str | torch.device = "cpu") -> AnyModel:
    """Builds the model of the kind ``model_config.json`` names and loads ``model.pt``
    (weights only), in eval mode on ``device``."""
    config, payload = load_model_config(window_dir / "model_config.json")
    model = build_model(payload.get("model_kind", MODEL_KIND), config)
    state = torch.load(window_dir / "model.pt", map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval()
