"""build_slim_day end to end over every source a Databento ZIP may hold: OHLCV bars, MBO
replayed into books, Databento CSV members, and definition members."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import databento
import numpy as np
import pyarrow.parquet as pq
import pytest

from hft_pipeline.ingest.dbn_layout import MBP10_DTYPE, RTYPE_OHLCV_1M
from hft_pipeline.ingest.mbo_book import F_LAST
from hft_pipeline.ingest.slim import ArchiveError, build_slim_day, read_slim_metadata
from hft_pipeline.ingest.slim_schema import (
    META_BAR_INTERVAL_NS,
    META_CONTRACT,
    META_TICK_SIZE,
    META_TICK_SIZE_SOURCE,
    TICK_FROM_DEFINITION,
    TICK_FROM_ROOT_SPEC,
)
from hft_pipeline.ingest.tools import ingest_archives
from hft_pipeline.partitions import TradingCalendar
from hft_pipeline_tests.ingest.dbn_builders import (
    SESSION,
    dbn_stream,
    es_archive,
    make_ohlcv_records,
    make_records,
    session_times,
    symbology,
    write_archive,
)

SLICES = "dbn-glbx-es-slices"
MINUTE_NS = 60 * 10**9
CALENDAR = TradingCalendar("CME_Equity")


def slim_rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def test_ohlcv_1m_archive_rows_at_bar_close_with_interval_metadata(tmp_path):
    # Bars open every minute from 2 minutes before the open; the first closes one minute
    # before it (out), the second exactly at it (in); the last closes at the close (out).
    opens = np.arange(SESSION.open_ns - 2 * MINUTE_NS, SESSION.close_ns, MINUTE_NS)
    bars = make_ohlcv_records(RTYPE_OHLCV_1M, opens, 3700.0 + (np.arange(len(opens)) % 4) / 4)
    archive = es_archive(tmp_path / "bars.zip", bars, schema="ohlcv-1m")

    summary = build_slim_day([archive], SESSION, "ES", tmp_path / "slim.parquet")

    table = pq.read_table(summary.path)
    ts_recv = table.column("ts_recv").to_numpy()
    ts_event = table.column("ts_event").to_numpy()
    assert summary.rows == len(opens) - 2
    assert summary.bar_interval_ns == MINUTE_NS and summary.schemas == ["ohlcv-1m"]
    assert read_slim_metadata(summary.path)[META_BAR_INTERVAL_NS] == str(MINUTE_NS)
    np.testing.assert_array_equal(ts_recv, ts_event + MINUTE_NS)
    assert ts_recv[0] == SESSION.open_ns and ts_recv[-1] == SESSION.close_ns - MINUTE_NS
    assert bool(np.all(np.diff(ts_recv) > 0))
    assert table.column("sequence").null_count == summary.rows
    assert table.column("close").to_pylist()[:2] == [3700.25, 3700.5]  # bars 1 and 2
    assert summary.contract_volumes == {"ESH1": 10 * summary.rows}


def test_ohlcv_bars_of_two_intervals_in_one_session_are_refused(tmp_path):
    minute = make_ohlcv_records(RTYPE_OHLCV_1M, [SESSION.open_ns], [3700.0])
    second = minute.copy()
    second["rtype"] = 0x20  # OHLCV-1s
    archive = write_archive(
        tmp_path / "bars.zip",
        {
            "glbx-mdp3-20210105.ohlcv-1m.dbn.zst": dbn_stream(minute, "ohlcv-1m"),
            "glbx-mdp3-20210105.ohlcv-1s.dbn.zst": dbn_stream(second, "ohlcv-1s"),
        },
        symbology_json=symbology({"ESH1": 5482}),
    )

    with pytest.raises(ValueError, match=r"several intervals \(\['ohlcv-1m', 'ohlcv-1s'\]\)"):
        build_slim_day([archive], SESSION, "ES", tmp_path / "slim.parquet")


def test_real_mbo_days_replayed_into_ten_level_books_not_crossed_after_the_open(
    shared_data, tmp_path
):
    # The 24th holds only a snapshot, the 25th a snapshot then the session's first hour.
    archive = tmp_path / "mbo.zip"
    with zipfile.ZipFile(archive, "w") as opened:
        for day in ("20231224", "20231225"):
            real = shared_data / SLICES / f"esh4-glbx-mdp3-{day}.mbo.dbn.zst"
            opened.writestr(f"glbx-mdp3-{day}.mbo.dbn.zst", real.read_bytes())
    session = CALENDAR.session(dt.date(2023, 12, 26))

    summary = build_slim_day(
        [archive],
        session,
        "ES",
        tmp_path / "slim.parquet",
        expected_utc_days=session.utc_days,
        chunk_records=10_000,
    )

    table = pq.read_table(summary.path)
    ts_recv = table.column("ts_recv").to_numpy()
    flags = table.column("flags").to_numpy()
    best_bid = table.column("bid_px_00").to_numpy(zero_copy_only=False)
    best_ask = table.column("ask_px_00").to_numpy(zero_copy_only=False)
    # Complete events once the opening auction has uncrossed (its first event, 69 us in).
    settled = ((flags & F_LAST) > 0) & (ts_recv > session.open_ns + 10**9)
    assert summary.contract == "ESH4" and summary.schemas == ["mbo"]
    assert summary.rows > 50_000 and ts_recv[0] >= session.open_ns
    assert bool(np.all(np.diff(ts_recv) >= 0))
    assert table.column("bid_px_09").null_count == 0
    assert table.column("ask_px_09").null_count == 0
    assert settled.sum() > 40_000 and bool(np.all(best_bid[settled] < best_ask[settled]))
    stats = summary.mbo_replay
    assert stats is not None and stats.events > summary.rows
    assert (stats.unknown_orders, stats.duplicate_adds, stats.oversized_cancels) == (0, 0, 0)
    assert summary.partial and summary.missing_utc_days == [dt.date(2023, 12, 26)]
    assert summary.contract_volumes["ESH4"] > 0


def test_csv_archive_gives_the_same_rows_as_the_dbn_archive(tmp_path):
    times = session_times(500, step_ns=97_000_000)
    actions = np.where(np.arange(500) % 5 == 0, b"T", b"A")
    records = make_records(MBP10_DTYPE, times, instrument_ids=[5482, 5483] * 250, actions=actions)
    dbn_archive = es_archive(tmp_path / "dbn.zip", records)
    dbn_file = tmp_path / "records.dbn"
    dbn_file.write_bytes(dbn_stream(records, "mbp-10", compress=False))
    csv_file = tmp_path / "records.csv"
    databento.DBNStore.from_file(dbn_file).to_csv(csv_file, pretty_px=True, pretty_ts=True)
    csv_archive = write_archive(
        tmp_path / "csv.zip",
        {"glbx-mdp3-20210105.mbp-10.csv": csv_file.read_bytes()},
        symbology_json=symbology({"ESH1": 5482, "ESM1": 5483}),
    )

    from_dbn = build_slim_day([dbn_archive], SESSION, "ES", tmp_path / "dbn.parquet")
    from_csv = build_slim_day([csv_archive], SESSION, "ES", tmp_path / "csv.parquet")

    assert from_csv.rows == from_dbn.rows == 250
    assert slim_rows(from_csv.path) == slim_rows(from_dbn.path)
    assert from_csv.contract_volumes == from_dbn.contract_volumes
    assert from_csv.schemas == ["mbp-10"]
    assert from_csv.source_files[0]["member"] == "glbx-mdp3-20210105.mbp-10.csv"


def _slims_from_dbn_and_its_csv(real: Path, member: str, day: dt.date, folder: Path) -> list:
    """The SLIM build of session ``day`` from the real DBN file in an archive as ``member``
    (``<dataset>-<yyyymmdd>.<schema>``), then from Databento's CSV of the same file."""
    csv_file = folder / f"{member}.csv"
    databento.DBNStore.from_file(real).to_csv(csv_file, map_symbols=True)
    session = CALENDAR.session(day)
    built = []
    for encoding, suffix, data in (
        ("dbn", ".dbn.zst", real.read_bytes()),
        ("csv", ".csv", csv_file.read_bytes()),
    ):
        archive = write_archive(folder / f"{encoding}.zip", {member + suffix: data})
        built.append(build_slim_day([archive], session, "ES", folder / f"{encoding}.parquet"))
    return built


