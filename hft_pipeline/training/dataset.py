"""A window's features and labels -> sequences of bars, a leak-free split and a scaler.

Rows of all (symbol, session) blocks are concatenated into one float32 array; a sequence is
named by the row ``e`` of its last bar and covers rows ``e - context + 1 .. e``. It exists only
when all those rows belong to the same session and the labels at ``e`` are present, so no
sequence crosses a session boundary. Batches are cut on the device with ``Tensor.unfold``
(a view), so only the rows of a batch are ever copied.

The labels may span several horizons (the primary one first, then a model's
``extra_horizons``): a sequence then needs every horizon's labels, the purge spans the longest
horizon, and each horizon's regression targets have their own scale.
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
from hft_pipeline.training.lob_transformer import attention_fast_path_off
from hft_pipeline.training.window_checks import check_directions, check_frames, check_sorted

MISSING_DIRECTION = -1  # direction label of rows whose labels are NULL


@dataclasses.dataclass(frozen=True)
class WindowArrays:
    """The rows of a window (every session of every symbol, in input order), unscaled.

    Labels are (n_rows, n_horizons), ``horizons`` order; a row's labels are present for every
    horizon or for none. ``direction``, ``forward_return`` and ``volatility`` are the primary
    horizon's column.
    """

    feature_columns: tuple[str, ...]
    context: int
    horizons: tuple[int, ...]  # label horizons in bars, the primary one first
    features: np.ndarray  # (n_rows, n_features) float32, NaN where a feature is warming up
    directions: np.ndarray  # (n_rows, n_horizons) int64 in {0, 1, 2}, MISSING_DIRECTION absent
    forward_returns: np.ndarray  # (n_rows, n_horizons) float64 log return over H bars, or NaN
    volatilities: np.ndarray  # (n_rows, n_horizons) float64 realized vol over H bars, or NaN
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

    @property
    def horizon(self) -> int:
        """The primary label horizon in bars."""
        return self.horizons[0]

    @property
    def longest_horizon(self) -> int:
        """The farthest bar any label reads: what the purge must span."""
        return max(self.horizons)

    @property
    def direction(self) -> np.ndarray:
        """(n_rows,) the primary horizon's direction."""
        return self.directions[:, 0]

    @property
    def forward_return(self) -> np.ndarray:
        """(n_rows,) the primary horizon's forward log return."""
        return self.forward_returns[:, 0]

    @property
    def volatility(self) -> np.ndarray:
        """(n_rows,) the primary horizon's forward realized volatility."""
        return self.volatilities[:, 0]


