"""The attention LOB model (seed 001): book levels as tokens, a causal transformer over bars.

Each bar's book is a set of tokens, one per (side, level) present in the feature list: the
projection of its (price offset, log size) plus a learned level embedding and a learned side
embedding (seed 001's compound embedding). Attention pooling with a learned query turns a bar's
tokens into one vector; every other feature goes through one linear projection, the bar's
summary token, which is added to it together with a learned position embedding. A causal
transformer encoder runs over the ``context`` bars, and the last bar's state feeds the same
heads as the LSTM (``heads.MultitaskHeads``), one set per horizon (seed 001's multi-horizon
heads): ``forward`` returns the primary horizon's, ``forward_horizons`` all of them.

The feature names are a contract with the features stage (``book_levels`` family), for level
``LL`` in 00..09: ``bid_offset_ticks_LL`` = (mid - bid_px_LL) / tick, ``ask_offset_ticks_LL`` =
(ask_px_LL - mid) / tick, ``bid_log_size_LL``, ``ask_log_size_LL``. Both offsets are distances
from the mid, so a sound book has ``bid_offset_00 + ask_offset_00 >= 0`` and offsets growing
with the level on each side. Levels absent from the list are fewer tokens; NULL (empty levels)
reaches the model as 0, the training mean, through ``Scaler.transform``.

Seed 001's structural regularizer: an auxiliary head forecasts, at every bar t, the offsets
of bars t+1..t+k. Its targets are the sequence's own later rows (the causal mask keeps bar t
from seeing them), so they never leave the sequence's part of the split. The forecasts pay an
MSE and a hinge penalty, in ticks, for a crossed book and for levels out of order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Sequence
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

MODEL_KIND = "lob_transformer"
BOOK_LEVELS = 10
SIDES = ("bid", "ask")
# LobTransformerConfig's tuple fields, lists in JSON.
SEQUENCE_FIELDS = ("feature_columns", "extra_horizons", "offset_mean", "offset_std")


def book_column(side: str, attribute: str, level: int) -> str:
    """The feature name of one book attribute, e.g. ``bid_offset_ticks_03``."""
    return f"{side}_{attribute}_{level:02d}"


@dataclasses.dataclass(frozen=True)
class BookLayout:
    """Where a feature list keeps the book: one token per (side, level), bids then asks,
    each side by increasing level."""

    offset_index: tuple[int, ...]  # (n_tokens,) feature column of each token's price offset
    size_index: tuple[int, ...]  # (n_tokens,) feature column of each token's log size
    level: tuple[int, ...]  # (n_tokens,) 0..9
    side: tuple[int, ...]  # (n_tokens,) 0 bid, 1 ask
    summary_index: tuple[int, ...]  # the other features, in list order

    @property
    def n_tokens(self) -> int:
        return len(self.offset_index)

    def ordered_pairs(self) -> list[tuple[int, int]]:
        """(nearer, farther) token pairs of adjacent present levels on one side: the farther
        level's offset must not be smaller."""
        return [
            (first, first + 1)
            for first in range(self.n_tokens - 1)
            if self.side[first] == self.side[first + 1]
        ]

    def touch(self) -> tuple[int, int] | None:
        """(bid, ask) tokens of each side's nearest present level, None if a side is absent."""
        if 0 not in self.side or 1 not in self.side:
            return None
        return self.side.index(0), self.side.index(1)


def book_layout(feature_columns: Sequence[str]) -> BookLayout:
    """Finds the book tokens in a feature list; a level needs both its offset and its size."""
    position = {name: index for index, name in enumerate(feature_columns)}
    offsets, sizes, levels, sides = [], [], [], []
    for side_id, side in enumerate(SIDES):
        for level in range(BOOK_LEVELS):
            pair = (book_column(side, "offset_ticks", level), book_column(side, "log_size", level))
            found = [name in position for name in pair]
            if found == [True, True]:
                offsets.append(position[pair[0]])
                sizes.append(position[pair[1]])
                levels.append(level)
                sides.append(side_id)
            elif any(found):
                have, lack = pair if found[0] else pair[::-1]
                raise ValueError(
                    f"feature list has {have!r} but not {lack!r}; a book level needs both its "
                    "price offset and its size (add the missing feature or drop the level)"
                )
    book = set(offsets) | set(sizes)
    summary = tuple(index for index in range(len(feature_columns)) if index not in book)
    return BookLayout(tuple(offsets), tuple(sizes), tuple(levels), tuple(sides), summary)


