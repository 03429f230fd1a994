"""The training loop of any model kind: AdamW, warm-up then cosine decay, gradient clipping,
early stopping on the validation loss, bf16 autocast on CUDA, a checkpoint each epoch.

The loop knows a model only through ``model.objective_terms(x, targets, class_weight)``, the
loss's sums over a batch (see model.py), so every kind trains with the same code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch

from hft_pipeline.config import TrainingSettings
from hft_pipeline.training.checkpoint import Checkpoint, LoopState
from hft_pipeline.training.dataset import SequenceTensors, Split, sequence_batch
from hft_pipeline.training.heads import LossWeights, combine_loss
from hft_pipeline.training.lob_transformer import attention_fast_path_off
from hft_pipeline.training.model import AnyModel


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


def loss_weights(settings: TrainingSettings) -> LossWeights:
    return LossWeights(
        return_weight=settings.return_loss_weight,
        volatility_weight=settings.volatility_loss_weight,
        book_forecast_weight=settings.book_forecast_weight,
        structural_weight=settings.structural_loss_weight,
    )


def fit(
    model: AnyModel,
    tensors: SequenceTensors,
    split: Split,
    weights: np.ndarray,
    settings: TrainingSettings,
    loop: LoopConfig,
    logger: logging.Logger,
    checkpoint: Checkpoint | None = None,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Runs the epochs with early stopping; leaves the best epoch's weights in ``model``.

    With a ``checkpoint``, starts from its matching file when there is one and writes it
    after every epoch.
    """
    device = tensors.windows.device
    rng = np.random.default_rng(settings.seed)  # draws each epoch's sequences
    # The fused kernel updates every parameter in one launch on CUDA; CPU keeps the default.
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=settings.learning_rate,
        weight_decay=settings.weight_decay,
        fused=True if device.type == "cuda" else None,
    )
    class_weight = torch.as_tensor(weights, dtype=torch.float32, device=device)
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
            x, *targets = sequence_batch(tensors, order[first : first + settings.batch_size])
            with autocast(device):  # x: (batch, context, n_features)
                terms = model.objective_terms(x, tuple(targets), class_weight)
            loss = combine_loss(terms, loss_weights(settings))["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), loop.grad_clip)
            optimizer.step()
            running += loss.detach() * len(x)
            state.step += 1
        train_loss = float(running) / len(order)
        train_seconds = time.perf_counter() - epoch_started
        validation = evaluate_loss(model, tensors, split.val_ends, class_weight, settings, loop)
        state.history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                **{f"val_{name}": value for name, value in validation.items()},
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
            on_epoch_end(state.history[-1])
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
    model: AnyModel,
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
        x, *targets = sequence_batch(tensors, batch_ends)
        with autocast(device), attention_fast_path_off():
            terms = model.objective_terms(x, tuple(targets), class_weight)
        totals = {k: totals.get(k, 0) + v for k, v in terms.items()}
    combined = combine_loss(totals, loss_weights(settings))
    return {name: float(value) for name, value in combined.items()}


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
    """bf16 autocast on CUDA (recurrent, attention and linear layers in bf16, the loss in
    float32)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels where that is cheap, restoring the previous state afterwards.

    On CPU every op the loop uses has a deterministic kernel, so identical inputs give
    identical weights. The flag also fills every new tensor with NaN, a guard against reads
    of uninitialized memory that none of the loop's ops make; that fill took ~8% of an epoch's
    CPU time, so it is switched off. On CUDA the strict flag would need
    CUBLAS_WORKSPACE_CONFIG set before CUDA starts; only cuDNN is pinned there.
    """
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.utils.deterministic.fill_uninitialized_memory,
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
        torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.utils.deterministic.fill_uninitialized_memory = previous[2]
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[3:]