def test_real_csv_member_maps_instruments_from_its_symbol_column(shared_data, tmp_path):
    real = shared_data / SLICES / "futures_trades_2024-07-01T23-58_2024-07-02T00-02.dbn.zst"

    from_dbn, from_csv = _slims_from_dbn_and_its_csv(
        real, "glbx-mdp3-20240701.trades", dt.date(2024, 7, 2), tmp_path
    )

    assert from_csv.contract == from_dbn.contract == "ESU4"
    assert from_csv.rows == from_dbn.rows == 120
    assert slim_rows(from_csv.path) == slim_rows(from_dbn.path)


def test_ingest_command_reads_a_csv_archive_without_symbology(shared_data, tmp_path):
    real = shared_data / SLICES / "futures_trades_2024-07-01T23-58_2024-07-02T00-02.dbn.zst"
    csv_file = tmp_path / "trades.csv"
    databento.DBNStore.from_file(real).to_csv(csv_file, map_symbols=True)
    archive = write_archive(
        tmp_path / "csv.zip", {"glbx-mdp3-20240701.trades.csv": csv_file.read_bytes()}
    )

    summaries = ingest_archives([archive], tmp_path / "out")

    # UTC day 2024-07-01 overlaps the sessions of 07-01 (its trades end at 21:00) and 07-02.
    rows = {summary.path.name: summary.rows for summary in summaries}
    assert rows == {"live_20240701_ES_SLIM.parquet": 0, "live_20240702_ES_SLIM.parquet": 120}
    assert {summary.contract for summary in summaries} == {"ESU4"}
    assert all(summary.partial for summary in summaries)  # neither has all its UTC days


