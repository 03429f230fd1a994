"""Wall time of the whole graph on the demo configuration, per asset, on this machine.

Usage: .venv/bin/python benchmarks/bench_pipeline.py [--home DIR]
Prints the simulation time, each materialization's time and the total per asset.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import dagster as dg

from hft_pipeline.cli import DEMO_END, DEMO_OVERRIDES, DEMO_START, DEMO_SYMBOLS
from hft_pipeline.config import PipelineSettings
from hft_pipeline.runner import materialize_range
from hft_pipeline.simulate import simulate_bucket


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, default=Path(tempfile.mkdtemp(prefix="hft_bench_")))
    args = parser.parse_args()
    settings = PipelineSettings.load(
        {"HFT_HOME": str(args.home), "HFT_CONFIG": os.devnull}
    ).with_overrides(**DEMO_OVERRIDES)

    started = time.perf_counter()
    archives = simulate_bucket(args.home / "bucket", DEMO_START, DEMO_END, DEMO_SYMBOLS, seed=0)
    print(f"simulate: {len(archives)} archives in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    with dg.instance_for_test() as instance:
        materialize_range(settings, DEMO_START, DEMO_END, instance)
    print(f"whole graph {DEMO_START}..{DEMO_END}: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
