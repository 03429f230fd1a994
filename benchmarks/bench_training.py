"""Training throughput of one window: sequences per second and wall time, per configuration.

Usage: .venv/bin/python benchmarks/bench_training.py [--quick] [--epochs N] [--device D]
       [--model lstm_multitask|lob_transformer|all] [--config default|demo|all]

A real window (30 days of 1-s bars) does not fit a small CPU machine, so the data is a
synthetic window of ``--days`` sessions (default 5) of 6.5 h of 5-s bars (4,680 bars) for two
symbols with the model's inputs (MODEL_FEATURES: as many plain features, and the same book
levels, so the lob_transformer sees its tokens), horizon 12 bars. Two configurations run per
model kind: the defaults (``TrainingSettings()``: context 120, batch 512, LSTM hidden 64 x 2
layers, transformer d_model 64 x 2 layers x 4 heads) and the demo's (context 60, batch 256,
LSTM hidden 32 x 1 layer, transformer d_model 32 x 1 layer). Each trains ``--epochs`` epochs
(default 1: throughput, not convergence); ``--quick`` runs 1 day and 1 epoch. The device is
CUDA when present unless ``--device`` says otherwise (``--device cuda`` runs the same code on
the card: bf16 autocast, data on the device); its name is printed. ``--repeat N`` trains each
configuration N times and keeps the fastest run (a shared machine's figures vary by 2-4x with
the load, which is printed; ``--threads 1`` suffers least from it). Figures are printed,
never asserted.

Each configuration also prints an EXTRAPOLATION, not a measurement: the time of one epoch of a
full roll30 window of 1-second bars for one symbol (30 sessions x 82,800 bars of the 23-h CME
session) at the rates just measured, and the training rate that 10 epochs in 10 minutes (the
issue's goal on one H100) would need.
"""

import argparse
import dataclasses
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the synthetic test windows

from hft_pipeline.config import TrainingSettings  # noqa: E402
from hft_pipeline.features.registry import MODEL_FEATURES  # noqa: E402
from hft_pipeline.training.lob_transformer import book_layout  # noqa: E402
from hft_pipeline.training.loop import resolve_device  # noqa: E402
from hft_pipeline.training.model import MODEL_KINDS  # noqa: E402
from hft_pipeline.training.train import train_window  # noqa: E402
from hft_pipeline_tests.training.synthetic import make_window  # noqa: E402

BARS_PER_SESSION = 4_680  # 6.5 h of 5-s bars
HORIZON = 12
# The extrapolated window: roll30 of 1-s bars of one symbol over the 23-h CME session.
ROLL30_SESSIONS, ROLL30_BARS = 30, 82_800
GOAL_EPOCHS, GOAL_SECONDS = 10, 600
DEFAULT_EPOCHS = TrainingSettings().epochs
CONFIGS = {
    "default": {},
    "demo": dict(
        context=60, hidden_size=32, num_layers=1, d_model=32, transformer_layers=1, batch_size=256
    ),
}
SHOWN = {
    "lstm_multitask": ("context", "hidden_size", "num_layers", "batch_size", "epochs"),
    "lob_transformer": (
        "context", "d_model", "attention_heads", "transformer_layers", "batch_size", "epochs",
    ),
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 day, 1 epoch")
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--model", choices=[*sorted(MODEL_KINDS), "all"], default="all")
    parser.add_argument("--config", choices=[*CONFIGS, "all"], default="all")
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration, best kept")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)"
    )
    args = parser.parse_args()
    if args.threads:
        # On a loaded machine fewer threads than cores avoid OpenMP's spin-waits (2-4x slower).
        torch.set_num_threads(args.threads)
    days, epochs = (1, 1) if args.quick else (args.days, args.epochs)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"device {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )

    started = time.perf_counter()
    book_levels = book_layout(MODEL_FEATURES).n_tokens // 2
    data = make_window(
        days=days,
        bars=BARS_PER_SESSION,
        n_features=len(MODEL_FEATURES) - 4 * book_levels,
        horizon=HORIZON,
        book_levels=book_levels,
    )
    print(
        f"window: {days} days x 2 symbols x {BARS_PER_SESSION} bars = {len(data.features)} rows, "
        f"{len(data.feature_columns)} features ({book_levels} book levels; built in "
        f"{time.perf_counter() - started:.1f} s)"
    )
    kinds = sorted(MODEL_KINDS) if args.model == "all" else [args.model]
    configs = list(CONFIGS) if args.config == "all" else [args.config]
    for kind in kinds:
        for label in configs:
            settings = TrainingSettings(
                model_kind=kind, epochs=epochs, device=str(device), **CONFIGS[label]
            )
            bench(f"{kind} {label}", data, settings, args.repeat)