def test_csv_member_without_schema_in_name_or_metadata_names_the_member(tmp_path):
    archive = write_archive(
        tmp_path / "csv.zip",
        {"export.csv": b"ts_recv,ts_event\n"},
        symbology_json=symbology({"ESH1": 5482}),
    )

    with pytest.raises(ArchiveError, match=r"member 'export.csv': cannot tell the CSV file's"):
        build_slim_day([archive], SESSION, "ES", tmp_path / "slim.parquet")


def esm4_archive(shared_data: Path, path: Path, *, with_definition: bool) -> Path:
    """MBP-10 records of instrument 5602 in the session of 2024-05-08, named by no symbology:
    only the real ESM4 definition member (when included) says which contract it is."""
    session = CALENDAR.session(dt.date(2024, 5, 8))
    times = session.open_ns + 10**9 + np.arange(50, dtype=np.uint64) * 10**9
    records = make_records(MBP10_DTYPE, times, instrument_ids=5602)
    members = {
        "glbx-mdp3-20240508.mbp-10.dbn.zst": dbn_stream(
            records, "mbp-10", start_ns=session.open_ns, end_ns=session.close_ns
        )
    }
    if with_definition:
        real = shared_data / SLICES / "orderbooks_definition.dbn.zst"
        members["glbx-mdp3-20240508.definition.dbn.zst"] = real.read_bytes()
    return write_archive(path, members)


def test_definition_member_maps_the_instrument_and_gives_the_tick(shared_data, tmp_path):
    archive = esm4_archive(shared_data, tmp_path / "defs.zip", with_definition=True)
    session = CALENDAR.session(dt.date(2024, 5, 8))

    summary = build_slim_day([archive], session, "ES", tmp_path / "slim.parquet")

    metadata = read_slim_metadata(summary.path)
    assert summary.contract == "ESM4" and summary.instrument_id == 5602
    assert summary.rows == 50
    assert summary.tick_size == 0.25 and summary.tick_size_source == TICK_FROM_DEFINITION
    assert metadata[META_TICK_SIZE_SOURCE] == TICK_FROM_DEFINITION
    assert metadata[META_TICK_SIZE] == "0.25" and metadata[META_CONTRACT] == "ESM4"
    assert summary.schemas == ["mbp-10"]  # the definition member is not record data


def test_without_definition_or_symbology_the_member_is_refused_by_name(shared_data, tmp_path):
    archive = esm4_archive(shared_data, tmp_path / "bare.zip", with_definition=False)
    session = CALENDAR.session(dt.date(2024, 5, 8))

    with pytest.raises(ArchiveError, match=r"member 'glbx-mdp3-20240508.mbp-10.dbn.zst': no ES"):
        build_slim_day([archive], session, "ES", tmp_path / "slim.parquet")


def test_archive_without_definition_takes_the_tick_from_root_specs(tmp_path):
    records = make_records(MBP10_DTYPE, session_times(10))
    archive = es_archive(tmp_path / "plain.zip", records)

    summary = build_slim_day([archive], SESSION, "ES", tmp_path / "slim.parquet")

    assert summary.tick_size_source == TICK_FROM_ROOT_SPEC and summary.tick_size == 0.25
    assert summary.mbo_replay is None and summary.bar_interval_ns is None


def test_caps_given_to_build_slim_day_refuse_the_archive_by_name(tmp_path):
    records = make_records(MBP10_DTYPE, session_times(10))
    archive = es_archive(tmp_path / "capped.zip", records)

    with pytest.raises(ArchiveError, match=r"archive capped.zip: members declare .* over the cap"):
        build_slim_day(
            [archive], SESSION, "ES", tmp_path / "slim.parquet", max_uncompressed_gb=1e-9
        )


def test_real_mbo_csv_member_replays_into_the_same_books_as_its_dbn(shared_data, tmp_path):
    real = shared_data / SLICES / "orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst"

    from_dbn, from_csv = _slims_from_dbn_and_its_csv(
        real, "glbx-mdp3-20240508.mbo", dt.date(2024, 5, 8), tmp_path
    )

    assert from_csv.contract == from_dbn.contract == "ESM4"
    assert from_csv.schemas == from_dbn.schemas == ["mbo"]
    assert from_csv.rows == from_dbn.rows > 1_000
    assert from_csv.mbo_replay == from_dbn.mbo_replay
    assert pq.read_table(from_csv.path).equals(pq.read_table(from_dbn.path))