def build_window_arrays(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    feature_columns: Sequence[str],
    horizon: int,
    context: int,
    extra_horizons: Sequence[int] = (),
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
    extra_horizons : Sequence[int], default ()
        Further label horizons read next to ``horizon``; a sequence needs all their labels.

    Returns
    -------
    WindowArrays
    """
    horizons = (horizon, *extra_horizons)
    label_names = check_frames(features, labels, feature_columns, horizons)
    if context < 1:
        raise ValueError(f"context must be at least 1 bar, found {context}")
    ts = features[TS].to_numpy(dtype=np.int64)
    session, session_end = session_blocks(features)
    check_sorted(ts, session)
    # Each (n_rows, n_horizons): column h holds the labels of horizons[h].
    forward_return, volatility, direction = (
        label_matrix(labels, columns) for columns in zip(*label_names, strict=True)
    )
    present = np.isfinite(np.hstack((forward_return, volatility, direction))).all(axis=1)
    for column, names in enumerate(label_names):
        check_directions(direction[present, column], names[2])
    position = np.arange(len(ts)) - block_first_row(session)
    labelled = present[:, None]
    return WindowArrays(
        feature_columns=tuple(feature_columns),
        context=context,
        horizons=horizons,
        features=features[list(feature_columns)].to_numpy(dtype=np.float32, na_value=np.nan),
        directions=np.where(labelled, np.nan_to_num(direction), MISSING_DIRECTION).astype(np.int64),
        forward_returns=np.where(labelled, forward_return, np.nan),
        volatilities=np.where(labelled, volatility, np.nan),
        ts=ts,
        session=session,
        session_end=session_end,
        ends=np.flatnonzero(present & (position >= context - 1)).astype(np.int64),
        bar_ns=typical_bar_ns(ts, session),
        symbols=tuple(sorted(map(str, pd.unique(features[SYMBOL])))),
        session_dates=tuple(sorted({str(day)[:10] for day in pd.unique(features[SESSION_DATE])})),
    )


def label_matrix(labels: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """(n_rows, len(columns)) float64 label values, NaN where NULL."""
    return np.column_stack(
        [labels[name].to_numpy(dtype=np.float64, na_value=np.nan) for name in columns]
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
    """Validation = sequences ending in the last ``validation_fraction`` of the window's bars.

    The validation start is the ts that leaves that share of all bars (every symbol together)
    at or after it: a share of bars, not of clock time, because the clock also runs through
    nights and weekends (20% of a Monday-to-Tuesday span is most of Tuesday). A training
    sequence ending at row e has its labels computed from bars e..e+H, H its longest horizon;
    it is purged when bar e+H's ts reaches the validation start (a label would overlap
    validation prices), and embargoed when bar e+H+embargo_bars would (a margin for serial
    correlation). Bars past a session's end are placed at ``bar_ns`` steps after its last bar.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), found {validation_fraction}")
    if embargo_bars < 0:
        raise ValueError(f"embargo_bars must be >= 0, found {embargo_bars}")
    ends = arrays.ends
    n_rows = len(arrays.ts)
    first_validation_row = min(n_rows - 1, max(1, round((1.0 - validation_fraction) * n_rows)))
    validation_start = int(np.partition(arrays.ts, first_validation_row)[first_validation_row])
    is_val = arrays.ts[ends] >= validation_start
    candidates = ends[~is_val]
    horizon = arrays.longest_horizon
    purged = ts_after(arrays, candidates, horizon) >= validation_start
    embargoed = ~purged & (ts_after(arrays, candidates, horizon + embargo_bars) >= validation_start)
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
    # The same scales for a model's extra horizons, in its extra_horizons order.
    extra_return_scales: tuple[float, ...] = ()
    extra_volatility_scales: tuple[float, ...] = ()

    @property
    def return_scales(self) -> tuple[float, ...]:
        """Every horizon's return scale, the primary one first."""
        return (self.return_scale, *self.extra_return_scales)

    @property
    def volatility_scales(self) -> tuple[float, ...]:
        """Every horizon's volatility scale, the primary one first."""
        return (self.volatility_scale, *self.extra_volatility_scales)

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
        values["extra_return_scales"] = list(self.extra_return_scales)
        values["extra_volatility_scales"] = list(self.extra_volatility_scales)
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
            extra_return_scales=tuple(float(v) for v in values.get("extra_return_scales", ())),
            extra_volatility_scales=tuple(
                float(v) for v in values.get("extra_volatility_scales", ())
            ),
        )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Path) -> Scaler:
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; is {path.parent} a trained window folder?")
        return cls.from_dict(json.loads(path.read_text()))


