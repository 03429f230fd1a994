"""Training throughput of one window: sequences per second and wall time, per configuration.

Usage: .venv/bin/python benchmarks/bench_training.py [--quick] [--epochs N] [--device D]

A real window (30 days of 1-s bars) does not fit a small CPU machine, so the data is a
synthetic window of ``--days`` sessions (default 5) of 6.5 h of 5-s bars (4,680 bars) for two
symbols with as many features as the model reads (MODEL_FEATURES), horizon 12 bars. Two
configurations run on it: the defaults (``TrainingSettings()``: context 120, hidden 64, two
layers, batch 512) and the demo's (context 60, hidden 32, one layer, batch 256). Each trains
``--epochs`` epochs (default 1: throughput, not convergence; a full run takes about 2 min
on two CPU cores); ``--quick`` runs 1 day and 1 epoch (about 25 s). The device is CUDA when
present unless ``--device`` says otherwise; its name is printed. Figures are printed, never
asserted.
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
from hft_pipeline.training.train import resolve_device, train_window  # noqa: E402
from hft_pipeline_tests.training.synthetic import make_window  # noqa: E402

BARS_PER_SESSION = 4_680  # 6.5 h of 5-s bars
HORIZON = 12
DEMO = dict(context=60, hidden_size=32, num_layers=1, batch_size=256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 day, 1 epoch")
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = parser.parse_args()
    days, epochs = (1, 1) if args.quick else (args.days, args.epochs)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads")

    started = time.perf_counter()
    data = make_window(
        days=days, bars=BARS_PER_SESSION, n_features=len(MODEL_FEATURES), horizon=HORIZON
    )
    print(
        f"window: {days} days x 2 symbols x {BARS_PER_SESSION} bars = {len(data.features)} rows, "
        f"{len(MODEL_FEATURES)} features (built in {time.perf_counter() - started:.1f} s)"
    )
    for label, overrides in (("default", {}), ("demo", DEMO)):
        settings = TrainingSettings(epochs=epochs, device=str(device), **overrides)
        bench(label, data, settings)


def bench(label: str, data, settings: TrainingSettings) -> None:
    logging.getLogger("hft_pipeline.training").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="hft_bench_train_") as home:
        result = train_window(
            data.features, data.labels, data.feature_columns, settings, data.horizon,
            Path(home) / "window",
        )  # fmt: skip
    epoch_seconds = [row["seconds"] for row in result.history]
    rates = [row["sequences_per_second"] for row in result.history]
    shape = {k: v for k, v in dataclasses.asdict(settings).items() if k in SHOWN}
    print(
        f"{label:8s} {shape}\n"
        f"         {result.n_train} train / {result.n_val} val sequences, "
        f"{len(result.history)} epochs: {min(rates):,.0f}..{max(rates):,.0f} train seq/s, "
        f"{sum(epoch_seconds) / len(epoch_seconds):.1f} s/epoch (incl. validation), "
        f"window wall {result.wall_seconds:.1f} s"
    )


SHOWN = ("context", "hidden_size", "num_layers", "batch_size", "epochs")


if __name__ == "__main__":
    main()
