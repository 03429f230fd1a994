"""Ingest throughput and peak memory: our SLIM build vs databento's DBNStore.to_parquet.

For each ``--events-per-second`` rate (20 gives ~2 M records in the main UTC day's ZIP, 60 gives
~6 M), simulates one ES trading day of MBP-10 in a subprocess, so the simulator's own peak is
not counted, then runs, each in a fresh subprocess reporting its own ``ru_maxrss``:
(a) ``build_slim_day`` on that ZIP for the session, with ``--memory-mb`` as its bound;
(b) ``databento.DBNStore.from_file(<the .dbn.zst member>).to_parquet(path)``.
Peak RSS includes the interpreter and imports; records/s counts the rows written, per second
of wall time and per second of CPU time (user + system, all threads): the latter is the
one-core figure, and the steadier one on a shared machine. Two rates show whether memory
grows with the archive (it should not for (a)).

Usage: python benchmarks/bench_ingest.py [--work DIR] [--events-per-second 20 [60 ...]]
       [--day 2024-03-05] [--memory-mb 640]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from hft_pipeline.config import DataSettings

_SIMULATE = """
import datetime as dt, json, sys
from pathlib import Path
from hft_pipeline.simulate import simulate_bucket
paths = simulate_bucket(Path(sys.argv[1]), dt.date.fromisoformat(sys.argv[2]),
                        dt.date.fromisoformat(sys.argv[2]), ["ES"],
                        events_per_second=float(sys.argv[3]))
print(json.dumps([str(p) for p in paths]))
"""

# Each runner prints {"records", "seconds", "cpu_seconds", "peak_rss_mb"} as its last line.
_USAGE = """
import resource
def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""

_OURS = (
    _USAGE
    + """
import datetime as dt, json, sys, time
from pathlib import Path
from hft_pipeline.ingest.slim import build_slim_day
from hft_pipeline.partitions import TradingCalendar
archive, day, out = Path(sys.argv[1]), dt.date.fromisoformat(sys.argv[2]), Path(sys.argv[3])
session = TradingCalendar("CME_Equity").session(day)
start, cpu_start = time.perf_counter(), cpu_seconds()
summary = build_slim_day([archive], session, "ES", out, memory_mb=int(sys.argv[4]))
seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
print(json.dumps({"records": summary.rows, "seconds": seconds, "cpu_seconds": cpu,
                  "peak_rss_mb": peak_rss_mb()}))
"""
)

_DATABENTO = (
    _USAGE
    + """
import json, sys, time
import databento
import pyarrow.parquet as pq
member, out = sys.argv[1], sys.argv[2]
start, cpu_start = time.perf_counter(), cpu_seconds()
store = databento.DBNStore.from_file(member)
store.to_parquet(out)
seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
print(json.dumps({"records": pq.read_metadata(out).num_rows, "seconds": seconds,
                  "cpu_seconds": cpu, "peak_rss_mb": peak_rss_mb()}))
"""
)


def _run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"benchmark step failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return done.stdout.strip().splitlines()[-1]


def _main_day_archive(work: Path, day: dt.date, events_per_second: float) -> Path:
    """Simulate the day once per rate (kept in ``work``); the largest ZIP is the trading day's
    own UTC day, all of it inside the session."""
    bucket = work / f"bucket_{events_per_second:g}eps"
    existing = sorted(bucket.rglob("*.zip"))
    if not existing:
        simulated = _run(_SIMULATE, str(bucket), day.isoformat(), str(events_per_second))
        existing = [Path(path) for path in json.loads(simulated)]
    return max(existing, key=lambda path: path.stat().st_size)


def _compare(work: Path, day: dt.date, events_per_second: float, memory_mb: int) -> None:
    archive = _main_day_archive(work, day, events_per_second)
    with zipfile.ZipFile(archive) as opened:
        name = next(n for n in opened.namelist() if n.endswith(".dbn.zst"))
        member = Path(opened.extract(name, archive.parent / "member"))
    size_mb = archive.stat().st_size / 2**20
    print(f"\n{events_per_second:g} events/s: {archive.name}, {size_mb:.1f} MiB ZIP")
    out = work / f"{events_per_second:g}eps"
    results = {
        f"ours: build_slim_day ({memory_mb} MiB bound)": json.loads(
            _run(_OURS, str(archive), day.isoformat(), f"{out}_ours.parquet", str(memory_mb))
        ),
        "databento: DBNStore.to_parquet": json.loads(
            _run(_DATABENTO, str(member), f"{out}_databento.parquet")
        ),
    }
    print(
        f"{'method':<44}{'records':>11}{'wall s':>8}{'records/s':>11}{'CPU s':>8}"
        f"{'records/CPU s':>15}{'peak RSS MB':>13}"
    )
    for method, found in results.items():
        records, wall, cpu = found["records"], found["seconds"], found["cpu_seconds"]
        print(
            f"{method:<44}{records:>11,}{wall:>8.2f}{records / wall:>11,.0f}{cpu:>8.2f}"
            f"{records / cpu:>15,.0f}{found['peak_rss_mb']:>13,.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="folder kept between runs")
    parser.add_argument("--events-per-second", type=float, nargs="+", default=[20.0])
    parser.add_argument("--day", type=dt.date.fromisoformat, default=dt.date(2024, 3, 5))
    parser.add_argument("--memory-mb", type=int, default=DataSettings.ingest_memory_mb)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    work.mkdir(parents=True, exist_ok=True)
    for events_per_second in args.events_per_second:
        _compare(work, args.day, events_per_second, args.memory_mb)


if __name__ == "__main__":
    main()
