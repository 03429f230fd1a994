"""The `hft-pipeline` command: simulate a bucket, run the demo, run the graph on any bucket."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

from hft_pipeline.config import CONFIG_FILE_NAME, PipelineSettings, write_config_file

# The demo fits 2 cores in minutes: 5-second bars, 5-day windows, a small LSTM, 5 epochs.
DEMO_START = dt.date(2024, 1, 2)
DEMO_END = dt.date(2024, 1, 11)  # 8 trading days: 4 windows of 5 days, 3 scored days
DEMO_SYMBOLS = ("ES", "ZN")
DEMO_OVERRIDES = {
    "data": {"start": DEMO_START, "end": DEMO_END, "symbols": DEMO_SYMBOLS},
    "features": {"bar_seconds": 5, "bar_intervals": (5,), "horizon_bars": 12},
    "training": {
        "window_days": 5,
        "context": 60,
        "hidden_size": 32,
        "num_layers": 1,
        "epochs": 5,
        "batch_size": 256,
        "max_train_sequences": 60_000,
    },
}


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _symbols(text: str) -> tuple[str, ...]:
    return tuple(item.strip().upper() for item in text.split(",") if item.strip())


def _instance():
    import dagster as dg

    if os.environ.get("DAGSTER_HOME"):
        Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
        return dg.DagsterInstance.get()
    print("DAGSTER_HOME is not set: runs are kept in a temporary instance (not shown in the UI)")
    return dg.DagsterInstance.ephemeral()


def _print_results(settings: PipelineSettings, summary: pd.DataFrame) -> None:
    metrics_dir = settings.home / "metrics"
    daily = pd.concat(
        [pd.read_parquet(p) for p in sorted(metrics_dir.glob("*/walk_forward_*.parquet"))]
    )
    columns = ["day", "window_start", "window_end", "model", "n", "accuracy", "macro_f1"]
    columns += ["log_loss", "ic"]
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(
            "\nWalk-forward, out of sample (each day scored by the window ending the day before):"
        )
        print(daily[columns].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        print("\nSummary per model:")
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def simulate_command(args: argparse.Namespace) -> None:
    from hft_pipeline.simulate import simulate_bucket

    started = time.perf_counter()
    paths = simulate_bucket(
        args.out,
        args.start,
        args.end,
        args.symbols,
        signal=args.signal,
        seed=args.seed,
        calendar=args.calendar,
    )
    print(f"wrote {len(paths)} archives under {args.out} in {time.perf_counter() - started:.1f} s")


def demo_command(args: argparse.Namespace) -> None:
    from hft_pipeline.runner import materialize_range
    from hft_pipeline.simulate import simulate_bucket

    started = time.perf_counter()
    base = PipelineSettings.load({"HFT_HOME": str(args.home), "HFT_CONFIG": os.devnull})
    settings = base.with_overrides(**DEMO_OVERRIDES)
    # The UI (`make ui`) loads this file, so it shows the same definitions as the demo ran.
    write_config_file(settings, settings.home / CONFIG_FILE_NAME)
    bucket = settings.home / "bucket"
    marker = bucket / ".simulated.json"
    wanted = {"start": str(DEMO_START), "end": str(DEMO_END), "seed": args.seed, "signal": 1.0}
    if not marker.is_file() or json.loads(marker.read_text()) != wanted:
        print(f"simulating a sample bucket in {bucket}")
        simulate_bucket(bucket, DEMO_START, DEMO_END, DEMO_SYMBOLS, signal=1.0, seed=args.seed)
        marker.write_text(json.dumps(wanted))
    print(f"materializing every asset for {DEMO_START}..{DEMO_END} (HFT_HOME={settings.home})")
    summary = materialize_range(settings, DEMO_START, DEMO_END, _instance())
    _print_results(settings, summary)
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; `make ui` shows its runs")


def run_command(args: argparse.Namespace) -> None:
    from hft_pipeline.runner import materialize_range

    data = {"raw_url": args.raw_url, "start": args.start, "end": args.end}
    if args.symbols:
        data["symbols"] = args.symbols
    overrides = {"data": data}
    if args.window:
        overrides["training"] = {"window_days": args.window}
    settings = PipelineSettings.load().with_overrides(**overrides)
    summary = materialize_range(settings, args.start, args.end, _instance())
    _print_results(settings, summary)


def features_command(args: argparse.Namespace) -> None:
    from hft_pipeline.features.compute import compute_day, write_day
    from hft_pipeline.ingest.slim import read_slim_metadata
    from hft_pipeline.ingest.slim_schema import META_SYMBOL, META_TRADING_DAY
    from hft_pipeline.partitions import TradingCalendar

    settings = PipelineSettings.load()
    metadata = read_slim_metadata(args.slim)
    if META_TRADING_DAY not in metadata or META_SYMBOL not in metadata:
        raise ValueError(f"{args.slim} has no SLIM metadata (trading day, symbol): not a SLIM file")
    day = dt.date.fromisoformat(metadata[META_TRADING_DAY])
    session = TradingCalendar.from_settings(settings.data).session(day)
    features, labels = compute_day({metadata[META_SYMBOL]: args.slim}, session, settings.features)
    labels_path = args.out.with_name(f"labels_{args.out.name}")
    write_day(features, labels, args.out, labels_path)
    print(f"{features.num_rows} bars x {features.num_columns} columns -> {args.out}, {labels_path}")


def ingest_command(args: argparse.Namespace) -> None:
    from hft_pipeline.ingest.bar_files import BarFileOptions
    from hft_pipeline.ingest.tools import ingest_archives
    from hft_pipeline.partitions import TradingCalendar

    bar_options = BarFileOptions(
        timestamp_column=args.timestamp_column,
        timestamp_unit=args.timestamp_unit,
        timezone=args.timezone,
        label=args.bar_label,
        interval_ns=None if args.bar_interval_s is None else round(args.bar_interval_s * 1e9),
    )
    settings = PipelineSettings.load()
    data = dataclasses.replace(
        settings.data,
        calendar=args.calendar or settings.data.calendar,
        trading_hours=args.hours or settings.data.trading_hours,
    )
    summaries = ingest_archives(
        args.archives,
        args.out,
        args.symbol,
        TradingCalendar.from_settings(data),
        bar_options,
        caps=archive_caps(settings),
        front_contract_rule=data.front_contract_rule,
        memory_mb=data.ingest_memory_mb,
    )
    for summary in summaries:
        flag = "  (partial session)" if summary.partial else ""
        print(f"{summary.path}  {summary.rows} rows{flag}")


def train_command(args: argparse.Namespace) -> None:
    from hft_pipeline.features.registry import MODEL_FEATURES
    from hft_pipeline.layout import Layout
    from hft_pipeline.partitions import PipelinePartitions, date_key
    from hft_pipeline.training import matrix
    from hft_pipeline.training.matrix_pool import run_matrix

    settings = PipelineSettings.load()
    data, window_days = settings.data, settings.training.window_days
    partitions = PipelinePartitions.from_settings(data)
    if not partitions.trading_days.has_partition_key(date_key(args.window)):
        raise ValueError(
            f"--window {args.window} is not a trading day of {data.calendar} between "
            f"{data.start} and {data.end or 'today'} (HFT_START, HFT_END)"
        )
    days = partitions.window_days(args.window, window_days)
    inputs = matrix.window_inputs(Layout(settings.home), days, window_days)
    entries = matrix.matrix_entries(settings, args.models, args.symbols, args.horizons)
    jobs = matrix.plan_jobs(settings, inputs, entries, MODEL_FEATURES)
    if args.list_only:
        for job in jobs:
            print(f"{job.entry.name}  {job.out_dir}")
        return
    matrix.check_inputs(inputs, entries, settings.training.extra_horizons)
    print(f"training {len(jobs)} entr{'y' if len(jobs) == 1 else 'ies'} of window {inputs.name}")
    results = run_matrix(jobs, args.parallel)
    summary = pd.DataFrame(matrix.summary_rows(results))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def _horizons(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of bar counts") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def archive_caps(settings: PipelineSettings):
    """The configured zip-bomb caps, for commands that open archives outside Dagster."""
    from hft_pipeline.ingest.slim_members import ArchiveCaps

    data = settings.data
    return ArchiveCaps(data.archive_max_uncompressed_gb, data.archive_max_compression_ratio)


def r2_command(args: argparse.Namespace) -> None:
    from hft_pipeline.ingest import r2_tools

    settings = PipelineSettings.load()
    url = args.url or settings.raw_url
    if args.action == "ls":
        for stored in r2_tools.list_remote(url, args.prefix):
            print(f"{stored.last_modified:%Y-%m-%d %H:%M:%S}  {stored.size:>14,}  {stored.key}")
    elif args.action == "download":
        caps = archive_caps(settings)
        paths = r2_tools.download(url, args.prefix, args.dest, workers=args.workers, caps=caps)
        print(f"{len(paths)} file(s) under {args.dest}")
    else:
        keys = r2_tools.upload(url, args.files, args.prefix, workers=args.workers)
        print("\n".join(keys))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hft-pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    simulate = commands.add_parser("simulate", help="write a Databento-style sample bucket")
    simulate.add_argument("--out", type=Path, required=True, help="bucket folder to write")
    simulate.add_argument("--start", type=_date, required=True)
    simulate.add_argument("--end", type=_date, required=True)
    simulate.add_argument("--symbols", type=_symbols, default=DEMO_SYMBOLS)
    simulate.add_argument("--signal", type=float, default=1.0, help="planted signal, 0 to 1")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--calendar", default="CME_Equity")
    simulate.set_defaults(handler=simulate_command)

    demo = commands.add_parser("demo", help="simulate a bucket and materialize the whole graph")
    demo.add_argument(
        "--home",
        type=Path,
        default=Path(os.environ.get("HFT_HOME", "~/HFT_forecast")).expanduser(),
        help="HFT_HOME for the demo's outputs (default: $HFT_HOME)",
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=demo_command)

    run = commands.add_parser("run", help="materialize the whole graph over a date range")
    run.add_argument("--raw-url", required=True, help="file:///path or s3://bucket[/prefix]")
    run.add_argument("--start", type=_date, required=True)
    run.add_argument("--end", type=_date, required=True)
    run.add_argument("--window", type=int, help="trading days per window (default: settings)")
    run.add_argument("--symbols", type=_symbols, help="root symbols, e.g. ES,ZN")
    run.set_defaults(handler=run_command)

    features = commands.add_parser("features", help="one SLIM file's features, outside Dagster")
    features.add_argument("slim", type=Path, help="a live_<yyyymmdd>_<SYM>_SLIM.parquet file")
    features.add_argument("--out", type=Path, required=True, help="features parquet to write")
    features.set_defaults(handler=features_command)

    ingest = commands.add_parser("ingest", help="raw archives -> SLIM files, outside Dagster")
    ingest.add_argument(
        "archives",
        type=Path,
        nargs="+",
        help="Databento batch ZIPs, LOBSTER ZIPs/CSV pairs, or OHLCV bar files (CSV/parquet)",
    )
    ingest.add_argument("--out", type=Path, required=True, help="folder for the SLIM files")
    ingest.add_argument("--symbol", type=_symbols, help="root symbol(s), e.g. ES (default: all)")
    ingest.add_argument("--calendar", help="trading calendar (default: settings, CME_Equity)")
    ingest.add_argument(
        "--hours",
        choices=["eth", "rth"],
        help="whole sessions or regular hours (default: settings)",
    )
    bars = ingest.add_argument_group("bar files (each inferred from the file when not given)")
    bars.add_argument("--bar-interval-s", type=float, help="bar length in seconds")
    bars.add_argument("--bar-label", choices=["open", "close"], help="which end is stamped")
    bars.add_argument("--timestamp-column", help="name of the timestamp column")
    bars.add_argument("--timestamp-unit", choices=["s", "ms", "us", "ns"], help="epoch unit")
    bars.add_argument("--timezone", default="UTC", help="zone of timestamps without an offset")
    ingest.set_defaults(handler=ingest_command)

    train = commands.add_parser(
        "train", help="train a window's matrix (model kinds x symbols x horizons) from features"
    )
    train.add_argument(
        "--window", type=_date, required=True, help="the window's last trading day, YYYY-MM-DD"
    )
    train.add_argument(
        "--symbols", type=_symbols, default=(), help="one entry per symbol, e.g. ES,ZN"
    )
    train.add_argument("--horizons", type=_horizons, default=(), help="label horizons, e.g. 12,24")
    train.add_argument("--models", type=_names, default=(), help="model kinds, e.g. lstm_multitask")
    train.add_argument(
        "--list-only", action="store_true", help="print the entries and their folders only"
    )
    train.add_argument(
        "--parallel", type=int, default=1, help="entries at once (processes, or GPU cards)"
    )
    train.set_defaults(handler=train_command)

    r2 = commands.add_parser("r2", help="list, download or upload bucket objects")
    r2.add_argument("action", choices=["ls", "download", "upload"])
    r2.add_argument("--url", help="s3://bucket[/prefix] or file:///path (default: HFT_RAW_URL)")
    r2.add_argument("--prefix", default="", help="key prefix (ls/download) or target (upload)")
    r2.add_argument("--dest", type=Path, default=Path("."), help="download folder")
    r2.add_argument("--workers", type=int, default=4, help="parts transferred at once")
    r2.add_argument("files", type=Path, nargs="*", help="files to upload")
    r2.set_defaults(handler=r2_command)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    # Dagster flags beta parameters (backfill_policy, multi-partition mappings) on every load.
    warnings.filterwarnings("ignore", module="dagster")
    try:
        args.handler(args)
    except (ValueError, OSError, RuntimeError) as error:
        print(f"hft-pipeline {args.command}: {error}", file=sys.stderr)
        raise SystemExit(2) from error
