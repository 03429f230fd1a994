"""What every model kind predicts and how it is scored: the multitask heads and the loss.

Each kind (``model.MODEL_KINDS``) turns a sequence into one vector per sequence and hands it to
``MultitaskHeads``, so training, evaluation, export and the baselines see the same three
outputs whatever the kind: direction logits over ``schema.DIRECTION_CLASSES``, the forward
return divided by ``Scaler.return_scale`` and the forward volatility divided by
``Scaler.volatility_scale``. Callers multiply the regression heads back to log-return units.

The heads forecast every horizon of the model at once (the primary one first, then
``extra_horizons``): logits (batch, H, 3), return (batch, H), volatility (batch, H). A model's
``forward`` returns the primary horizon's slice (``primary_outputs``), so everything that
scores or serves one horizon is the same whatever H is.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

N_DIRECTIONS = 3  # down / flat / up, schema.DIRECTION_CLASSES

Outputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class MultitaskHeads(nn.Module):
    """Dropout, then per horizon a 3-class direction head and a return and volatility head.

    One linear layer holds each kind of head for all horizons: with one horizon the layers and
    their initial weights are those of a single-horizon model.
    """

    def __init__(self, width: int, dropout: float, n_horizons: int = 1) -> None:
        super().__init__()
        self.n_horizons = n_horizons
        self.dropout = nn.Dropout(dropout)
        self.direction_head = nn.Linear(width, n_horizons * N_DIRECTIONS)
        # Columns 2h and 2h + 1 are horizon h's return and volatility.
        self.regression_head = nn.Linear(width, n_horizons * 2)

    def forward(self, summary: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(batch, width) -> logits (batch, H, 3), return (batch, H), volatility (batch, H)
        >= 0."""
        summary = self.dropout(summary)
        # -1: N_DIRECTIONS and 2 (TorchScript cannot read a module-level constant here).
        logits = self.direction_head(summary).unflatten(-1, (self.n_horizons, -1))
        regression = self.regression_head(summary).unflatten(-1, (self.n_horizons, -1))
        return logits, regression[..., 0], F.softplus(regression[..., 1])


def check_horizons(owner: str, horizons: tuple[int, ...]) -> None:
    """Horizons (primary first) must be positive whole bars, each named once."""
    bad = [h for h in horizons if int(h) != h or h < 1]
    if bad:
        raise ValueError(f"{owner} horizons must be positive whole bars, found {bad}")
    if len(set(horizons)) != len(horizons):
        raise ValueError(
            f"{owner} horizons {list(horizons)} repeat a horizon; the extra horizons must "
            "differ from each other and from the primary horizon"
        )


def primary_outputs(
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The primary horizon's slice of the heads' outputs: logits (batch, 3), return (batch,),
    volatility (batch,)."""
    logits, forward_return, volatility = outputs
    return logits[:, 0], forward_return[:, 0], volatility[:, 0]


def loss_terms(outputs: Outputs, targets: Outputs, class_weight: torch.Tensor) -> dict:
    """The loss's sums over a batch per horizon, so that batches add up exactly.

    Parameters
    ----------
    outputs : tuple of torch.Tensor
        The heads' logits (batch, H, 3), scaled return (batch, H) and scaled volatility
        (batch, H).
    targets : tuple of torch.Tensor
        Direction (batch, H) int64, scaled return (batch, H), scaled volatility (batch, H).
    class_weight : torch.Tensor
        (H, 3) weight of each direction class in each horizon's cross-entropy.

    Returns
    -------
    dict of torch.Tensor
        cross_entropy_sum (class-weighted), weight_sum, return_se_sum, volatility_se_sum, each
        (H,); count, a scalar.
    """
    logits, predicted_return, predicted_volatility = (output.float() for output in outputs)
    direction, forward_return, volatility = targets
    cross_entropy, weight_sum = [], []
    # One horizon at a time: each has its own class weights, and a single horizon reduces
    # exactly as a single-horizon model's loss did.
    for horizon in range(logits.shape[1]):
        weight = class_weight[horizon][direction[:, horizon]]  # (batch,)
        entropy = F.cross_entropy(logits[:, horizon], direction[:, horizon], reduction="none")
        cross_entropy.append((weight * entropy).sum())
        weight_sum.append(weight.sum())
    return {
        "cross_entropy_sum": torch.stack(cross_entropy),
        "weight_sum": torch.stack(weight_sum),
        "return_se_sum": (predicted_return - forward_return).square().sum(dim=0),
        "volatility_se_sum": (predicted_volatility - volatility).square().sum(dim=0),
        # A fill on the batch's device: torch.tensor(..., device=...) would copy from the host
        # at every step of a CUDA run.
        "count": logits.new_full((), float(len(direction))),
    }


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """Weights of the terms next to the direction cross-entropy (``loop.loss_weights`` reads
    them from TrainingSettings, where their defaults live)."""

    return_weight: float
    volatility_weight: float
    # Auxiliary terms of models that forecast book levels (lob_transformer); 0 disables.
    book_forecast_weight: float
    structural_weight: float


def combine_loss(terms: dict[str, torch.Tensor], weights: LossWeights) -> dict[str, torch.Tensor]:
    """loss = class-weighted CE + weighted MSE(return) + weighted MSE(vol), each mean taken
    over the summed batches (the CE's over the summed class weights) and summed over the
    horizons; plus, when ``terms`` holds a book forecast's sums, the weighted forecast MSE and
    structural penalty."""
    cross_entropy = (terms["cross_entropy_sum"] / terms["weight_sum"]).sum()
    return_mse = (terms["return_se_sum"] / terms["count"]).sum()
    volatility_mse = (terms["volatility_se_sum"] / terms["count"]).sum()
    combined = {
        "loss": cross_entropy
        + weights.return_weight * return_mse
        + weights.volatility_weight * volatility_mse,
        "cross_entropy": cross_entropy,
        "return_mse": return_mse,
        "volatility_mse": volatility_mse,
    }
    if "book_se_sum" in terms:
        combined["book_mse"] = terms["book_se_sum"] / terms["book_count"]
        combined["structural_penalty"] = terms["structural_sum"] / terms["book_forecasts"]
        combined["loss"] = (
            combined["loss"]
            + weights.book_forecast_weight * combined["book_mse"]
            + weights.structural_weight * combined["structural_penalty"]
        )
    return combined
