"""What every model kind predicts and how it is scored: the multitask heads and the loss.

Each kind (``model.MODEL_KINDS``) turns a sequence into one vector per sequence and hands it to
``MultitaskHeads``, so training, evaluation, export and the baselines see the same three
outputs whatever the kind: direction logits over ``schema.DIRECTION_CLASSES``, the forward
return divided by ``Scaler.return_scale`` and the forward volatility divided by
``Scaler.volatility_scale``. Callers multiply the regression heads back to log-return units.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

N_DIRECTIONS = 3  # down / flat / up, schema.DIRECTION_CLASSES

Outputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class MultitaskHeads(nn.Module):
    """Dropout, then a 3-class direction head and one linear layer for both regressions."""

    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.direction_head = nn.Linear(width, N_DIRECTIONS)
        # Column 0 is the return, column 1 the volatility.
        self.regression_head = nn.Linear(width, 2)

    def forward(self, summary: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(batch, width) -> logits (batch, 3), return (batch,), volatility (batch,) >= 0."""
        summary = self.dropout(summary)
        logits = self.direction_head(summary)  # (batch, 3)
        regression = self.regression_head(summary)  # (batch, 2)
        return logits, regression[:, 0], F.softplus(regression[:, 1])


def loss_terms(outputs: Outputs, targets: Outputs, class_weight: torch.Tensor) -> dict:
    """The loss's sums over a batch, so that batches add up exactly.

    Parameters
    ----------
    outputs : tuple of torch.Tensor
        The model's logits (batch, 3), scaled return (batch,) and scaled volatility (batch,).
    targets : tuple of torch.Tensor
        Direction (batch,) int64, scaled return (batch,), scaled volatility (batch,).
    class_weight : torch.Tensor
        (3,) weight of each direction class in the cross-entropy.

    Returns
    -------
    dict of torch.Tensor
        cross_entropy_sum (class-weighted), weight_sum, return_se_sum, volatility_se_sum, count.
    """
    logits, predicted_return, predicted_volatility = (output.float() for output in outputs)
    direction, forward_return, volatility = targets
    weight = class_weight[direction]  # (batch,)
    return {
        "cross_entropy_sum": (weight * F.cross_entropy(logits, direction, reduction="none")).sum(),
        "weight_sum": weight.sum(),
        "return_se_sum": (predicted_return - forward_return).square().sum(),
        "volatility_se_sum": (predicted_volatility - volatility).square().sum(),
        "count": torch.tensor(float(len(direction)), device=logits.device),
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
    over the summed batches (the CE's over the summed class weights); plus, when ``terms``
    holds a book forecast's sums, the weighted forecast MSE and structural penalty."""
    cross_entropy = terms["cross_entropy_sum"] / terms["weight_sum"]
    return_mse = terms["return_se_sum"] / terms["count"]
    volatility_mse = terms["volatility_se_sum"] / terms["count"]
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
