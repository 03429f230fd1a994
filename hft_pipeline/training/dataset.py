"""A window's features and labels -> sequences of bars, a leak-free split and a scaler.

Rows of all (symbol, session) blocks are concatenated into one float32 array; a sequence is
named by the row ``e`` of its last bar and covers rows ``e - context + 1 .. e``. It exists only
when all those rows belong to the same session and the labels at ``e`` are present, so no
sequence crosses a session boundary. Batches are cut on the device with ``Tensor.unfold``
(a view), so only the rows of a batch are ever copied.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from hft_pipeline.features.schema import SESSION_DATE, SYMBOL, TS
from hft_pipeline.training.heads import Outputs
from hft_pipeline.training.window_checks import check_directions, check_frames, check_sorted

MISSING_DIRECTION = -1  # direction label of rows whose labels are NULL


@dataclasses.dataclass(frozen=True)
class WindowArrays:
    """The rows of a window (every session of every symbol, in input order), unscaled."""

    feature_columns: tuple[str, ...]
    context: int
    horizon: int
    features: np.ndarray  # (n_rows, n_features) float32, NaN where a feature is warming up
    direction: np.ndarray  # (n_rows,) int64 in {0, 1, 2}, MISSING_DIRECTION where absent
    forward_return: np.ndarray  # (n_rows,) float64 log return over H bars, NaN where absent
    volatility: np.ndarray  # (n_rows,) float64 realized volatility over H bars, NaN where absent
    ts: np.ndarray  # (n_rows,) int64 ns, the bar's close
    session: np.ndarray  # (n_rows,) int64 id of the row's (symbol, session) block
    session_end: np.ndarray  # (n_rows,) int64 row index of the last bar of the row's block
    ends: np.ndarray  # (n_sequences,) int64 rows where a full, labelled sequence ends
    bar_ns: int  # typical bar length (median step within sessions), for the embargo
    symbols: tuple[str, ...]
    session_dates: tuple[str, ...]  # ISO dates, sorted

    @property
    def starts(self) -> np.ndarray:
        """(n_sequences,) first row of each sequence."""
        return self.ends - self.context + 1


def build_window_arrays(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    feature_columns: Sequence[str],
    horizon: int,
    context: int,
) -> WindowArrays:
    """Checks a window's frames and turns them into row arrays and sequence end rows.

    Parameters
    ----------
    features, labels : pd.DataFrame
        One row per bar per symbol per session with the key columns (ts, session_date,
        symbol, bar_index), sorted by symbol, ts; the same rows in both frames.
    feature_columns : Sequence[str]
        The model inputs, in order; float columns of ``features`` (NaN allowed).
    horizon : int
        Label horizon H in bars; the labels read are ``fwd_ret_hH``, ``fwd_rv_hH``,
        ``direction_hH``.
    context : int
        Bars per sequence.

    Returns
    -------
    WindowArrays
    """
    label_names = check_frames(features, labels, feature_columns, horizon)
    if context < 1:
        raise ValueError(f"context must be at least 1 bar, found {context}")
    ts = features[TS].to_numpy(dtype=np.int64)
    session, session_end = session_blocks(features)
    check_sorted(ts, session)
    values = {
        name: labels[name].to_numpy(dtype=np.float64, na_value=np.nan) for name in label_names
    }
    forward_return, volatility, direction = (values[name] for name in label_names)
    present = np.isfinite(forward_return) & np.isfinite(volatility) & np.isfinite(direction)
    check_directions(direction[present], label_names[2])
    position = np.arange(len(ts)) - block_first_row(session)
    return WindowArrays(
        feature_columns=tuple(feature_columns),
        context=context,
        horizon=horizon,
        features=features[list(feature_columns)].to_numpy(dtype=np.float32, na_value=np.nan),
        direction=np.where(present, np.nan_to_num(direction), MISSING_DIRECTION).astype(np.int64),
        forward_return=np.where(present, forward_return, np.nan),
        volatility=np.where(present, volatility, np.nan),
        ts=ts,
        session=session,
        session_end=session_end,
        ends=np.flatnonzero(present & (position >= context - 1)).astype(np.int64),
        bar_ns=typical_bar_ns(ts, session),
        symbols=tuple(sorted(map(str, pd.unique(features[SYMBOL])))),
        session_dates=tuple(sorted({str(day)[:10] for day in pd.unique(features[SESSION_DATE])})),
    )


def session_blocks(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(n_rows,) block id and (n_rows,) last row of the block; a block = symbol x session."""
    n_rows = len(frame)
    changed = np.zeros(n_rows, dtype=bool)
    if n_rows:
        changed[0] = True
        for column in (SYMBOL, SESSION_DATE):
            values = frame[column].to_numpy()
            changed[1:] |= values[1:] != values[:-1]
    session = np.cumsum(changed) - 1
    last_rows = np.append(np.flatnonzero(changed)[1:] - 1, n_rows - 1)
    return session.astype(np.int64), last_rows[session].astype(np.int64)


