"""ingest_archives on simulated Databento archives, real LOBSTER samples and bar files: one
SLIM file per session and symbol."""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from hft_pipeline.cli import main
from hft_pipeline.ingest.dbn_layout import MBP10_DTYPE
from hft_pipeline.ingest.slim import read_slim_metadata
from hft_pipeline.ingest.slim_schema import (
    META_BAR_INTERVAL_NS,
    META_CONTRACT,
    META_SOURCE_FILES,
    META_TICK_SIZE,
    META_TRADING_HOURS,
)
from hft_pipeline.ingest.tools import (
    archive_coverage,
    ingest_archives,
    source_kind,
)
from hft_pipeline.simulate import simulate_bucket
from hft_pipeline_tests.ingest.dbn_builders import (
    dbn_stream,
    make_records,
    symbology,
    write_archive,
)
from hft_pipeline_tests.ingest.test_bar_files import SECOND_BARS, write_parquet


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


LOBSTER_AAPL = "lobster-nasdaq-2012-06-21/LOBSTER_SampleFile_AAPL_2012-06-21_1.zip"
AAPL_MESSAGE = "AAPL_2012-06-21_34200000_57600000_message_1.csv"


def test_source_kind_tells_databento_lobster_and_bar_files(
    archives: list[Path], shared_data: Path, tmp_path: Path
) -> None:
    assert source_kind(archives[0]) == "databento"
    assert source_kind(shared_data / LOBSTER_AAPL) == "lobster"
    assert source_kind(tmp_path / AAPL_MESSAGE) == "lobster"
    assert source_kind(tmp_path / "MES_1s.parquet") == "bars"
    assert source_kind(tmp_path / "6EH4_1min.csv.gz") == "bars"
    with pytest.raises(ValueError, match="notes.txt: not a source this command reads"):
        source_kind(tmp_path / "notes.txt")


def test_ingest_lobster_zip_writes_the_day_with_hashes_reproducibly(
    shared_data: Path, tmp_path: Path
) -> None:
    (summary,) = ingest_archives([shared_data / LOBSTER_AAPL], tmp_path)
    first_bytes = summary.path.read_bytes()
    ingest_archives([shared_data / LOBSTER_AAPL], tmp_path)

    metadata = read_slim_metadata(summary.path)
    assert summary.path == tmp_path / "live_20120621_AAPL_SLIM.parquet"
    assert (summary.rows, summary.partial) == (118_497, False)
    assert pq.read_metadata(summary.path).num_rows == 118_497
    assert metadata[META_TICK_SIZE] == "0.01"
    assert [source["member"] for source in json.loads(metadata[META_SOURCE_FILES])] == [
        AAPL_MESSAGE,
        AAPL_MESSAGE.replace("message", "orderbook"),
    ]
    assert summary.path.read_bytes() == first_bytes
    assert sorted(path.name for path in tmp_path.iterdir()) == [summary.path.name]


def test_ingest_loose_lobster_message_file_finds_its_orderbook(
    shared_data: Path, tmp_path: Path
) -> None:
    with zipfile.ZipFile(shared_data / LOBSTER_AAPL) as opened:
        opened.extractall(tmp_path / "lobster")

    (summary,) = ingest_archives([tmp_path / "lobster" / AAPL_MESSAGE], tmp_path / "out")

    assert (summary.symbol, summary.rows) == ("AAPL", 118_497)
    assert [source["archive"] for source in summary.source_files] == [
        AAPL_MESSAGE,
        AAPL_MESSAGE.replace("message", "orderbook"),
    ]


def test_ingest_databento_zip_and_bar_file_together(archives: list[Path], tmp_path: Path) -> None:
    bars = write_parquet(SECOND_BARS, tmp_path / "MES_1s.parquet")

    summaries = ingest_archives([archives[0], bars], tmp_path / "out", symbols=None)

    names = [summary.path.name for summary in summaries]
    assert names[-2:] == ["live_20240109_MES_SLIM.parquet", "live_20240110_MES_SLIM.parquet"]
    assert all(name.endswith("_ES_SLIM.parquet") for name in names[:-2])
    metadata = read_slim_metadata(summaries[-1].path)
    assert metadata[META_BAR_INTERVAL_NS] == "1000000000"
    assert metadata[META_CONTRACT] == "MESH4"


def test_ingest_archive_of_a_holiday_says_no_session_overlaps_it(tmp_path: Path) -> None:
    # Christmas Day 2021 is a Saturday: no CME equity session touches that UTC day.
    christmas = dt.datetime(2021, 12, 25, tzinfo=dt.UTC)
    start_ns = int(christmas.timestamp()) * 10**9
    records = make_records(MBP10_DTYPE, start_ns + np.arange(3, dtype=np.uint64) * 10**9)
    archive = write_archive(
        tmp_path / "holiday.zip",
        {
            "glbx-mdp3-20211225.mbp-10.dbn.zst": dbn_stream(
                records, "mbp-10", start_ns=start_ns, end_ns=start_ns + 86_400 * 10**9
            )
        },
        symbology_json=symbology({"ESH2": 5482}, dt.date(2021, 12, 25), dt.date(2021, 12, 26)),
    )

    with pytest.raises(ValueError, match=r"holiday.zip.*2021-12-25.*no trading session"):
        ingest_archives([archive], tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_ingest_command_regular_hours_keep_only_the_local_rth_span(
    archives: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    main(
        [
            "ingest",
            *map(str, archives[:3]),
            "--out",
            str(tmp_path),
            "--symbol",
            "ES",
            "--hours",
            "rth",
        ]
    )

    printed = capsys.readouterr().out
    path = tmp_path / "live_20240109_ES_SLIM.parquet"
    ts_recv = pq.read_table(path, columns=["ts_recv"]).column("ts_recv").to_numpy()
    # 08:30-15:00 Chicago (CST, UTC-6) on 2024-01-09.
    rth_open = dt.datetime(2024, 1, 9, 14, 30, tzinfo=dt.UTC).timestamp() * 10**9
    rth_close = dt.datetime(2024, 1, 9, 21, 0, tzinfo=dt.UTC).timestamp() * 10**9
    assert f"{path}  {len(ts_recv)} rows\n" in printed
    assert len(ts_recv) > 0
    assert ts_recv.min() >= rth_open and ts_recv.max() < rth_close
    assert read_slim_metadata(path)[META_TRADING_HOURS] == "rth"
