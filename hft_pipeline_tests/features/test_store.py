"""DuckDB views over the daily files, refreshed under a concurrent lock, and window reads."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
import time

import duckdb
import pytest

from hft_pipeline.config import FeatureSettings
from hft_pipeline.features.compute import compute_day, write_day
from hft_pipeline.features.store import load_window, refresh_view, refresh_views
from hft_pipeline.partitions import Session
from hft_pipeline_tests.features.slim_builders import (
    NS,
    OPEN_NS,
    book_event,
    slim_table,
    trade_event,
    write_slim,
)

SETTINGS = FeatureSettings(bar_seconds=5, horizon_bars=2, horizons_bars=(2,))
DAYS = (dt.date(2024, 1, 2), dt.date(2024, 1, 3))
DAY_NS = 86_400 * NS


def _write_days(home, days=DAYS):
    """Writes each day's features/labels files (12 bars per symbol) under home/features/2024."""
    written = []
    for offset, day in enumerate(days):
        open_ns = OPEN_NS + offset * DAY_NS
        session = Session(day, open_ns, open_ns + 60 * NS)
        rows = [
            book_event(open_ns + NS, [(100.00 + offset, 3)], [(100.25 + offset, 1)]),
            trade_event(open_ns + 2 * NS, 100.25 + offset, 2, "B"),
        ]
        slim = write_slim(home / f"es_{day:%Y%m%d}.parquet", slim_table(rows), day=day)
        features, labels = compute_day({"ES": slim}, session, SETTINGS)
        paths = (
            home / "features" / "2024" / f"features_{day:%Y%m%d}.parquet",
            home / "features" / "2024" / f"labels_{day:%Y%m%d}.parquet",
        )
        write_day(features, labels, *paths)
        written.append(paths)
    return written


def _globs(home):
    return (
        str(home / "features" / "*" / "features_*.parquet"),
        str(home / "features" / "*" / "labels_*.parquet"),
    )


def _view_names(database):
    with duckdb.connect(str(database), read_only=True) as connection:
        return sorted(
            row[0]
            for row in connection.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal"
            ).fetchall()
        )


def test_refresh_views_without_files_creates_views_once_files_exist(tmp_path):
    database = tmp_path / "hft.duckdb"

    refresh_views(database, *_globs(tmp_path))
    views_before_files = _view_names(database)
    _write_days(tmp_path)
    refresh_views(database, *_globs(tmp_path))

    assert views_before_files == []
    assert _view_names(database) == ["features", "labels"]


def test_refresh_view_creates_one_named_view_over_its_glob(tmp_path):
    _write_days(tmp_path, DAYS[:1])
    database = tmp_path / "hft.duckdb"

    refresh_view(database, "walk_forward", str(tmp_path / "features" / "*" / "labels_*.parquet"))

    with duckdb.connect(str(database), read_only=True) as connection:
        rows = connection.execute("SELECT count(*) FROM walk_forward").fetchone()[0]
    assert _view_names(database) == ["walk_forward"]
    assert rows == 12


def test_refresh_views_over_daily_files_sees_every_day(tmp_path):
    _write_days(tmp_path)
    database = tmp_path / "hft.duckdb"

    refresh_views(database, *_globs(tmp_path))

    with duckdb.connect(str(database), read_only=True) as connection:
        counts = connection.execute(
            "SELECT count(*), count(DISTINCT session_date) FROM features "
            "UNION ALL SELECT count(*), count(DISTINCT session_date) FROM labels"
        ).fetchall()
    assert _view_names(database) == ["features", "labels"]
    assert counts == [(24, 2), (24, 2)]


def test_refresh_views_waits_for_a_concurrent_holder_of_the_lock(tmp_path):
    database = tmp_path / "hft.duckdb"
    duckdb.connect(str(database)).close()
    holder = _hold_lock(database, seconds=1.0)
    try:
        started = time.monotonic()

        refresh_views(database, *_globs(tmp_path), lock_timeout_s=20.0)

        waited = time.monotonic() - started
    finally:
        holder.wait()
    assert waited > 0.2


def test_refresh_views_lock_held_past_timeout_raises_timeout_error(tmp_path):
    database = tmp_path / "hft.duckdb"
    duckdb.connect(str(database)).close()
    holder = _hold_lock(database, seconds=2.0)
    try:
        with pytest.raises(TimeoutError, match="hft.duckdb stayed locked"):
            refresh_views(database, *_globs(tmp_path), lock_timeout_s=0.3)
    finally:
        holder.wait()


def _hold_lock(database, seconds):
    """Another process holding the DuckDB file open, as a concurrent refresher would; returns
    once the lock is taken."""
    script = textwrap.dedent(
        f"""
        import sys, time, duckdb
        connection = duckdb.connect({str(database)!r})
        print("locked", flush=True)
        time.sleep({seconds})
        connection.close()
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_load_window_reads_aligned_sorted_frames(tmp_path):
    written = _write_days(tmp_path)
    feature_files = [features for features, _ in reversed(written)]
    label_files = [labels for _, labels in written]

    features, labels = load_window(None, feature_files, label_files, columns=["obi_1", "mid"])

    assert list(features.columns) == ["ts", "session_date", "symbol", "bar_index", "obi_1", "mid"]
    assert list(labels.columns)[4:] == ["fwd_ret_h2", "fwd_rv_h2", "direction_h2"]
    assert len(features) == len(labels) == 24
    assert features["ts"].is_monotonic_increasing
    assert (labels["ts"].to_numpy() == features["ts"].to_numpy()).all()
    assert features["obi_1"].iloc[0] == 0.5


def test_load_window_unknown_column_raises_naming_it(tmp_path):
    written = _write_days(tmp_path, DAYS[:1])

    with pytest.raises(ValueError, match="not_a_feature"):
        load_window(None, [written[0][0]], [written[0][1]], columns=["not_a_feature"])


def test_load_window_labels_of_other_days_raise(tmp_path):
    written = _write_days(tmp_path)

    with pytest.raises(ValueError, match="do not match"):
        load_window(None, [written[0][0]], [written[1][1]])