def bench(label: str, data, settings: TrainingSettings, repeat: int) -> None:
    logging.getLogger("hft_pipeline.training").setLevel(logging.WARNING)
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="hft_bench_train_") as home:
            runs.append(
                train_window(
                    data.features,
                    data.labels,
                    data.feature_columns,
                    settings,
                    data.horizon,
                    Path(home) / "window",
                )
            )
    result = max(runs, key=lambda run: max(row["sequences_per_second"] for row in run.history))
    best = max(result.history, key=lambda row: row["sequences_per_second"])
    train_rate = best["sequences_per_second"]
    # An epoch's seconds cover training and the validation pass; the rest is validation.
    validation_seconds = best["seconds"] - best["train_sequences"] / train_rate
    validation_rate = result.n_val / validation_seconds
    shown = SHOWN[settings.model_kind]
    shape = {k: v for k, v in dataclasses.asdict(settings).items() if k in shown}
    print(
        f"{label}: {shape}\n"
        f"    measured (best of {repeat}): {result.n_train} train / {result.n_val} val "
        f"sequences, {len(result.history)} epoch(s): {train_rate:,.0f} train seq/s, "
        f"{validation_rate:,.0f} validation seq/s, {best['seconds']:.1f} s/epoch (incl. "
        f"validation), window wall {result.wall_seconds:.1f} s (incl. data, baselines, files)",
        flush=True,
    )
    print_extrapolation(settings, train_rate, validation_rate)


def print_extrapolation(
    settings: TrainingSettings, train_rate: float, validation_rate: float
) -> None:
    """One epoch of a roll30 window of 1-s bars at the measured rates (not a measurement)."""
    per_session = ROLL30_BARS - settings.context + 1 - HORIZON  # sequences with labels
    sequences = ROLL30_SESSIONS * per_session
    n_val = round(settings.validation_fraction * sequences)
    n_train = sequences - n_val
    if settings.max_train_sequences:
        n_train = min(n_train, settings.max_train_sequences)
    epoch_seconds = n_train / train_rate + n_val / validation_rate
    needed = GOAL_EPOCHS * n_train / (GOAL_SECONDS - GOAL_EPOCHS * n_val / validation_rate)
    goal = (
        f"{needed:,.0f} train seq/s"
        if needed > 0
        else "more than this validation rate allows (validation alone exceeds it)"
    )
    print(
        f"    EXTRAPOLATION, not measured: roll30 window of 1-s bars, 1 symbol "
        f"({ROLL30_SESSIONS} x {ROLL30_BARS:,} bars): {n_train:,} train + {n_val:,} val "
        f"sequences -> ~{epoch_seconds / 60:,.1f} min/epoch at these rates, "
        f"{DEFAULT_EPOCHS * epoch_seconds / 3600:,.1f} h for the default {DEFAULT_EPOCHS} epochs; "
        f"{GOAL_EPOCHS} epochs in {GOAL_SECONDS // 60} min would need {goal}",
        flush=True,
    )


if __name__ == "__main__":
    main()
