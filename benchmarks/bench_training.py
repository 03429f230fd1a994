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
CUDA when present unless ``--device`` says otherwise; its name is printed. Figures are
printed, never asserted.
"""

import argparse
import dataclasses
import logging
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
    args = parser.parse_args()
    days, epochs = (1, 1) if args.quick else (args.days, args.epochs)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads")

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
            bench(f"{kind} {label}", data, settings)


def bench(label: str, data, settings: TrainingSettings) -> None:
    logging.getLogger("hft_pipeline.training").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="hft_bench_train_") as home:
        result = train_window(
            data.features, data.labels, data.feature_columns, settings, data.horizon,
            Path(home) / "window",
        )  # fmt: skip
    epoch_seconds = [row["seconds"] for row in result.history]
    rates = [row["sequences_per_second"] for row in result.history]
    shown = SHOWN[settings.model_kind]
    shape = {k: v for k, v in dataclasses.asdict(settings).items() if k in shown}
    print(
        f"{label}: {shape}\n"
        f"    {result.n_train} train / {result.n_val} val sequences, "
        f"{len(result.history)} epochs: {min(rates):,.0f}..{max(rates):,.0f} train seq/s, "
        f"{sum(epoch_seconds) / len(epoch_seconds):.1f} s/epoch (incl. validation), "
        f"window wall {result.wall_seconds:.1f} s",
        flush=True,
    )


if __name__ == "__main__":
    main()
