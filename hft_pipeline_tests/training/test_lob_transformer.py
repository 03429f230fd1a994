"""The attention LOB model: book tokens from feature names, shapes, causality, capacity,
scripting, and seed 001's structural penalty (zero when sound, pushing a bad book apart)."""

from __future__ import annotations

import warnings

import pytest
import torch

from hft_pipeline.training.lob_transformer import (
    LobTransformer,
    LobTransformerConfig,
    book_layout,
    structural_penalty,
)
from hft_pipeline_tests.training.synthetic import book_feature_names, tiny_batch_loss_ratio

BOOK_3 = tuple(book_feature_names(3))  # 3 levels x (bid, ask) x (offset, size)
COLUMNS = ("f0", *BOOK_3, "f1")


def tiny_config(columns=COLUMNS, **overrides) -> LobTransformerConfig:
    values = dict(d_model=16, n_heads=2, n_layers=2, dropout=0.0, context=10)
    return LobTransformerConfig(feature_columns=tuple(columns), **{**values, **overrides})


def test_book_layout_tokens_bids_then_asks_by_level_rest_summary():
    layout = book_layout(COLUMNS)

    assert layout.n_tokens == 6
    assert layout.side == (0, 0, 0, 1, 1, 1)
    assert layout.level == (0, 1, 2, 0, 1, 2)
    assert [COLUMNS[i] for i in layout.offset_index[:2]] == [
        "bid_offset_ticks_00",
        "bid_offset_ticks_01",
    ]
    assert [COLUMNS[i] for i in layout.summary_index] == ["f0", "f1"]
    assert layout.ordered_pairs() == [(0, 1), (1, 2), (3, 4), (4, 5)]
    assert layout.touch() == (0, 3)


def test_book_layout_offset_without_size_raises():
    with pytest.raises(ValueError, match="'bid_offset_ticks_00' but not 'bid_log_size_00'"):
        book_layout(("f0", "bid_offset_ticks_00"))


@pytest.mark.parametrize(
    "columns", [COLUMNS, ("f0", "f1"), BOOK_3], ids=["book_and_summary", "summary_only", "book"]
)
def test_lob_transformer_batch_shapes_and_nonnegative_volatility(columns):
    torch.manual_seed(0)
    model = LobTransformer(tiny_config(columns, book_forecast_bars=2))
    x = torch.randn(4, 10, len(columns))  # (batch, seq, n_features)

    logits, forward_return, volatility = model(x)

    assert logits.shape == (4, 3)
    assert forward_return.shape == (4,)
    assert volatility.shape == (4,)
    assert bool((volatility >= 0).all())


def test_lob_transformer_book_forecast_shape_and_none_without_book():
    torch.manual_seed(0)
    model = LobTransformer(tiny_config(book_forecast_bars=2))
    x = torch.randn(4, 10, len(COLUMNS))

    _, forecast = model.forward_with_book(x)

    assert forecast.shape == (4, 10, 2, 6)  # (batch, seq, bars ahead, book tokens)
    with pytest.raises(ValueError, match="no book tokens"):
        LobTransformer(tiny_config(("f0", "f1"))).forward_with_book(x[..., :2])


def test_lob_transformer_bar_embedding_equals_pooling_explicit_tokens():
    torch.manual_seed(0)
    model = LobTransformer(tiny_config())
    x = torch.randn(3, 10, len(COLUMNS))
    values = torch.stack(
        (x.index_select(-1, model.offset_index), x.index_select(-1, model.size_index)), dim=-1
    )
    tokens = (
        model.value_projection(values)
        + model.level_embedding(model.token_level)
        + model.side_embedding(model.token_side)
    )  # (batch, seq, n_tokens, d_model), what embed_bars avoids building
    attention = torch.softmax(tokens @ model.pool_query / 4.0, dim=-1)  # sqrt(d_model) = 4
    summary = model.summary_projection(x.index_select(-1, model.summary_index))

    with torch.no_grad():
        expected = (attention.unsqueeze(-1) * tokens).sum(dim=2) + summary
        found = model.embed_bars(x)

    assert torch.allclose(found, expected, atol=1e-5)