def block_first_row(session: np.ndarray) -> np.ndarray:
    """(n_rows,) index of the first row of each row's block."""
    starts = np.flatnonzero(np.diff(session, prepend=-1) != 0)
    return starts[session]


def typical_bar_ns(ts: np.ndarray, session: np.ndarray) -> int:
    steps = np.diff(ts)[session[1:] == session[:-1]]
    return int(np.median(steps)) if len(steps) else 0


@dataclasses.dataclass(frozen=True)
class Split:
    """Which sequences train and which validate, and what the purge and embargo removed."""

    train_ends: np.ndarray  # (n_train,) end rows
    val_ends: np.ndarray  # (n_val,) end rows
    validation_start_ts: int  # ns; sequences ending at or after it validate
    n_purged: int  # training sequences whose label horizon reaches validation
    n_embargoed: int  # further training sequences within the embargo bars


def chronological_split(
    arrays: WindowArrays, validation_fraction: float, embargo_bars: int
) -> Split:
    """Validation = sequences ending in the last ``validation_fraction`` of the window's span.

    The span runs from the first to the last bar's ts over all symbols together. A training
    sequence ending at row e has its label computed from bars e..e+H; it is purged when bar
    e+H's ts reaches the validation start (its label would overlap validation prices), and
    embargoed when bar e+H+embargo_bars would (a margin for serial correlation). Bars past a
    session's end are placed at ``bar_ns`` steps after its last bar.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), found {validation_fraction}")
    if embargo_bars < 0:
        raise ValueError(f"embargo_bars must be >= 0, found {embargo_bars}")
    ends = arrays.ends
    first, last = int(arrays.ts.min()), int(arrays.ts.max())
    validation_start = last - int(round(validation_fraction * (last - first)))
    is_val = arrays.ts[ends] >= validation_start
    candidates = ends[~is_val]
    purged = ts_after(arrays, candidates, arrays.horizon) >= validation_start
    embargoed = ~purged & (
        ts_after(arrays, candidates, arrays.horizon + embargo_bars) >= validation_start
    )
    return Split(
        train_ends=candidates[~purged & ~embargoed],
        val_ends=ends[is_val],
        validation_start_ts=validation_start,
        n_purged=int(purged.sum()),
        n_embargoed=int(embargoed.sum()),
    )


def ts_after(arrays: WindowArrays, rows: np.ndarray, bars: int) -> np.ndarray:
    """(len(rows),) ts of the bar ``bars`` after each row, extrapolated past a session's end."""
    target = rows + bars
    inside = np.minimum(target, arrays.session_end[rows])
    return arrays.ts[inside] + (target - inside) * arrays.bar_ns


