"""Streaming SLIM build: bounded rows in memory, out-of-order sources sorted out of core, the
same bytes on every run and whichever path wrote them, nothing left behind by a failure."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hft_pipeline.ingest import slim_spill
from hft_pipeline.ingest.dbn_layout import MBP10_DTYPE, TRADE_DTYPE
from hft_pipeline.ingest.slim import build_slim_day, read_slim_metadata
from hft_pipeline.ingest.slim_rows import records_to_slim_table
from hft_pipeline.ingest.slim_schema import (
    META_FRONT_CONTRACT_BASIS,
    META_FRONT_CONTRACT_RULE,
    META_PREVIOUS_CONTRACT_VOLUMES,
    META_SOURCE_TS_RECV_REGRESSIONS,
    META_TRADING_HOURS,
    SLIM_SCHEMA,
)
from hft_pipeline_tests.ingest.dbn_builders import (
    SESSION,
    dbn_stream,
    es_archive,
    make_records,
    session_times,
    symbology,
    write_archive,
)

ESH1, ESM1 = 5482, 5483


def shuffled_times(count: int, seed: int = 3) -> np.ndarray:
    """Session receive times in a random order, with repeats so that ties need ``sequence``."""
    times = session_times(count // 2)
    return np.random.default_rng(seed).permutation(np.concatenate([times, times]))


def data_pages(path: Path) -> bytes:
    """A parquet file's bytes before its footer (footer length: the 4 bytes before b"PAR1")."""
    data = path.read_bytes()
    footer = int.from_bytes(data[-8:-4], "little")
    return data[: len(data) - 8 - footer]


def written_files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


@pytest.mark.parametrize("instrument_id", [ESH1, ESM1], ids=["streamed", "spilled"])
def test_build_slim_day_out_of_order_source_sorted_and_regressions_counted(tmp_path, instrument_id):
    records = make_records(
        MBP10_DTYPE, shuffled_times(60), instrument_ids=instrument_id, sequence=np.arange(60)[::-1]
    )
    archive = es_archive(tmp_path / "a.zip", records)
    expected_regressions = int(np.count_nonzero(np.diff(records["ts_recv"].astype(np.int64)) < 0))

    # ESH1, busiest yesterday, is expected and streamed; when only ESM1 has records, ESM1 is
    # chosen and comes from its spill.
    summary = build_slim_day(
        [archive], SESSION, "ES", tmp_path / "slim.parquet", previous_contract_volumes={"ESH1": 1}
    )

    table = pq.read_table(summary.path)
    keys = list(zip(table["ts_recv"].to_pylist(), table["sequence"].to_pylist(), strict=True))
    source_keys = zip(records["ts_recv"].tolist(), records["sequence"].tolist(), strict=True)
    assert keys == sorted(source_keys)
    assert table.num_rows == summary.rows == 60
    assert summary.source_ts_recv_regressions == expected_regressions > 0
    metadata = read_slim_metadata(summary.path)
    assert json.loads(metadata[META_SOURCE_TS_RECV_REGRESSIONS]) == expected_regressions
    assert written_files(tmp_path) == ["a.zip", "slim.parquet"]


def test_build_slim_day_ts_recv_back_across_archives_counts_one_regression(tmp_path):
    hour = 3600 * 10**9
    late = make_records(TRADE_DTYPE, [SESSION.open_ns + 3 * hour], actions=b"T")
    early = make_records(TRADE_DTYPE, [SESSION.open_ns + 2 * hour], actions=b"T", sequence=[2])
    archives = [
        write_archive(
            tmp_path / name,
            {"d.trades.dbn.zst": dbn_stream(records, "trades")},
            symbology_json=symbology({"ESH1": ESH1}),
        )
        for name, records in (("GLBX-1.zip", late), ("GLBX-2.zip", early))
    ]

    summary = build_slim_day(archives, SESSION, "ES", tmp_path / "slim.parquet")

    assert summary.source_ts_recv_regressions == 1
    assert pq.read_table(summary.path)["ts_recv"].to_pylist() == [
        SESSION.open_ns + 2 * hour,
        SESSION.open_ns + 3 * hour,
    ]


def test_build_slim_day_schemas_of_one_day_interleave_without_regression(tmp_path):
    times = session_times(6)
    members = {
        "d.mbp-10.dbn.zst": dbn_stream(make_records(MBP10_DTYPE, times[::2]), "mbp-10"),
        "d.trades.dbn.zst": dbn_stream(
            make_records(TRADE_DTYPE, times[1::2], actions=b"T"), "trades"
        ),
    }
    archive = write_archive(tmp_path / "a.zip", members, symbology_json=symbology({"ESH1": ESH1}))

    summary = build_slim_day([archive], SESSION, "ES", tmp_path / "slim.parquet")

    assert pq.read_table(summary.path)["ts_recv"].to_pylist() == times.tolist()
    assert summary.source_ts_recv_regressions == 0  # each schema's stream is in order