def test_lob_transformer_book_forecast_at_bar_t_ignores_later_bars():
    torch.manual_seed(0)
    model = LobTransformer(tiny_config()).eval()
    x = torch.randn(2, 10, len(COLUMNS))
    changed = x.clone()
    changed[:, 6:] = torch.randn(2, 4, len(COLUMNS))

    with torch.no_grad():
        _, before = model.forward_with_book(x)
        _, after = model.forward_with_book(changed)

    assert torch.allclose(before[:, :6], after[:, :6], atol=1e-6)
    assert not torch.allclose(before[:, 6:], after[:, 6:])


def test_lob_transformer_tiny_batch_loss_falls_90_percent():
    torch.manual_seed(0)
    model = LobTransformer(tiny_config(n_layers=1))
    assert tiny_batch_loss_ratio(model, torch.randn(16, 10, len(COLUMNS)), steps=50) <= 0.1


def test_lob_transformer_scripted_equals_eager_at_any_length():
    torch.manual_seed(0)
    model = LobTransformer(tiny_config(dropout=0.1)).eval()
    x = torch.randn(5, 10, len(COLUMNS))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(model)
    with torch.no_grad():
        pairs = [
            pair
            for seq in (10, 4)
            for pair in zip(model(x[:, :seq]), scripted(x[:, :seq]), strict=True)
        ]

    assert all(torch.allclose(a, b, atol=1e-6) for a, b in pairs)


def test_lob_transformer_sequence_longer_than_context_raises():
    model = LobTransformer(tiny_config(context=10))

    with pytest.raises(ValueError, match="11 bars is longer than the model's context of 10"):
        model(torch.randn(2, 11, len(COLUMNS)))


def test_lob_transformer_book_terms_sum_over_forecast_steps():
    torch.manual_seed(0)
    model = LobTransformer(tiny_config(book_forecast_bars=3))
    x = torch.randn(4, 10, len(COLUMNS))
    targets = (torch.randint(0, 3, (4, 1)), torch.randn(4, 1), torch.rand(4, 1))  # 1 horizon

    with torch.no_grad():
        terms = model.objective_terms(x, targets, torch.ones(1, 3))

    # Step k has seq - k forecasts with a target inside the sequence: 9 + 8 + 7 bars.
    assert float(terms["book_forecasts"]) == 4 * (9 + 8 + 7)
    assert float(terms["book_count"]) == 4 * (9 + 8 + 7) * model.n_tokens
    assert float(terms["book_se_sum"]) > 0


# Offsets in ticks, token order bid 00..02 then ask 00..02 (see BOOK_3's layout).
SOUND_BOOK = [0.5, 1.5, 2.5, 0.5, 1.5, 2.5]
CROSSED_BOOK = [-1.0, 1.5, 2.5, 0.5, 1.5, 2.5]  # the bid 0.5 tick above the ask
UNORDERED_BOOK = [0.5, 1.5, 2.5, 0.5, 3.0, 2.5]  # ask level 01 beyond level 02


def test_structural_penalty_sound_book_is_zero():
    penalty = structural_penalty(torch.tensor([SOUND_BOOK]), book_layout(BOOK_3))

    assert penalty.tolist() == [0.0]


@pytest.mark.parametrize(
    ("book", "expected"), [(CROSSED_BOOK, 0.5), (UNORDERED_BOOK, 0.5)], ids=["crossed", "order"]
)
def test_structural_penalty_bad_book_is_positive_hinge(book, expected):
    penalty = structural_penalty(torch.tensor([book]), book_layout(BOOK_3))

    assert penalty.tolist() == pytest.approx([expected])


def test_structural_penalty_gradient_uncrosses_and_reorders():
    layout = book_layout(BOOK_3)
    offsets = torch.tensor([CROSSED_BOOK, UNORDERED_BOOK], requires_grad=True)

    structural_penalty(offsets, layout).sum().backward()
    stepped = offsets.detach() - 0.1 * offsets.grad  # one gradient-descent step

    crossed, unordered = offsets.grad
    assert crossed[0] < 0 and crossed[3] < 0  # both touch offsets grow: the bid moves down
    assert unordered[4] > 0 and unordered[5] < 0  # ask 01 comes in, ask 02 goes out
    assert bool((structural_penalty(stepped, layout) < structural_penalty(offsets, layout)).all())
