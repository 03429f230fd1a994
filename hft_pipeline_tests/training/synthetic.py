"""Small synthetic windows in the features/labels layout, for the training, evaluation and
export tests: a few sessions of random features whose labels either follow one feature lagged
a few bars (``planted=True``) or are pure noise, optionally with the book-level features the
lob_transformer reads."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from hft_pipeline.config import TrainingSettings
from hft_pipeline.features.schema import label_columns
from hft_pipeline.training.lob_transformer import SIDES, book_column
from hft_pipeline.training.train import train_window

BAR_NS = 5_000_000_000  # 5 s bars
SESSION_OPEN_NS = 14 * 3600 * 1_000_000_000 + 30 * 60 * 1_000_000_000  # 14:30 UTC
# |z| < 0.4307 holds a third of a standard normal: the planted classes come out balanced.
FLAT_BAND = 0.4307


@dataclasses.dataclass(frozen=True)
class SyntheticWindow:
    features: pd.DataFrame
    labels: pd.DataFrame
    feature_columns: tuple[str, ...]
    horizon: int
    extra_horizons: tuple[int, ...] = ()


def make_window(
    days: int = 4,
    symbols: Sequence[str] = ("ES", "ZN"),
    bars: int = 200,
    n_features: int = 3,
    horizon: int = 3,
    lag: int = 2,
    planted: bool = True,
    seed: int = 0,
    warmup_bars: int = 4,
    first_day: dt.date = dt.date(2024, 1, 2),
    book_levels: int = 0,
    extra_horizons: Sequence[int] = (),
) -> SyntheticWindow:
    """Sessions of ``bars`` 5-s bars per symbol per day, sorted by symbol, ts.

    Feature ``f0`` drives the labels when ``planted``: the direction at bar t is the sign of
    f0 at bar t - lag (flat within +-FLAT_BAND); otherwise labels are independent of every
    feature with balanced classes. ``f1`` is NaN for the first ``warmup_bars`` of each session
    and the labels are NULL for the last ``horizon`` bars, as the feature code writes them.
    ``book_levels`` > 0 appends the book features of that many levels (see book_features).
    Each of ``extra_horizons`` gets its label columns too, drawn the same way.
    """
    rng = np.random.default_rng(seed)
    columns = tuple(f"f{i}" for i in range(n_features))
    feature_parts, label_parts = [], []
    for symbol in sorted(symbols):
        for offset in range(days):
            day = first_day + dt.timedelta(days=offset)
            keys = session_keys(symbol, day, bars)
            values = rng.standard_normal((bars, n_features))
            if n_features > 1:
                values[:warmup_bars, 1] = np.nan
            book = book_features(book_levels, bars, rng)
            # One concat, not one insert per column: a window of ~100 features stays one block.
            plain = pd.DataFrame(values, columns=list(columns))
            feature_parts.append(pd.concat([keys, plain, pd.DataFrame(book)], axis=1))
            driver = np.roll(values[:, 0], lag) if planted else rng.standard_normal(bars)
            labels = session_labels(driver, horizon, lag, planted, rng)
            for extra in extra_horizons:
                labels.update(session_labels(driver, extra, lag, planted, rng))
            label_parts.append(keys.assign(**labels))
    return SyntheticWindow(
        features=pd.concat(feature_parts, ignore_index=True),
        labels=pd.concat(label_parts, ignore_index=True),
        feature_columns=columns + tuple(book_feature_names(book_levels)),
        horizon=horizon,
        extra_horizons=tuple(extra_horizons),
    )


def book_feature_names(levels: int) -> list[str]:
    return [
        book_column(side, attribute, level)
        for level in range(levels)
        for side in SIDES
        for attribute in ("offset_ticks", "log_size")
    ]


def book_features(levels: int, bars: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A sound book in the features stage's units: offsets from the mid in ticks, half a tick
    at the touch and one more tick per level, log sizes; the deepest level is empty (NULL)
    on a tenth of the bars. No levels draw nothing, leaving the other columns' draws as
    they were."""
    if levels == 0:
        return {}
    columns = {}
    empty = rng.random(bars) < 0.1
    for side in SIDES:
        for level in range(levels):
            offset = 0.5 + level + 0.2 * rng.random(bars)
            size = np.log1p(rng.integers(1, 200, bars)).astype(np.float64)
            if level == levels - 1:
                offset[empty], size[empty] = np.nan, np.nan
            columns[book_column(side, "offset_ticks", level)] = offset
            columns[book_column(side, "log_size", level)] = size
    return columns