def structural_penalty(offsets: torch.Tensor, layout: BookLayout) -> torch.Tensor:
    """Seed 001's structural regularizer on forecast book offsets, in ticks.

    Parameters
    ----------
    offsets : torch.Tensor
        (..., n_tokens) price offsets from the mid in ticks, in ``layout``'s token order.
    layout : BookLayout

    Returns
    -------
    torch.Tensor
        (...,) hinge sum: ``relu(-(bid_offset + ask_offset))`` at the nearest levels (the bid
        above the ask by that many ticks) plus ``relu(nearer - farther)`` over adjacent levels of
        each side. Zero for a well-ordered book; its gradient moves offsets apart.
    """
    penalty = offsets.new_zeros(offsets.shape[:-1])
    touch = layout.touch()
    if touch is not None:
        penalty = penalty + torch.relu(-(offsets[..., touch[0]] + offsets[..., touch[1]]))
    pairs = layout.ordered_pairs()
    if pairs:
        nearer = offsets[..., [pair[0] for pair in pairs]]
        farther = offsets[..., [pair[1] for pair in pairs]]
        penalty = penalty + torch.relu(nearer - farther).sum(dim=-1)
    return penalty


@contextlib.contextmanager
def attention_fast_path_off() -> Iterator[None]:
    """Keeps ``nn.TransformerEncoder`` off its inference fast path for the duration.

    Without gradients the fast path runs attention with the explicit causal mask, a
    (batch, heads, seq, seq) masked softmax, where the regular path passes ``is_causal`` to
    the fused attention kernel: validation ran ~1.3x slower per sequence on CPU with it.
    """
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


@dataclasses.dataclass(frozen=True)
class LobTransformerConfig:
    # Model inputs in order; the book tokens are found by name (see book_layout).
    feature_columns: tuple[str, ...]
    # Token and bar width; seed 001 used 126 for 3 heads, 64 suits a few dozen inputs on CPU.
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    dropout: float = 0.1
    # Bars per input sequence: the number of learned positions, so the model's longest input.
    context: int = 120
    # Label horizon in bars the heads were trained on: the primary one, what forward returns.
    horizon: int = 12
    # Further horizons the heads forecast (forward_horizons), in this order after the primary.
    extra_horizons: tuple[int, ...] = ()
    # Bars ahead the auxiliary head forecasts the book offsets.
    book_forecast_bars: int = 1
    # Training mean and std of each token's offset (book_layout order): the head forecasts
    # scaled offsets and the structural penalty needs ticks. Empty: forecasts are in ticks.
    offset_mean: tuple[float, ...] = ()
    offset_std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for name in ("d_model", "n_heads", "n_layers", "context", "horizon", "book_forecast_bars"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"LobTransformerConfig.{name} must be >= 1, found {value!r}")
        if not self.feature_columns:
            raise ValueError("LobTransformerConfig.feature_columns is empty")
        check_horizons("LobTransformerConfig", self.horizons)
        if self.d_model % self.n_heads:
            raise ValueError(
                f"LobTransformerConfig.d_model={self.d_model} is not divisible by "
                f"n_heads={self.n_heads}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(
                f"LobTransformerConfig.dropout must be in [0, 1), found {self.dropout}"
            )
        if self.book_forecast_bars >= self.context:
            raise ValueError(
                f"LobTransformerConfig.book_forecast_bars={self.book_forecast_bars} leaves no "
                f"target inside a sequence of {self.context} bars; use fewer than context"
            )
        n_tokens = self.layout.n_tokens
        for name in ("offset_mean", "offset_std"):
            if getattr(self, name) and len(getattr(self, name)) != n_tokens:
                raise ValueError(
                    f"LobTransformerConfig.{name} has {len(getattr(self, name))} values for "
                    f"{n_tokens} book tokens"
                )

    @property
    def n_features(self) -> int:
        return len(self.feature_columns)

    @property
    def layout(self) -> BookLayout:
        return book_layout(self.feature_columns)

    @property
    def horizons(self) -> tuple[int, ...]:
        """Every forecast horizon in bars, the primary one first."""
        return (self.horizon, *self.extra_horizons)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        for name in SEQUENCE_FIELDS:
            values[name] = list(values[name])
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LobTransformerConfig:
        names = {field.name for field in dataclasses.fields(cls)}
        kept = {key: value for key, value in values.items() if key in names}
        for name in SEQUENCE_FIELDS:
            if name in kept:
                kept[name] = tuple(kept[name])
        return cls(**kept)