def fit_scaler(arrays: WindowArrays, split: Split) -> Scaler:
    """Fits feature mean/std on the rows before the validation start and each horizon's target
    scales on the training sequences; a constant or all-NaN feature gets std 1 (and mean 0 if
    all-NaN)."""
    rows = arrays.features[arrays.ts < split.validation_start_ts].astype(np.float64)
    if len(rows) == 0:
        raise ValueError("no training rows before the validation start; lower validation_fraction")
    with np.errstate(all="ignore"):
        counts = np.isfinite(rows).sum(axis=0)
        mean = np.where(counts > 0, np.nansum(rows, axis=0) / np.maximum(counts, 1), 0.0)
        std = np.sqrt(np.nansum((rows - mean) ** 2, axis=0) / np.maximum(counts, 1))
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    columns = range(len(arrays.horizons))
    return_scales = [
        positive_or_one(np.std(arrays.forward_returns[split.train_ends, h])) for h in columns
    ]
    volatility_scales = [
        positive_or_one(np.mean(arrays.volatilities[split.train_ends, h])) for h in columns
    ]
    return Scaler(
        feature_columns=arrays.feature_columns,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        return_scale=return_scales[0],
        volatility_scale=volatility_scales[0],
        n_rows=len(rows),
        extra_return_scales=tuple(return_scales[1:]),
        extra_volatility_scales=tuple(volatility_scales[1:]),
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


def horizon_class_weights(arrays: WindowArrays, split: Split) -> np.ndarray:
    """(n_horizons, 3) ``class_weights`` of each horizon's training directions."""
    train_directions = arrays.directions[split.train_ends]  # (n_train, n_horizons)
    return np.stack([class_weights(column) for column in train_directions.T])


@dataclasses.dataclass(frozen=True)
class SequenceTensors:
    """A window's scaled rows on a device; batches are cut from ``windows`` (a view)."""

    windows: torch.Tensor  # (n_rows - context + 1, n_features, context), unfold view
    direction: torch.Tensor  # (n_rows, n_horizons) int64
    forward_return: torch.Tensor  # (n_rows, n_horizons) float32 / return scale, 0 where absent
    volatility: torch.Tensor  # (n_rows, n_horizons) float32 / volatility scale, 0 where absent
    context: int


def to_tensors(
    arrays: WindowArrays, scaled: np.ndarray, scaler: Scaler, device: torch.device | str
) -> SequenceTensors:
    """Moves the scaled rows (n_rows, n_features) and the targets onto ``device``.

    The arrays' horizons are the first of the scaler's (the model's primary horizon alone
    for scoring, or all of them for training).
    """
    if len(scaled) < arrays.context:
        raise ValueError(f"{len(scaled)} rows are fewer than one context of {arrays.context}")
    n_horizons = len(arrays.horizons)
    if n_horizons > len(scaler.return_scales):
        raise ValueError(
            f"labels of horizons {list(arrays.horizons)} but the scaler holds target scales "
            f"of {len(scaler.return_scales)} horizon(s); fit it on these arrays"
        )
    rows = torch.from_numpy(np.ascontiguousarray(scaled, dtype=np.float32)).to(device)

    def target(values: np.ndarray, scales: tuple[float, ...]) -> torch.Tensor:
        scaled_values = values / np.asarray(scales[:n_horizons])  # (n_rows, n_horizons)
        return torch.from_numpy(np.nan_to_num(scaled_values).astype(np.float32)).to(device)

    return SequenceTensors(
        windows=rows.unfold(0, arrays.context, 1),
        direction=torch.from_numpy(arrays.directions).to(device),
        forward_return=target(arrays.forward_returns, scaler.return_scales),
        volatility=target(arrays.volatilities, scaler.volatility_scales),
        context=arrays.context,
    )


def sequence_batch(
    tensors: SequenceTensors, ends: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cuts the sequences ending at rows ``ends`` (batch,) on the tensors' device.

    Returns x (batch, context, n_features), direction (batch, n_horizons), return (batch,
    n_horizons), vol (batch, n_horizons).
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

    Returns probabilities (n, 3), scaled return (n,) and scaled volatility (n,), float64; or
    (n, H, 3), (n, H), (n, H) for a model's ``forward_horizons``.
    """
    device = tensors.windows.device
    probabilities, returns, volatilities = [], [], []
    for first in range(0, len(ends), batch_size):
        batch_ends = torch.from_numpy(ends[first : first + batch_size]).to(device)
        x, _, _, _ = sequence_batch(tensors, batch_ends)
        with (
            torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None),
            attention_fast_path_off(),
        ):
            logits, forward_return, volatility = model(x)
        probabilities.append(torch.softmax(logits.double(), dim=-1).cpu())
        returns.append(forward_return.double().cpu())
        volatilities.append(volatility.double().cpu())
    if not probabilities:
        return np.zeros((0, 3)), np.zeros(0), np.zeros(0)
    return tuple(torch.cat(parts).numpy() for parts in (probabilities, returns, volatilities))