@pytest.mark.parametrize("sorted_source", [True, False], ids=["in_order", "out_of_order"])
def test_build_slim_day_streamed_and_spilled_paths_write_the_same_bytes(tmp_path, sorted_source):
    times = session_times(40) if sorted_source else shuffled_times(40)
    archive = es_archive(tmp_path / "a.zip", make_records(MBP10_DTYPE, times, instrument_ids=ESM1))

    # ESM1 is expected (streamed) in the first build; in the second ESH1 is expected, has no
    # record, and ESM1 comes from its spill.
    streamed = build_slim_day(
        [archive], SESSION, "ES", tmp_path / "s.parquet", previous_contract_volumes={"ESM1": 1}
    )
    spilled = build_slim_day(
        [archive], SESSION, "ES", tmp_path / "p.parquet", previous_contract_volumes={"ESH1": 1}
    )

    assert streamed.contract == spilled.contract == "ESM1"
    assert data_pages(streamed.path) == data_pages(spilled.path)
    # The footers differ only where the inputs did: the previous-day volumes and what decided.
    streamed_meta, spilled_meta = map(read_slim_metadata, (streamed.path, spilled.path))
    differing = {key for key in streamed_meta if streamed_meta[key] != spilled_meta[key]}
    assert differing == {META_FRONT_CONTRACT_BASIS, META_PREVIOUS_CONTRACT_VOLUMES}


def test_build_slim_day_out_of_order_rerun_is_byte_identical(tmp_path):
    archive = es_archive(tmp_path / "a.zip", make_records(MBP10_DTYPE, shuffled_times(60)))
    out = tmp_path / "slim.parquet"

    build_slim_day([archive], SESSION, "ES", out, memory_mb=640)
    first = out.read_bytes()
    build_slim_day([archive], SESSION, "ES", out, memory_mb=1024)

    assert out.read_bytes() == first


# 40 rows in groups of 8: in order, the streamed file is the output and its 2nd group fails;
# out of order, 5 groups go to the streamed file, then the sorted output's 2nd group fails.
@pytest.mark.parametrize(
    ("sorted_source", "failing_group"), [(True, 2), (False, 7)], ids=["in_order", "out_of_order"]
)
def test_build_slim_day_writer_failure_keeps_earlier_file_and_no_temporary(
    tmp_path, monkeypatch, sorted_source, failing_group
):
    times = session_times(40) if sorted_source else shuffled_times(40)
    archive = es_archive(tmp_path / "a.zip", make_records(MBP10_DTYPE, times))
    out = tmp_path / "slim.parquet"
    build_slim_day([archive], SESSION, "ES", out)
    earlier = out.read_bytes()
    monkeypatch.setattr(slim_spill, "ROW_GROUP_ROWS", 8)
    groups_written, write_group = [], slim_spill.SlimParquetWriter._write_group

    def write_then_fail(writer, group):
        if len(groups_written) + 1 == failing_group:
            raise OSError("disk full")
        groups_written.append(group.num_rows)
        write_group(writer, group)

    monkeypatch.setattr(slim_spill.SlimParquetWriter, "_write_group", write_then_fail)

    with pytest.raises(OSError, match="disk full"):
        build_slim_day([archive], SESSION, "ES", out)

    assert groups_written == [8] * (failing_group - 1)
    assert out.read_bytes() == earlier
    assert written_files(tmp_path) == ["a.zip", "slim.parquet"]