@dataclasses.dataclass(frozen=True)
class Scaler:
    """Per-feature standardization and target scales, fit on the training part only."""

    feature_columns: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # The heads learn return / return_scale and volatility / volatility_scale: raw log returns
    # are ~1e-4, which would leave the MSE terms negligible next to the cross-entropy.
    return_scale: float
    volatility_scale: float
    n_rows: int  # training rows the feature statistics came from

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Standardizes raw features (..., n_features) -> float32; NaN (and inf) become 0.

        NaN marks a feature still warming up at a session's start (its lookback is not yet
        filled), and one NaN input would turn the LSTM's whole state NaN. After
        standardization 0 is the training mean, so a warming-up feature reads as "typical"
        rather than as an extreme value.
        """
        if features.shape[-1] != len(self.mean):
            raise ValueError(
                f"features have {features.shape[-1]} columns but the scaler was fit on "
                f"{len(self.mean)}: {list(self.feature_columns)}"
            )
        scaled = (np.asarray(features, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(
            self.std
        )
        return np.nan_to_num(scaled, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["feature_columns"] = list(self.feature_columns)
        values["mean"], values["std"] = list(self.mean), list(self.std)
        values["nan_fill"] = 0.0
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Scaler:
        return cls(
            feature_columns=tuple(values["feature_columns"]),
            mean=tuple(float(v) for v in values["mean"]),
            std=tuple(float(v) for v in values["std"]),
            return_scale=float(values["return_scale"]),
            volatility_scale=float(values["volatility_scale"]),
            n_rows=int(values["n_rows"]),
        )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Path) -> Scaler:
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; is {path.parent} a trained window folder?")
        return cls.from_dict(json.loads(path.read_text()))


def fit_scaler(arrays: WindowArrays, split: Split) -> Scaler:
    """Fits feature mean/std on the rows before the validation start and target scales on the
    training sequences; a constant or all-NaN feature gets std 1 (and mean 0 if all-NaN)."""
    rows = arrays.features[arrays.ts < split.validation_start_ts].astype(np.float64)
    if len(rows) == 0:
        raise ValueError("no training rows before the validation start; lower validation_fraction")
    with np.errstate(all="ignore"):
        counts = np.isfinite(rows).sum(axis=0)
        mean = np.where(counts > 0, np.nansum(rows, axis=0) / np.maximum(counts, 1), 0.0)
        std = np.sqrt(np.nansum((rows - mean) ** 2, axis=0) / np.maximum(counts, 1))
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    return Scaler(
        feature_columns=arrays.feature_columns,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        return_scale=positive_or_one(np.std(arrays.forward_return[split.train_ends])),
        volatility_scale=positive_or_one(np.mean(arrays.volatility[split.train_ends])),
        n_rows=len(rows),
    )


def positive_or_one(value: float) -> float:
    return float(value) if np.isfinite(value) and value > 0 else 1.0


def class_weights(direction: np.ndarray, n_classes: int = 3) -> np.ndarray:
    """(n_classes,) ``n / (n_classes * count_c)``: each class weighs the same in the loss.

    A class absent from training gets weight 1 (it has no samples to weigh anyway).
    """
    counts = np.bincount(direction, minlength=n_classes).astype(np.float64)
    weights = np.ones(n_classes)
    present = counts > 0
    weights[present] = counts.sum() / (n_classes * counts[present])
    return weights


@dataclasses.dataclass(frozen=True)
class SequenceTensors:
    """A window's scaled rows on a device; batches are cut from ``windows`` (a view)."""

    windows: torch.Tensor  # (n_rows - context + 1, n_features, context), unfold view
    direction: torch.Tensor  # (n_rows,) int64
    forward_return: torch.Tensor  # (n_rows,) float32 / return_scale, 0 where absent
    volatility: torch.Tensor  # (n_rows,) float32 / volatility_scale, 0 where absent
    context: int


def to_tensors(
    arrays: WindowArrays, scaled: np.ndarray, scaler: Scaler, device: torch.device | str
) -> SequenceTensors:
    """Moves the scaled rows (n_rows, n_features) and the targets onto ``device``."""
    if len(scaled) < arrays.context:
        raise ValueError(f"{len(scaled)} rows are fewer than one context of {arrays.context}")
    rows = torch.from_numpy(np.ascontiguousarray(scaled, dtype=np.float32)).to(device)

    def target(values: np.ndarray, scale: float) -> torch.Tensor:
        return torch.from_numpy(np.nan_to_num(values / scale).astype(np.float32)).to(device)

    return SequenceTensors(
        windows=rows.unfold(0, arrays.context, 1),
        direction=torch.from_numpy(arrays.direction).to(device),
        forward_return=target(arrays.forward_return, scaler.return_scale),
        volatility=target(arrays.volatility, scaler.volatility_scale),
        context=arrays.context,
    )


def sequence_batch(
    tensors: SequenceTensors, ends: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cuts the sequences ending at rows ``ends`` (batch,) on the tensors' device.

    Returns x (batch, context, n_features), direction (batch,), return (batch,), vol (batch,).
    """
    x = tensors.windows[ends - (tensors.context - 1)].transpose(1, 2)  # (batch, seq, features)
    return x, tensors.direction[ends], tensors.forward_return[ends], tensors.volatility[ends]


@torch.no_grad()
def predict_sequences(
    model: Callable[[torch.Tensor], Outputs],
    tensors: SequenceTensors,
    ends: np.ndarray,
    batch_size: int = 4096,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs ``model`` over the sequences ending at ``ends``.

    Returns probabilities (n, 3), scaled return (n,) and scaled volatility (n,), float64.
    """
    device = tensors.windows.device
    probabilities, returns, volatilities = [], [], []
    for first in range(0, len(ends), batch_size):
        batch_ends = torch.from_numpy(ends[first : first + batch_size]).to(device)
        x, _, _, _ = sequence_batch(tensors, batch_ends)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits, forward_return, volatility = model(x)
        probabilities.append(torch.softmax(logits.double(), dim=-1).cpu())
        returns.append(forward_return.double().cpu())
        volatilities.append(volatility.double().cpu())
    if not probabilities:
        return np.zeros((0, 3)), np.zeros(0), np.zeros(0)
    return tuple(torch.cat(parts).numpy() for parts in (probabilities, returns, volatilities))
