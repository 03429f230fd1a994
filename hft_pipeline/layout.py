"""Where every output lives under HFT_HOME (seed 000's layout), and how it is written safely."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def yyyymmdd(day: dt.date) -> str:
    return day.strftime("%Y%m%d")


def window_name(start: dt.date, end: dt.date) -> str:
    return f"{yyyymmdd(start)}_{yyyymmdd(end)}"


@dataclass(frozen=True)
class Layout:
    home: Path

    def slim_file(self, day: dt.date, symbol: str) -> Path:
        return (
            self.home
            / "model_data"
            / f"{day:%Y}"
            / "daily"
            / (f"live_{yyyymmdd(day)}_{symbol}_SLIM.parquet")
        )

    def features_file(self, day: dt.date, bar_seconds: int | None = None) -> Path:
        """Features of ``day``: of the training interval (``FeatureSettings.bar_seconds``) when
        ``bar_seconds`` is None, else of that other interval, in its own folder."""
        return self._features_folder(day, bar_seconds) / f"features_{yyyymmdd(day)}.parquet"

    def labels_file(self, day: dt.date, bar_seconds: int | None = None) -> Path:
        """Labels of ``day``, beside :meth:`features_file` of the same arguments."""
        return self._features_folder(day, bar_seconds) / f"labels_{yyyymmdd(day)}.parquet"

    def features_glob(self, bar_seconds: int | None = None) -> str:
        """Glob of every day's :meth:`features_file` of one interval (None: training)."""
        return str(self._features_folder(None, bar_seconds) / "features_*.parquet")

    def labels_glob(self, bar_seconds: int | None = None) -> str:
        """Glob of every day's :meth:`labels_file` of one interval (None: training)."""
        return str(self._features_folder(None, bar_seconds) / "labels_*.parquet")

    def _features_folder(self, day: dt.date | None, bar_seconds: int | None) -> Path:
        # features/<yyyy>/ for the training interval, features/<yyyy>/<N>s/ for the others: a
        # glob over one never matches the other's files.
        year = self.home / "features" / (f"{day:%Y}" if day else "*")
        return year if bar_seconds is None else year / f"{bar_seconds}s"

    @property
    def duckdb_file(self) -> Path:
        return self.home / "hft.duckdb"

    def window_dir(self, start: dt.date, end: dt.date) -> Path:
        return self.home / "fit_data" / "roll30" / "live" / window_name(start, end)

    def train_log(self, end: dt.date) -> Path:
        return self.home / "logs_hft" / "train" / f"train_{yyyymmdd(end)}.log"

    def metrics_file(self, day: dt.date) -> Path:
        return self.home / "metrics" / f"{day:%Y}" / f"walk_forward_{yyyymmdd(day)}.parquet"

    @property
    def report_file(self) -> Path:
        return self.home / "metrics" / "walk_forward_report.parquet"

    def artifact_dir(self, start: dt.date, end: dt.date) -> Path:
        return self.home / "artifacts" / window_name(start, end)

    @property
    def production_pointer(self) -> Path:
        return self.home / "artifacts" / "production.json"

    @property
    def raw_cache_dir(self) -> Path:
        """Local copies of remote archives; ZIP reading needs a seekable file."""
        return self.home / "cache" / "raw"


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renames it onto ``path`` only on success.

    A killed or failing writer leaves the previous file untouched and no partial file behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Like :func:`atomic_file` for a folder of outputs (a model window, an artifact)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    temporary.mkdir()
    try:
        yield temporary
        if path.exists():
            retired = path.with_name(f".{path.name}.{uuid.uuid4().hex}.old")
            os.replace(path, retired)
            os.replace(temporary, path)
            shutil.rmtree(retired)
        else:
            os.replace(temporary, path)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)