@pytest.mark.parametrize(
    ("instrument_id", "sorted_source"),
    [(ESH1, True), (ESH1, False), (ESM1, True), (ESM1, False)],
    ids=["streamed", "streamed_sorted", "spilled", "spilled_sorted"],
)
def test_build_slim_day_rows_held_at_once_are_bounded(
    tmp_path, monkeypatch, instrument_id, sorted_source
):
    count, chunk, row_group = 200, 8, 16
    times = session_times(count) if sorted_source else shuffled_times(count)
    records = make_records(MBP10_DTYPE, times, instrument_ids=instrument_id)
    archive = es_archive(tmp_path / "a.zip", records)
    monkeypatch.setattr(slim_spill, "ROW_GROUP_ROWS", row_group)
    converted, written = [], []
    convert, write_group = (
        slim_spill.records_to_slim_table,
        slim_spill.SlimParquetWriter._write_group,
    )

    def spy_convert(records, contract, symbol):
        converted.append(len(records))
        return convert(records, contract, symbol)

    def spy_write_group(writer, group):
        written.append(group.num_rows)
        write_group(writer, group)

    monkeypatch.setattr(slim_spill, "records_to_slim_table", spy_convert)
    monkeypatch.setattr(slim_spill.SlimParquetWriter, "_write_group", spy_write_group)

    summary = build_slim_day(
        [archive],
        SESSION,
        "ES",
        tmp_path / "slim.parquet",
        previous_contract_volumes={"ESH1": 1},
        chunk_records=chunk,
    )

    assert max(converted) <= row_group
    assert max(written) <= row_group  # a sorted source is written twice: streamed, then sorted
    metadata = pq.ParquetFile(summary.path).metadata
    groups = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert groups == [row_group] * (count // row_group) + [count % row_group]
    assert summary.rows == count


def test_build_slim_day_records_rule_and_trading_hours(tmp_path):
    archive = es_archive(tmp_path / "a.zip", make_records(MBP10_DTYPE, session_times(4)))

    summary = build_slim_day(
        [archive],
        SESSION,
        "ES",
        tmp_path / "slim.parquet",
        front_contract_rule="nearest_expiry",
        trading_hours="rth",
    )

    metadata = read_slim_metadata(summary.path)
    assert metadata[META_FRONT_CONTRACT_RULE] == "nearest_expiry"
    assert metadata[META_TRADING_HOURS] == "rth"
    assert json.loads(metadata[META_SOURCE_TS_RECV_REGRESSIONS]) == 0
    assert summary.front_contract_rule == "nearest_expiry"
    assert pq.read_schema(summary.path).equals(SLIM_SCHEMA)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"trading_hours": "night"}, "trading_hours must be one of"),
        ({"memory_mb": 512}, "512 MiB is below the minimum 640 MiB"),
        ({"front_contract_rule": "most_open_interest"}, "front_contract_rule must be one of"),
    ],
)
def test_build_slim_day_bad_option_raises_before_reading(tmp_path, options, message):
    missing_archive = tmp_path / "never-read.zip"

    with pytest.raises(ValueError, match=message):
        build_slim_day([missing_archive], SESSION, "ES", tmp_path / "slim.parquet", **options)

    assert written_files(tmp_path) == []


def test_build_slim_day_out_of_order_sorts_in_a_folder_named_with_a_quote(tmp_path):
    archive = es_archive(tmp_path / "a.zip", make_records(MBP10_DTYPE, shuffled_times(10)))
    out = tmp_path / "it's here" / "slim.parquet"

    summary = build_slim_day([archive], SESSION, "ES", out)

    ts_recv = pq.read_table(summary.path)["ts_recv"].to_pylist()
    assert ts_recv == sorted(ts_recv)
    assert written_files(out.parent) == ["slim.parquet"]


_BUILD_IN_A_CHILD = """
import sys
from pathlib import Path
from hft_pipeline.ingest.slim import build_slim_day
from hft_pipeline_tests.ingest.dbn_builders import SESSION
build_slim_day([Path(sys.argv[1])], SESSION, "ES", Path(sys.argv[2]), chunk_records=4_096)
"""


def test_build_slim_day_killed_mid_write_leaves_the_earlier_file_and_no_slim_named_file(
    tmp_path,
):
    """SIGKILL once the new file's first row groups are on disk: no cleanup code runs, yet the
    earlier file is whole and nothing else carries a SLIM name (the work is in a dot-folder)."""
    out_dir = tmp_path / "out"
    out = out_dir / "live_20210105_ES_SLIM.parquet"
    small = es_archive(tmp_path / "small.zip", make_records(MBP10_DTYPE, session_times(10)))
    build_slim_day([small], SESSION, "ES", out)
    earlier = out.read_bytes()
    # Trades: 2 M records in 96 MB, a second or so of work for the child after its first group.
    trades = make_records(TRADE_DTYPE, session_times(2_000_000, step_ns=10_000), actions=b"T")
    big = es_archive(tmp_path / "big.zip", trades, "trades")
    child = subprocess.Popen([sys.executable, "-c", _BUILD_IN_A_CHILD, str(big), str(out)])
    try:
        deadline = time.monotonic() + 120
        while not any(
            path.stat().st_size > 0 for path in out_dir.glob(f".{out.name}.*/expected_contract*")
        ):
            assert child.poll() is None and time.monotonic() < deadline, "no row group written"
            time.sleep(0.01)
    finally:
        child.kill()
        child.wait()

    assert child.returncode == -signal.SIGKILL
    assert out.read_bytes() == earlier
    assert [path.name for path in out_dir.glob("*.parquet")] == [out.name]


def test_sorted_out_of_its_memory_raises_memory_error_naming_the_setting(tmp_path):
    records = make_records(MBP10_DTYPE, shuffled_times(50_000))
    table = records_to_slim_table(records, "ESH1", "ES")
    table = table.append_column("position", pa.array(np.arange(table.num_rows)))

    with (
        slim_spill._sort_connection(tmp_path, 4) as connection,
        pytest.raises(MemoryError, match=r"50,000 out-of-order rows .* 4 MiB.*ingest_memory_mb"),
    ):
        connection.register("rows", table)
        for _ in slim_spill._sorted(connection, "rows", "position", table.num_rows, 4):
            pass