class LobTransformer(nn.Module):
    """Book tokens pooled per bar, a causal transformer over bars, the shared heads."""

    def __init__(self, config: LobTransformerConfig) -> None:
        super().__init__()
        self.config = config
        layout = config.layout
        self.layout = layout
        self.n_tokens = layout.n_tokens
        self.book_forecast_bars = config.book_forecast_bars
        d_model = config.d_model

        def index(values: Sequence[int]) -> torch.Tensor:
            return torch.tensor(list(values), dtype=torch.long)

        # Derived from the config, so not part of the state dict.
        self.register_buffer("offset_index", index(layout.offset_index), persistent=False)
        self.register_buffer("size_index", index(layout.size_index), persistent=False)
        self.register_buffer("summary_index", index(layout.summary_index), persistent=False)
        self.register_buffer("token_level", index(layout.level), persistent=False)
        self.register_buffer("token_side", index(layout.side), persistent=False)
        mean = config.offset_mean or (0.0,) * self.n_tokens
        std = config.offset_std or (1.0,) * self.n_tokens
        self.register_buffer("offset_mean", torch.tensor(mean), persistent=False)
        self.register_buffer("offset_std", torch.tensor(std), persistent=False)

        self.value_projection = nn.Linear(2, d_model)  # (offset, log size) -> token
        self.level_embedding = nn.Embedding(BOOK_LEVELS, d_model)
        self.side_embedding = nn.Embedding(len(SIDES), d_model)
        self.pool_query = nn.Parameter(0.02 * torch.randn(d_model))
        # None when every feature is a book attribute (scripting drops the branch).
        self.summary_projection = (
            nn.Linear(len(layout.summary_index), d_model) if layout.summary_index else None
        )
        self.position_embedding = nn.Parameter(0.02 * torch.randn(config.context, d_model))
        encoder_layer = nn.TransformerEncoderLayer(
            d_model,
            config.n_heads,
            dim_feedforward=4 * d_model,
            dropout=config.dropout,
            batch_first=True,
            # Pre-norm trains stably without a long warm-up (nanoGPT's choice).
            norm_first=True,
        )
        # Dropout on the residual and feed-forward paths only: dropout on the attention weights
        # would force the unfused attention kernel (measured ~1.5x slower per step on CPU).
        encoder_layer.self_attn.dropout = 0.0
        self.encoder = nn.TransformerEncoder(
            encoder_layer, config.n_layers, enable_nested_tensor=False
        )
        self.final_norm = nn.LayerNorm(d_model)
        self.heads = MultitaskHeads(d_model, config.dropout, len(config.horizons))
        # Without book tokens there is nothing to forecast.
        self.book_head = (
            nn.Linear(d_model, config.book_forecast_bars * self.n_tokens) if self.n_tokens else None
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled features (batch, seq, n_features) -> causal bar states (batch, seq, d_model)."""
        seq, context = x.shape[1], self.position_embedding.shape[0]
        if seq > context:
            raise ValueError(
                "a sequence of " + str(seq) + " bars is longer than the model's context of "
                + str(context) + " bars (its learned positions); pass the last bars only"
            )  # fmt: skip
        bars = self.embed_bars(x) + self.position_embedding[:seq]  # (batch, seq, d_model)
        # True above the diagonal: bar t attends to bars <= t only, which keeps the book
        # forecast at t honest and makes the last bar's state the sequence's summary;
        # is_causal lets attention use the fused causal kernel.
        causal = torch.ones(seq, seq, dtype=torch.bool, device=x.device).triu(diagonal=1)
        return self.final_norm(self.encoder(bars, mask=causal, is_causal=True))

    def embed_bars(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, seq, n_features) -> (batch, seq, d_model): each bar's pooled book tokens
        plus its summary token."""
        values = torch.stack(
            (x.index_select(-1, self.offset_index), x.index_select(-1, self.size_index)), dim=-1
        )  # (batch, seq, n_tokens, 2)
        # token_k = W v_k + b + e_k (value projection plus level and side embeddings) is
        # linear in v_k, so attention pooling with query q never needs the (batch, seq,
        # n_tokens, d_model) tokens: q . token_k = (W^T q) . v_k + q . (b + e_k), and
        # sum_k a_k token_k = W (sum_k a_k v_k) + b + sum_k a_k e_k, as the weights sum to 1.
        embedding = self.level_embedding(self.token_level) + self.side_embedding(
            self.token_side
        )  # (n_tokens, d_model)
        weight, bias = self.value_projection.weight, self.value_projection.bias
        scores = torch.matmul(values, torch.matmul(self.pool_query, weight)) + torch.matmul(
            embedding + bias, self.pool_query
        )  # (batch, seq, n_tokens)
        attention = torch.softmax(scores / math.sqrt(weight.shape[0]), dim=-1)
        pooled_values = (attention.unsqueeze(-1) * values).sum(dim=2)  # (batch, seq, 2)
        # Without book tokens the sum is empty: the bar is its summary (plus a constant).
        bars = self.value_projection(pooled_values) + torch.matmul(attention, embedding)
        if self.summary_projection is not None:
            bars = bars + self.summary_projection(x.index_select(-1, self.summary_index))
        return bars

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predicts the three targets of the primary horizon for the last bar of each sequence.

        Parameters
        ----------
        x : torch.Tensor
            Scaled features, shape (batch, seq, n_features), seq <= context.

        Returns
        -------
        tuple of torch.Tensor
            Direction logits (batch, 3), scaled forward return (batch,) and scaled forward
            volatility (batch,), the latter non-negative through a softplus.
        """
        return primary_outputs(self.forward_horizons(x))

    @torch.jit.export
    def forward_horizons(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predicts the three targets of every horizon (``config.horizons`` order): direction
        logits (batch, H, 3), scaled return (batch, H), scaled volatility (batch, H)."""
        return self.heads(self.encode(x)[:, -1])

    def forward_with_book(self, x: torch.Tensor) -> tuple[Outputs, torch.Tensor]:
        """The outputs of ``forward_horizons`` and the book forecast (batch, seq, k,
        n_tokens): at each bar t, the scaled offsets of bars t+1..t+k."""
        if self.book_head is None:
            raise ValueError(
                "this lob_transformer has no book tokens to forecast: its features include no "
                "bid/ask_offset_ticks_LL with bid/ask_log_size_LL"
            )
        hidden = self.encode(x)  # (batch, seq, d_model)
        forecast = self.book_head(hidden).unflatten(-1, (self.book_forecast_bars, self.n_tokens))
        return self.heads(hidden[:, -1]), forecast

    def objective_terms(
        self, x: torch.Tensor, targets: Outputs, class_weight: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``heads.loss_terms`` over every horizon plus, when the inputs hold a book, the
        forecast's sums."""
        if self.book_head is None:
            return loss_terms(self.forward_horizons(x), targets, class_weight)
        outputs, forecast = self.forward_with_book(x)
        return {**loss_terms(outputs, targets, class_weight), **self.book_terms(forecast, x)}

    def book_terms(self, forecast: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Sums over a batch of the forecast's squared error (scaled units, against the
        sequence's own later rows) and of its structural penalty (ticks). An empty level
        (NULL, scaled to 0) is a target at its training mean offset."""
        offsets = x.index_select(-1, self.offset_index).float()  # (batch, seq, n_tokens)
        seq = x.shape[1]
        squared_error = structural = count = forecasts = offsets.new_zeros(())
        for ahead in range(1, self.book_forecast_bars + 1):
            predicted = forecast[:, : seq - ahead, ahead - 1].float()  # (batch, seq-ahead, K)
            squared_error = squared_error + (predicted - offsets[:, ahead:]).square().sum()
            ticks = predicted * self.offset_std + self.offset_mean
            structural = structural + structural_penalty(ticks, self.layout).sum()
            count = count + predicted.numel()
            forecasts = forecasts + predicted[..., 0].numel()
        return {
            "book_se_sum": squared_error,
            "book_count": count,
            "structural_sum": structural,
            "book_forecasts": forecasts,
        }
