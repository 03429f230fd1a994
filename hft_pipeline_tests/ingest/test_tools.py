"""ingest_archives on simulated archives: one SLIM file per session and symbol."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hft_pipeline.ingest.tools import archive_coverage, ingest_archives
from hft_pipeline.simulate import simulate_bucket


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """ES and ZN for the sessions of Tue 2024-01-09 and Wed 2024-01-10: UTC days 8, 9, 10."""
    root = tmp_path_factory.mktemp("bucket")
    return simulate_bucket(
        root, dt.date(2024, 1, 9), dt.date(2024, 1, 10), ["ES", "ZN"], events_per_second=0.05
    )


def test_archive_coverage_reads_days_and_roots(archives: list[Path]) -> None:
    coverage = archive_coverage(archives[0])

    assert coverage.utc_days == {dt.date(2024, 1, 8)}
    assert coverage.roots == {"ES"}


def test_ingest_archives_writes_one_file_per_session_and_symbol(
    archives: list[Path], tmp_path: Path
) -> None:
    summaries = ingest_archives(archives, tmp_path)

    days = [dt.date(2024, 1, d) for d in (8, 9, 10, 11)]
    assert [(s.path.name, s.partial) for s in summaries] == [
        (f"live_{day:%Y%m%d}_{symbol}_SLIM.parquet", day not in days[1:3])
        for day in days
        for symbol in ("ES", "ZN")
    ]
    full = [s for s in summaries if not s.partial]
    assert all(s.rows > 0 and pq.read_metadata(s.path).num_rows == s.rows for s in full)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        s.path.name for s in summaries
    )


def test_ingest_archives_symbol_filter_keeps_only_that_root(
    archives: list[Path], tmp_path: Path
) -> None:
    summaries = ingest_archives(archives[:3], tmp_path, symbols=["ZN", "NQ"])

    assert {s.path.name.split("_")[2] for s in summaries} == {"ZN"}


def test_ingest_archives_unknown_symbol_raises_listing_present(
    archives: list[Path], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"\['ES', 'ZN'\]"):
        ingest_archives(archives, tmp_path, symbols=["NQ"])
