"""Ingest throughput and peak memory: our SLIM build vs databento's DBNStore.to_parquet.

Simulates one ES trading day of MBP-10 at ``--events-per-second`` (20 gives ~2 M records in the
main UTC day's ZIP) in a subprocess, so its ~1.8 GB peak is not counted, then runs, each in a
fresh subprocess reporting its own ``ru_maxrss``:
(a) ``build_slim_day`` on that ZIP for the session;
(b) ``databento.DBNStore.from_file(<the .dbn.zst member>).to_parquet(path)``.
Peak RSS includes the interpreter and imports; records/s counts the member's records.

Usage: python benchmarks/bench_ingest.py [--work DIR] [--events-per-second 20] [--day 2024-03-05]
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

_SIMULATE = """
import datetime as dt, json, sys
from pathlib import Path
from hft_pipeline.simulate import simulate_bucket
paths = simulate_bucket(Path(sys.argv[1]), dt.date.fromisoformat(sys.argv[2]),
                        dt.date.fromisoformat(sys.argv[2]), ["ES"],
                        events_per_second=float(sys.argv[3]))
print(json.dumps([str(p) for p in paths]))
"""

# Each runner prints {"records": n, "seconds": s, "peak_rss_mb": m} as its last line.
_OURS = """
import datetime as dt, json, resource, sys, time
from pathlib import Path
from hft_pipeline.ingest.slim import build_slim_day
from hft_pipeline.partitions import TradingCalendar
archive, day, out = Path(sys.argv[1]), dt.date.fromisoformat(sys.argv[2]), Path(sys.argv[3])
session = TradingCalendar("CME_Equity").session(day)
start = time.perf_counter()
summary = build_slim_day([archive], session, "ES", out)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"records": summary.rows, "seconds": seconds, "peak_rss_mb": peak}))
"""

_DATABENTO = """
import json, resource, sys, time
import databento
member, out = sys.argv[1], sys.argv[2]
start = time.perf_counter()
store = databento.DBNStore.from_file(member)
store.to_parquet(out)
seconds = time.perf_counter() - start
import pyarrow.parquet as pq
records = pq.read_metadata(out).num_rows
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"records": records, "seconds": seconds, "peak_rss_mb": peak}))
"""


def _run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"benchmark step failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return done.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="folder kept between runs")
    parser.add_argument("--events-per-second", type=float, default=20.0)
    parser.add_argument("--day", type=dt.date.fromisoformat, default=dt.date(2024, 3, 5))
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    work.mkdir(parents=True, exist_ok=True)

    # The largest ZIP is the trading day's own UTC day: all of it lies inside the session.
    archives = [
        Path(p)
        for p in json.loads(
            _run(_SIMULATE, str(work / "bucket"), args.day.isoformat(), str(args.events_per_second))
        )
    ]
    archive = max(archives, key=lambda path: path.stat().st_size)
    with zipfile.ZipFile(archive) as opened:
        name = next(n for n in opened.namelist() if n.endswith(".dbn.zst"))
        member = Path(opened.extract(name, work / "member"))
    size_mb = archive.stat().st_size / 2**20
    print(f"archive {archive.name}: {size_mb:.1f} MiB ZIP, member {member.name}")

    results = {
        "ours: build_slim_day": json.loads(
            _run(_OURS, str(archive), args.day.isoformat(), str(work / "ours.parquet"))
        ),
        "databento: DBNStore.to_parquet": json.loads(
            _run(_DATABENTO, str(member), str(work / "databento.parquet"))
        ),
    }
    print(f"{'method':<34}{'records':>12}{'seconds':>10}{'records/s':>14}{'peak RSS MB':>14}")
    for method, found in results.items():
        rate = found["records"] / found["seconds"]
        print(
            f"{method:<34}{found['records']:>12,}{found['seconds']:>10.2f}{rate:>14,.0f}"
            f"{found['peak_rss_mb']:>14,.0f}"
        )


if __name__ == "__main__":
    main()