def session_keys(symbol: str, day: dt.date, bars: int) -> pd.DataFrame:
    day_ns = int(pd.Timestamp(day).value)
    return pd.DataFrame(
        {
            "ts": day_ns + SESSION_OPEN_NS + (np.arange(bars, dtype=np.int64) + 1) * BAR_NS,
            "session_date": [day] * bars,
            "symbol": symbol,
            "bar_index": np.arange(bars, dtype=np.int32),
        }
    )


def session_labels(
    driver: np.ndarray, horizon: int, lag: int, planted: bool, rng: np.random.Generator
) -> dict[str, pd.Series]:
    bars = len(driver)
    direction = np.where(driver > FLAT_BAND, 2, np.where(driver < -FLAT_BAND, 0, 1))
    forward_return = 1e-4 * driver + 1e-6 * rng.standard_normal(bars)
    volatility = 1e-4 * (1.0 + np.abs(driver))
    missing = np.arange(bars) >= bars - horizon
    if planted:
        missing |= np.arange(bars) < lag  # np.roll wrapped these around
    ret_name, vol_name, direction_name = label_columns(horizon)
    return {
        ret_name: pd.Series(np.where(missing, np.nan, forward_return)),
        vol_name: pd.Series(np.where(missing, np.nan, volatility)),
        direction_name: pd.Series(
            pd.array(np.where(missing, None, direction).tolist(), dtype="Int8")
        ),
    }


def tiny_settings(**overrides) -> TrainingSettings:
    """A configuration that trains in about a second on two cores."""
    values = dict(
        context=8,
        hidden_size=16,
        num_layers=1,
        d_model=16,
        attention_heads=2,
        transformer_layers=1,
        dropout=0.0,
        epochs=4,
        batch_size=64,
        learning_rate=1e-2,
        weight_decay=0.0,
        validation_fraction=0.25,
        embargo_bars=2,
        seed=3,
        device="cpu",
    )
    values.update(overrides)
    return TrainingSettings(**values)


def train_tiny_window(out_dir: Path, bars: int, book_levels: int = 0, **settings) -> Path:
    """Trains a 3-day synthetic window into ``out_dir`` (the fixture of the scoring tests);
    the window has labels for the ``extra_horizons`` setting, if given."""
    data = make_window(
        days=3, bars=bars, book_levels=book_levels,
        extra_horizons=settings.get("extra_horizons", ()),
    )  # fmt: skip
    train_window(
        data.features, data.labels, data.feature_columns, tiny_settings(**settings),
        data.horizon, out_dir,
    )  # fmt: skip
    return out_dir


def tiny_batch_loss_ratio(model: torch.nn.Module, x: torch.Tensor, steps: int) -> float:
    """Final over initial multi-task loss after ``steps`` Adam steps on one fixed random batch
    (random targets: only memorization can lower it)."""
    torch.manual_seed(0)
    n = x.shape[0]
    direction = torch.randint(0, 3, (n,))
    forward_return, volatility = torch.randn(n), torch.rand(n)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss_now() -> torch.Tensor:
        logits, predicted_return, predicted_volatility = model(x)
        return (
            F.cross_entropy(logits, direction)
            + F.mse_loss(predicted_return, forward_return)
            + F.mse_loss(predicted_volatility, volatility)
        )

    first = loss_now().item()
    for _ in range(steps):
        optimizer.zero_grad()
        loss_now().backward()
        optimizer.step()
    return loss_now().item() / first
