"""The training matrix of one window (seed 001's ``run_training.py``): model kinds x symbols x
label horizons, each entry trained by :func:`~hft_pipeline.training.train.train_window`.

An entry trains on its symbol's rows of the window (or every symbol's, for the primary model)
and on the labels of its horizon, and writes the primary model's files to its own folder:

- the primary entry (the configured ``model_kind``, every symbol, ``features.horizon_bars``) is
  the window folder itself, ``fit_data/roll30/live/<start>_<end>/``;
- every other entry is ``<window folder>/matrix/<model>_<SYM>_h<H>/`` (``ALL`` for an entry
  over every symbol).

:func:`~hft_pipeline.training.matrix_pool.run_matrix` trains a list of entries, one after another
or in worker processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import itertools
import logging
import math
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from hft_pipeline.config import PipelineSettings, TrainingSettings
from hft_pipeline.features.schema import SYMBOL, label_columns
from hft_pipeline.features.store import load_window
from hft_pipeline.layout import Layout, window_name
from hft_pipeline.training.model import check_kind
from hft_pipeline.training.train import TrainResult, train_window

MATRIX_FOLDER = "matrix"
ALL_SYMBOLS = "ALL"  # the symbol part of an entry's name when it trains on every symbol
# Validation figures shown for each entry (metrics.json keys).
HEADLINE_METRICS = (
    "accuracy",
    "macro_f1",
    "log_loss",
    "ic",
    "baseline_naive_accuracy",
    "baseline_logistic_accuracy",
    "accuracy_margin_over_logistic",
)

EpochRow = dict[str, float]  # one row of training_history.json


@dataclasses.dataclass(frozen=True)
class MatrixEntry:
    model_kind: str
    symbol: str | None  # None: every symbol of the window together
    horizon: int  # label horizon in bars

    @property
    def name(self) -> str:
        return f"{self.model_kind}_{self.symbol or ALL_SYMBOLS}_h{self.horizon}"


@dataclasses.dataclass(frozen=True)
class WindowInputs:
    """The N trading days of a window, their daily files and where its models go."""

    days: tuple[dt.date, ...]
    feature_files: tuple[Path, ...]
    label_files: tuple[Path, ...]
    window_dir: Path
    log_path: Path  # the primary model's training log; other entries' logs sit beside it

    @property
    def name(self) -> str:
        return window_name(self.days[0], self.days[-1])


@dataclasses.dataclass(frozen=True)
class EntryJob:
    """Everything one entry's training needs, as plain data: it crosses to a worker process."""

    entry: MatrixEntry
    inputs: WindowInputs
    training: TrainingSettings  # model_kind is the entry's
    feature_columns: tuple[str, ...]
    out_dir: Path
    log_path: Path
    is_primary: bool


@dataclasses.dataclass(frozen=True)
class MatrixResult:
    entry: MatrixEntry
    result: TrainResult


def window_inputs(layout: Layout, days: Sequence[dt.date], window_days: int) -> WindowInputs:
    """The window made of ``days`` (trading days, oldest first, ending at the window's end).

    Raises
    ------
    ValueError
        When history holds fewer than ``window_days`` trading days up to the end.
    """
    days = tuple(days)
    if len(days) < window_days:
        raise ValueError(
            f"the window needs {window_days} trading days but history has only {len(days)} up "
            f"to {days[-1]}; pick a later day or lower window_days"
        )
    return WindowInputs(
        days=days,
        feature_files=tuple(layout.features_file(day) for day in days),
        label_files=tuple(layout.labels_file(day) for day in days),
        window_dir=layout.window_dir(days[0], days[-1]),
        log_path=layout.train_log(days[-1]),
    )


def primary_entry(settings: PipelineSettings) -> MatrixEntry:
    return MatrixEntry(settings.training.model_kind, None, settings.features.horizon_bars)


def matrix_entries(
    settings: PipelineSettings,
    models: Sequence[str] = (),
    symbols: Sequence[str] = (),
    horizons: Sequence[int] = (),
) -> list[MatrixEntry]:
    """Model kinds x symbols x horizons, in that nesting order, without duplicates.

    An empty argument falls back to the ``matrix_*`` setting, and an empty setting to the
    primary model's value on that axis, so by default the matrix is the primary entry alone.

    Raises
    ------
    ValueError
        For a model kind that no model module trains.
    """
    training = settings.training
    kinds = models or training.matrix_models or (training.model_kind,)
    for kind in kinds:
        check_kind(kind)
    chosen_symbols = symbols or training.matrix_symbols or (None,)
    chosen_horizons = horizons or training.matrix_horizons or (settings.features.horizon_bars,)
    product = itertools.product(kinds, chosen_symbols, chosen_horizons)
    return list(dict.fromkeys(MatrixEntry(*axes) for axes in product))


def plan_jobs(
    settings: PipelineSettings,
    inputs: WindowInputs,
    entries: Sequence[MatrixEntry],
    feature_columns: Sequence[str],
) -> list[EntryJob]:
    primary = primary_entry(settings)
    log = inputs.log_path
    jobs = []
    for entry in entries:
        if entry == primary:
            out_dir, log_path = inputs.window_dir, log
        else:
            out_dir = inputs.window_dir / MATRIX_FOLDER / entry.name
            log_path = log.with_name(f"{log.stem}_{entry.name}.log")
        jobs.append(
            EntryJob(
                entry=entry,
                inputs=inputs,
                training=dataclasses.replace(settings.training, model_kind=entry.model_kind),
                feature_columns=tuple(feature_columns),
                out_dir=out_dir,
                log_path=log_path,
                is_primary=entry == primary,
            )
        )
    return jobs


