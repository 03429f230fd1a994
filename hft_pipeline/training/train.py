"""Trains one rolling window's model and writes its folder (DESIGN section 6).

``train_window`` reads top to bottom: rows and sequences, the leak-free split, the scaler,
the loop (AdamW, warm-up then cosine decay, clipping, early stopping), the validation
metrics and baselines, and finally the files, written atomically. The loop checkpoints every
epoch (see checkpoint.py), so a killed run started again resumes and ends identically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from hft_pipeline.config import TrainingSettings
from hft_pipeline.evaluation.metrics import information_coefficient, score_predictions
from hft_pipeline.features.schema import DIRECTION_CLASSES, label_columns
from hft_pipeline.layout import atomic_directory
from hft_pipeline.training.baselines import apply_baselines, fit_baselines
from hft_pipeline.training.checkpoint import (
    Checkpoint,
    LoopState,
    checkpoint_path,
    run_fingerprint,
)
from hft_pipeline.training.dataset import (
    Scaler,
    SequenceTensors,
    Split,
    WindowArrays,
    build_window_arrays,
    chronological_split,
    class_weights,
    fit_scaler,
    predict_sequences,
    sequence_batch,
    to_tensors,
)
from hft_pipeline.training.model import (
    MODEL_KIND,
    LstmMultitask,
    ModelConfig,
    combine_loss,
    loss_terms,
    save_model_config,
)


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """Details of the loop that TrainingSettings leaves out; the defaults suit every window."""

    # Share of all optimizer steps spent ramping the learning rate up linearly from 0.
    warmup_fraction: float = 0.05
    # The cosine decay ends at this share of the peak rate (nanoGPT's min_lr = lr / 10).
    min_lr_fraction: float = 0.1
    # Epochs without a lower validation loss before stopping; the best weights are restored.
    patience: int = 3
    # Max global gradient norm: LSTMs on noisy targets see occasional gradient spikes.
    grad_clip: float = 1.0
    # Validation needs no gradients, so it takes bigger batches.
    eval_batch_size: int = 8192
    # Rows the baselines fit on at most (a seeded sample): lbfgs time grows with rows and a
    # linear model on a few dozen inputs gains nothing from more.
    baseline_max_rows: int = 200_000


@dataclasses.dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    metrics: dict[str, Any]  # as in metrics.json: validation metrics of the restored model
    history: list[dict[str, float]]  # as in training_history.json: one dict per epoch run
    n_train: int
    n_val: int
    device: str
    wall_seconds: float


def train_window(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    feature_columns: Sequence[str],
    settings: TrainingSettings,
    horizon: int,
    out_dir: Path,
    logger: logging.Logger | None = None,
    loop: LoopConfig = LoopConfig(),
    on_epoch_end: Callable[[int], None] | None = None,
) -> TrainResult:
    """Trains the window's multi-task LSTM and writes its folder.

    Parameters
    ----------
    features, labels : pd.DataFrame
        The window's frames: key columns (ts, session_date, symbol, bar_index), one row per
        bar per symbol per session, sorted by symbol, ts; ``labels`` holds the three label
        columns of ``horizon``.
    feature_columns : Sequence[str]
        Model inputs, in order.
    settings : TrainingSettings
        Model size, loop, split and device settings; all are recorded in model_config.json.
    horizon : int
        Label horizon in bars.
    out_dir : Path
        The window folder; replaced as a whole once every file is written. The loop's
        checkpoint lives beside it in ``.<name>.checkpoint.pt`` until then: a run that finds
        one written for the same settings and data resumes from it; one for other settings
        or data is ignored with a warning and overwritten.
    logger : logging.Logger, optional
        Receives one line per epoch; defaults to this module's logger.
    loop : LoopConfig, optional
        Warm-up, patience, clipping and evaluation batch size.
    on_epoch_end : Callable[[int], None], optional
        Called with the epoch number once the epoch's checkpoint is written (progress
        reporting; tests raise from it to kill a run at a known point).

    Returns
    -------
    TrainResult
    """
    started = time.perf_counter()
    logger = logger or logging.getLogger(__name__)
    check_settings(settings)
    device = resolve_device(settings.device)

    # 1. Rows, sequences, and the chronological split with purge and embargo.
    arrays = build_window_arrays(features, labels, feature_columns, horizon, settings.context)
    split = chronological_split(arrays, settings.validation_fraction, settings.embargo_bars)
    check_split(arrays, split)
    logger.info(
        "window %s..%s, %d symbols, %d rows: %d train / %d validation sequences "
        "(%d purged, %d embargoed), device %s",
        arrays.session_dates[0], arrays.session_dates[-1], len(arrays.symbols),
        len(arrays.ts), len(split.train_ends), len(split.val_ends), split.n_purged,
        split.n_embargoed, device_name(device),
    )  # fmt: skip

    # 2. Scaler from the training part; scaled rows and targets go onto the device once.
    scaler = fit_scaler(arrays, split)
    scaled = scaler.transform(arrays.features)  # (n_rows, n_features) float32
    tensors = to_tensors(arrays, scaled, scaler, device)
    weights = class_weights(arrays.direction[split.train_ends])

    # 3. The loop, seeded and checkpointed each epoch; the best epoch's weights come back.
    checkpoint = Checkpoint(
        checkpoint_path(out_dir), run_fingerprint(arrays, split, settings, loop)
    )
    config = ModelConfig(
        n_features=len(feature_columns),
        hidden_size=settings.hidden_size,
        num_layers=settings.num_layers,
        dropout=settings.dropout,
        context=settings.context,
        horizon=horizon,
    )
    with deterministic(device):
        torch.manual_seed(settings.seed)  # initial weights and dropout masks (CPU and CUDA)
        model = LstmMultitask(config).to(device)
        history = fit(
            model, tensors, split, weights, settings, loop, logger, checkpoint, on_epoch_end
        )

    # 4. Validation metrics of the restored model, and the baselines on the same split.
    metrics = validation_metrics(model, tensors, arrays, split, scaler, weights, settings, loop)
    metrics.update(best_epoch_summary(history))
    baselines = baseline_document(arrays, split, scaled, settings.seed, loop)
    for name, values in baselines["validation"].items():
        for key in ("accuracy", "macro_f1", "log_loss", "ic"):
            metrics[f"{name}_{key}"] = values[key]
    logger.info(
        "validation: accuracy %.4f (naive %.4f, logistic %.4f), macro-F1 %.4f, IC %.4f",
        metrics["accuracy"], metrics["baseline_naive_accuracy"],
        metrics["baseline_logistic_accuracy"], metrics["macro_f1"], metrics["ic"],
    )  # fmt: skip

    # 5. The folder, all files or none.
    with atomic_directory(Path(out_dir)) as folder:
        state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
        torch.save(state, folder / "model.pt")
        save_model_config(
            config, folder / "model_config.json",
            **run_description(arrays, split, settings, weights, device),
        )  # fmt: skip
        scaler.save(folder / "scaler.json")
        write_json(folder / "metrics.json", metrics)
        write_json(folder / "training_history.json", history)
        write_json(folder / "baselines.json", baselines)
    checkpoint.remove()
    return TrainResult(
        out_dir=Path(out_dir),
        metrics=metrics,
        history=history,
        n_train=len(split.train_ends),
        n_val=len(split.val_ends),
        device=device_name(device),
        wall_seconds=time.perf_counter() - started,
    )


def fit(
    model: LstmMultitask,
    tensors: SequenceTensors,
    split: Split,
    weights: np.ndarray,
    settings: TrainingSettings,
    loop: LoopConfig,
    logger: logging.Logger,
    checkpoint: Checkpoint | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
) -> list[dict[str, float]]:
    """Runs the epochs with early stopping; leaves the best epoch's weights in ``model``.

    With a ``checkpoint``, starts from its matching file when there is one and writes it
    after every epoch.
    """
    device = tensors.windows.device
    rng = np.random.default_rng(settings.seed)  # draws each epoch's sequences
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    weight_tensor = torch.as_tensor(weights, dtype=torch.float32, device=device)
    per_epoch = epoch_size(len(split.train_ends), settings.max_train_sequences)
    total_steps = settings.epochs * math.ceil(per_epoch / settings.batch_size)
    warmup_steps = max(1, int(loop.warmup_fraction * total_steps))
    state = checkpoint.resume(model, optimizer, rng, logger) if checkpoint else LoopState()
    while state.epoch < settings.epochs and not state.stopped:
        epoch = state.epoch + 1
        epoch_started = time.perf_counter()
        order = torch.from_numpy(epoch_sequences(split.train_ends, per_epoch, rng)).to(device)
        model.train()
        running = torch.zeros((), device=device)
        for first in range(0, len(order), settings.batch_size):
            lr = learning_rate_at(
                state.step, total_steps, warmup_steps, settings.learning_rate, loop.min_lr_fraction
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, direction, forward_return, volatility = sequence_batch(
                tensors, order[first : first + settings.batch_size]
            )  # x: (batch, context, n_features)
            with autocast(device):
                outputs = model(x)
            terms = loss_terms(outputs, (direction, forward_return, volatility), weight_tensor)
            loss = combine_loss(
                terms, settings.return_loss_weight, settings.volatility_loss_weight
            )["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), loop.grad_clip)
            optimizer.step()
            running += loss.detach() * len(x)
            state.step += 1
        train_loss = float(running) / len(order)
        train_seconds = time.perf_counter() - epoch_started
        validation = evaluate_loss(model, tensors, split.val_ends, weight_tensor, settings, loop)
        state.history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": validation["loss"],
                "val_cross_entropy": validation["cross_entropy"],
                "val_return_mse": validation["return_mse"],
                "val_volatility_mse": validation["volatility_mse"],
                "lr": lr,
                "seconds": time.perf_counter() - epoch_started,
                "sequences_per_second": len(order) / train_seconds,
                "train_sequences": len(order),
            }
        )
        logger.info(
            "epoch %d/%d train loss %.4f val loss %.4f lr %.2e %.0f seq/s %.1f s",
            epoch, settings.epochs, train_loss, validation["loss"], lr,
            len(order) / train_seconds, state.history[-1]["seconds"],
        )  # fmt: skip
        if validation["loss"] < state.best_loss:
            state.best_loss, state.stale_epochs = validation["loss"], 0
            state.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            state.stale_epochs += 1
            state.stopped = state.stale_epochs >= loop.patience
            if state.stopped:
                logger.info("early stop: no lower validation loss for %d epochs", loop.patience)
        state.epoch = epoch
        if checkpoint is not None:
            checkpoint.save(state, model, optimizer, rng)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    model.eval()
    return state.history


def learning_rate_at(
    step: int, total_steps: int, warmup_steps: int, peak: float, min_fraction: float
) -> float:
    """Linear warm-up to ``peak`` over ``warmup_steps``, then cosine decay to
    ``min_fraction * peak`` at ``total_steps`` (nanoGPT's schedule)."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    floor = min_fraction * peak
    return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (peak - floor)


def epoch_size(n_train: int, max_train_sequences: int) -> int:
    return min(n_train, max_train_sequences) if max_train_sequences > 0 else n_train


def epoch_sequences(train_ends: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A shuffled epoch: all training sequences, or ``size`` of them drawn without
    replacement when ``max_train_sequences`` caps the epoch."""
    if size >= len(train_ends):
        return rng.permutation(train_ends)
    return rng.choice(train_ends, size=size, replace=False)


@torch.no_grad()
def evaluate_loss(
    model: LstmMultitask,
    tensors: SequenceTensors,
    ends: np.ndarray,
    class_weight: torch.Tensor,
    settings: TrainingSettings,
    loop: LoopConfig,
) -> dict[str, float]:
    """The training loss and its parts over the sequences ending at ``ends``."""
    model.eval()
    device = tensors.windows.device
    totals: dict[str, torch.Tensor] = {}
    for first in range(0, len(ends), loop.eval_batch_size):
        batch_ends = torch.from_numpy(ends[first : first + loop.eval_batch_size]).to(device)
        x, direction, forward_return, volatility = sequence_batch(tensors, batch_ends)
        with autocast(device):
            outputs = model(x)
        terms = loss_terms(outputs, (direction, forward_return, volatility), class_weight)
        totals = {k: totals.get(k, 0) + v for k, v in terms.items()}
    return {
        name: float(value)
        for name, value in combine_loss(
            totals, settings.return_loss_weight, settings.volatility_loss_weight
        ).items()
    }


def validation_metrics(
    model: LstmMultitask,
    tensors: SequenceTensors,
    arrays: WindowArrays,
    split: Split,
    scaler: Scaler,
    weights: np.ndarray,
    settings: TrainingSettings,
    loop: LoopConfig,
) -> dict[str, Any]:
    """Accuracy, macro-F1, log-loss, IC (return and volatility) and losses on validation."""
    device = tensors.windows.device
    bf16 = torch.bfloat16 if device.type == "cuda" else None
    proba, scaled_return, scaled_volatility = predict_sequences(
        model, tensors, split.val_ends, loop.eval_batch_size, bf16
    )
    ends = split.val_ends
    metrics = score_predictions(
        arrays.direction[ends], proba, scaled_return * scaler.return_scale,
        arrays.forward_return[ends],
    )  # fmt: skip
    metrics["volatility_ic"] = information_coefficient(scaled_volatility, arrays.volatility[ends])
    class_weight = torch.as_tensor(weights, dtype=torch.float32, device=device)
    metrics.update(evaluate_loss(model, tensors, ends, class_weight, settings, loop))
    metrics["n_val"] = len(split.val_ends)
    metrics["n_train"] = len(split.train_ends)
    metrics["n_purged"] = split.n_purged
    metrics["n_embargoed"] = split.n_embargoed
    return metrics


def best_epoch_summary(history: list[dict[str, float]]) -> dict[str, float]:
    best = min(history, key=lambda row: row["val_loss"])
    return {
        "best_epoch": best["epoch"],
        "best_train_loss": best["train_loss"],
        "epochs_run": len(history),
        "train_sequences_per_second": float(
            np.mean([row["sequences_per_second"] for row in history])
        ),
    }


def baseline_document(
    arrays: WindowArrays, split: Split, scaled: np.ndarray, seed: int, loop: LoopConfig
) -> dict[str, Any]:
    """baselines.json: the fitted numbers and their validation metrics."""
    train_ends = split.train_ends
    if len(train_ends) > loop.baseline_max_rows:
        rng = np.random.default_rng(seed)
        train_ends = np.sort(rng.choice(train_ends, size=loop.baseline_max_rows, replace=False))
    fitted = fit_baselines(
        scaled[train_ends], arrays.direction[train_ends], arrays.forward_return[train_ends]
    )
    predictions = apply_baselines(fitted, scaled[split.val_ends])
    y_true = arrays.direction[split.val_ends]
    realized = arrays.forward_return[split.val_ends]
    return {
        "input": "scaled features (scaler.json) of each sequence's last bar",
        "feature_columns": list(arrays.feature_columns),
        "classes": list(DIRECTION_CLASSES),
        **fitted,
        "n_train_rows": len(train_ends),
        "validation": {
            "baseline_naive": score_predictions(
                y_true, predictions["naive_proba"], predictions["naive_return"], realized
            ),
            "baseline_logistic": score_predictions(
                y_true, predictions["logistic_proba"], predictions["ridge_return"], realized
            ),
        },
    }


def run_description(
    arrays: WindowArrays,
    split: Split,
    settings: TrainingSettings,
    weights: np.ndarray,
    device: torch.device,
) -> dict[str, Any]:
    """Everything model_config.json records next to the model's own config."""
    return {
        "feature_columns": list(arrays.feature_columns),
        "horizon": arrays.horizon,
        "label_columns": list(label_columns(arrays.horizon)),
        "direction_classes": list(DIRECTION_CLASSES),
        "training": dataclasses.asdict(settings),
        "window_start": arrays.session_dates[0],
        "window_end": arrays.session_dates[-1],
        "session_dates": list(arrays.session_dates),
        "symbols": list(arrays.symbols),
        "n_rows": len(arrays.ts),
        "n_train_sequences": len(split.train_ends),
        "n_val_sequences": len(split.val_ends),
        "n_purged": split.n_purged,
        "n_embargoed": split.n_embargoed,
        "validation_start_ts": split.validation_start_ts,
        "class_weights": [float(w) for w in weights],
        "device": device_name(device),
        "torch_version": torch.__version__,
    }


def check_settings(settings: TrainingSettings) -> None:
    if settings.model_kind != MODEL_KIND:
        raise ValueError(
            f"model_kind={settings.model_kind!r} is not trained by this module; "
            f"set HFT_MODEL_KIND={MODEL_KIND}"
        )
    for name in ("epochs", "batch_size", "context", "hidden_size", "num_layers"):
        if getattr(settings, name) < 1:
            raise ValueError(
                f"training setting {name} must be >= 1, found {getattr(settings, name)}"
            )
    if settings.learning_rate <= 0:
        raise ValueError(f"learning_rate must be > 0, found {settings.learning_rate}")
    if settings.max_train_sequences < 0:
        raise ValueError(f"max_train_sequences must be >= 0, found {settings.max_train_sequences}")


def check_split(arrays: WindowArrays, split: Split) -> None:
    window = f"window {arrays.session_dates[0]}..{arrays.session_dates[-1]}"
    if len(arrays.ends) == 0:
        raise ValueError(
            f"{window}: no sequence of {arrays.context} bars with labels fits in a session "
            f"({len(arrays.ts)} rows); lower `context` or check the labels"
        )
    for name, ends in (("training", split.train_ends), ("validation", split.val_ends)):
        if len(ends) == 0:
            raise ValueError(
                f"{window}: no {name} sequences out of {len(arrays.ends)} (purged "
                f"{split.n_purged}, embargoed {split.n_embargoed}); change validation_fraction "
                "or embargo_bars, or train on more days"
            )


def resolve_device(name: str) -> torch.device:
    """Maps the ``device`` setting to a torch device: auto = CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available; set HFT_DEVICE=auto or cpu")
    return device


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (LSTM and linear layers in bf16, the loss in float32)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels where that is cheap, restoring the previous state afterwards.

    On CPU every op the loop uses has a deterministic kernel, so the flag costs nothing and
    identical inputs give identical weights. On CUDA the strict flag would need
    CUBLAS_WORKSPACE_CONFIG set before CUDA starts; only cuDNN is pinned there.
    """
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[2:]


def write_json(path: Path, payload: Any) -> None:
    """JSON with NaN/inf written as null, so any JSON reader takes the file."""
    path.write_text(json.dumps(finite_or_none(payload), indent=2))


def finite_or_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(item) for item in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
