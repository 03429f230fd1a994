"""Per-epoch checkpoints of the training loop, so a killed run resumes where it stopped.

A checkpoint is a plain dict (nanoGPT style) written with ``torch.save`` after every epoch and
read back with ``torch.load(..., weights_only=True)``: tensors, numbers, strings, lists and
dicts only. It lives in a hidden file beside the window folder,
``<parent>/.<window>.checkpoint.pt``, because the window folder itself is only created by the
final atomic rename. It holds:

- ``format``: CHECKPOINT_FORMAT; ``fingerprint``: hash of the settings, loop config, torch
  version and the window's data (see :func:`run_fingerprint`);
- ``model``, ``optimizer``: state dicts; ``best_state``: the best epoch's weights (or None);
- ``epoch`` (last completed), ``step`` (optimizer steps so far, which fix the learning rate),
  ``best_loss``, ``stale_epochs``, ``stopped`` (early stop reached), ``history``;
- ``rng``: torch's CPU generator state (and the training card's, on CUDA), numpy's global
  state, and the state of the generator that draws each epoch's sequences.

Restoring all of that makes a resumed run continue bit for bit like an uninterrupted one on
CPU. A checkpoint whose fingerprint differs is ignored with a warning, never mixed in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hft_pipeline.config import TrainingSettings
from hft_pipeline.layout import atomic_file
from hft_pipeline.training.dataset import Split, WindowArrays

if TYPE_CHECKING:
    from hft_pipeline.training.loop import LoopConfig

# Raised whenever the payload's layout changes, so an older file is ignored, never misread.
CHECKPOINT_FORMAT = 2


@dataclasses.dataclass
class LoopState:
    """What the loop carries from one epoch to the next; all of it goes into the checkpoint."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken; the learning-rate schedule is a function of it
    best_loss: float = math.inf
    best_state: dict[str, torch.Tensor] | None = None
    stale_epochs: int = 0  # epochs since the validation loss last fell
    stopped: bool = False  # early stopping reached: a resumed run trains no further
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)


def checkpoint_path(out_dir: Path) -> Path:
    """The window's checkpoint: hidden, beside the folder the final rename creates."""
    out_dir = Path(out_dir)
    return out_dir.with_name(f".{out_dir.name}.checkpoint.pt")


def run_fingerprint(
    arrays: WindowArrays, split: Split, settings: TrainingSettings, loop: LoopConfig
) -> str:
    """SHA-256 of everything that decides the trained weights: settings, loop config, torch
    version, the window's shape and the bytes of its inputs, targets and split."""
    digest = hashlib.sha256()
    described = {
        "settings": dataclasses.asdict(settings),
        "loop": dataclasses.asdict(loop),
        "torch": torch.__version__,
        "feature_columns": list(arrays.feature_columns),
        "context": arrays.context,
        "horizons": list(arrays.horizons),
        "shape": list(arrays.features.shape),
        "symbols": list(arrays.symbols),
        "session_dates": list(arrays.session_dates),
    }
    digest.update(json.dumps(described, sort_keys=True, default=str).encode())
    for array in (
        arrays.features, arrays.directions, arrays.forward_returns, arrays.volatilities,
        arrays.ts, split.train_ends, split.val_ends,
    ):  # fmt: skip
        digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """One run's checkpoint file and the fingerprint a file must carry to be resumed."""

    path: Path
    fingerprint: str

    def save(
        self,
        state: LoopState,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        sampler: np.random.Generator,
    ) -> None:
        """Writes the checkpoint atomically: a kill mid-write leaves the previous one."""
        payload = {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.fingerprint,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "best_state": state.best_state,
            "epoch": state.epoch,
            "step": state.step,
            "best_loss": state.best_loss,
            "stale_epochs": state.stale_epochs,
            "stopped": state.stopped,
            "history": state.history,
            "rng": rng_states(sampler, parameter_device(model)),
        }
        with atomic_file(self.path) as temporary:
            torch.save(payload, temporary)

    def resume(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        sampler: np.random.Generator,
        logger: logging.Logger,
    ) -> LoopState:
        """Restores model, optimizer and RNGs from a matching checkpoint and returns the
        loop state; returns a fresh LoopState when there is none or it does not match."""
        payload = self.load(logger)
        if payload is None:
            return LoopState()
        device = parameter_device(model)
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        restore_rng_states(payload["rng"], sampler, device)
        best_state = payload["best_state"]
        if best_state is not None:
            best_state = {name: tensor.to(device) for name, tensor in best_state.items()}
        logger.info("resuming from %s after epoch %d", self.path, payload["epoch"])
        return LoopState(
            epoch=payload["epoch"],
            step=payload["step"],
            best_loss=payload["best_loss"],
            best_state=best_state,
            stale_epochs=payload["stale_epochs"],
            stopped=payload["stopped"],
            history=payload["history"],
        )

    def load(self, logger: logging.Logger) -> dict[str, Any] | None:
        """The checkpoint's dict if the file exists, reads and matches this run, else None."""
        if not self.path.exists():
            return None
        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, pickle.UnpicklingError) as error:
            logger.warning("ignoring unreadable checkpoint %s (%s); training from scratch",
                           self.path, error)  # fmt: skip
            return None
        found = (payload.get("format"), payload.get("fingerprint"))
        if found != (CHECKPOINT_FORMAT, self.fingerprint):
            logger.warning(
                "ignoring checkpoint %s: it was written for other settings or data "
                "(format %s, fingerprint %.12s, this run %.12s); training from scratch",
                self.path, found[0], found[1], self.fingerprint,
            )  # fmt: skip
            return None
        return payload

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def parameter_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def rng_states(sampler: np.random.Generator, device: torch.device) -> dict[str, Any]:
    """Every random state the loop draws from, as tensors and plain types. Only a CUDA run
    asks CUDA for its card's state: a CPU run never initializes CUDA, even where it exists."""
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),  # MT19937 words, (624,)
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "sampler": sampler.bit_generator.state,  # PCG64: nested dict of ints
    }


def restore_rng_states(
    states: dict[str, Any], sampler: np.random.Generator, device: torch.device
) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)
    numpy = states["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy["keys"].numpy().astype(np.uint32),
            numpy["position"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    sampler.bit_generator.state = states["sampler"]