def check_inputs(
    inputs: WindowInputs, entries: Sequence[MatrixEntry], extra_horizons: Sequence[int] = ()
) -> None:
    """Fails before any training when a daily file is missing, a labels file lacks an entry's
    horizon or one of the extra horizons every entry also forecasts, or an entry's symbol has
    no rows in the window.

    Raises
    ------
    FileNotFoundError, ValueError
    """
    missing = [str(p) for p in inputs.feature_files + inputs.label_files if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"window {inputs.name}: {len(missing)} feature/label file(s) are missing "
            f"(materialize `features` for those days first): {missing[:4]}"
        )
    for path in inputs.label_files:
        found = pq.read_schema(path).names
        for horizon in sorted({entry.horizon for entry in entries} | set(extra_horizons)):
            absent = [name for name in label_columns(horizon) if name not in found]
            if absent:
                raise ValueError(
                    f"label horizon {horizon} bars is not in {path}: no column(s) {absent} "
                    f"(its columns: {found}); add the horizon to the features settings and "
                    "materialize `features` again, or drop it from the matrix"
                )
    present = set().union(
        *(pq.read_table(path, columns=[SYMBOL]).column(SYMBOL).unique().to_pylist()
          for path in inputs.label_files)
    )  # fmt: skip
    for entry in entries:
        if entry.symbol is not None and entry.symbol not in present:
            raise ValueError(
                f"matrix entry {entry.name}: symbol {entry.symbol} has no rows in window "
                f"{inputs.name} (symbols found: {sorted(present)})"
            )


def train_entry(job: EntryJob, on_epoch: Callable[[EpochRow], None] | None = None) -> TrainResult:
    """Trains one entry on its rows of the window and writes its folder and log.

    ``on_epoch`` receives each epoch's row of ``training_history.json`` as soon as the epoch
    is done.
    """
    features, labels = entry_frames(job)
    keep = keeping_matrix(job.out_dir) if job.is_primary else contextlib.nullcontext()
    with training_log(job.log_path) as logger, keep:
        logger.info(
            "window %s..%s (%d trading days), entry %s, training settings %s",
            job.inputs.days[0], job.inputs.days[-1], len(job.inputs.days), job.entry.name,
            dataclasses.asdict(job.training),
        )  # fmt: skip
        return train_window(
            features, labels, job.feature_columns, job.training, job.entry.horizon,
            job.out_dir, logger, on_epoch_end=on_epoch,
        )  # fmt: skip


def entry_frames(job: EntryJob) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The window's feature and label rows, restricted to the entry's symbol."""
    inputs = job.inputs
    features, labels = load_window(
        None, inputs.feature_files, inputs.label_files, columns=job.feature_columns
    )
    if job.entry.symbol is None:
        return features, labels
    mine = (features[SYMBOL] == job.entry.symbol).to_numpy()
    return features[mine].reset_index(drop=True), labels[mine].reset_index(drop=True)


@contextlib.contextmanager
def keeping_matrix(window_dir: Path) -> Iterator[None]:
    """Keeps the matrix entries through a retraining of the window's primary model.

    ``train_window`` replaces the window folder as a whole, and the entries live inside it;
    they wait beside the folder meanwhile and move back whether training succeeds or fails.
    A folder left aside by a killed run is what the next run puts back.
    """
    matrix = window_dir / MATRIX_FOLDER
    aside = window_dir.with_name(f".{window_dir.name}.{MATRIX_FOLDER}")
    if matrix.is_dir():
        if aside.exists():
            shutil.rmtree(aside)  # older than the entries trained since that killed run
        os.replace(matrix, aside)
    try:
        yield
    finally:
        if aside.is_dir():
            window_dir.mkdir(parents=True, exist_ok=True)
            os.replace(aside, matrix)


@contextlib.contextmanager
def training_log(path: Path) -> Iterator[logging.Logger]:
    """A logger writing to ``path`` (logs_hft/train/...) for the duration of one training."""
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(f"hft_pipeline.train.{path.stem}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        handler.close()


def summary_rows(results: Sequence[MatrixResult]) -> list[dict[str, Any]]:
    """One row per entry: where it is and its headline validation figures (None if not
    finite, e.g. an IC over constant predictions)."""
    rows = []
    for outcome in results:
        metrics, entry = outcome.result.metrics, outcome.entry
        figures = {name: _finite_or_none(metrics.get(name)) for name in HEADLINE_METRICS}
        rows.append(
            {
                "entry": entry.name,
                "model_kind": entry.model_kind,
                "symbol": entry.symbol or ALL_SYMBOLS,
                "horizon": entry.horizon,
                **figures,
                "epochs": len(outcome.result.history),
                "seconds": round(outcome.result.wall_seconds, 1),
                "path": str(outcome.result.out_dir),
            }
        )
    return rows


def _finite_or_none(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None
