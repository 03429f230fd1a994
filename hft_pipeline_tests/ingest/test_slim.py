"""Raw archive -> SLIM parquet: real Databento files row by row, and the file's guarantees."""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from pathlib import Path

import databento_dbn
import numpy as np
import pyarrow.parquet as pq
import pytest
import zstandard

from hft_pipeline.ingest import slim_spill
from hft_pipeline.ingest.dbn_layout import MBP1_DTYPE, MBP10_DTYPE, TRADE_DTYPE, UNDEF_PRICE
from hft_pipeline.ingest.slim import ArchiveError, build_slim_day, read_slim_metadata
from hft_pipeline.ingest.slim_schema import (
    META_CONTRACT,
    META_CONTRACT_VOLUMES,
    META_DEGRADED,
    META_PARTIAL,
    META_SOURCE_FILES,
    META_TICK_SIZE,
    META_TRADING_DAY,
    SLIM_SCHEMA,
)
from hft_pipeline.partitions import Session, TradingCalendar
from hft_pipeline_tests.ingest.dbn_builders import (
    SESSION,
    dbn_stream,
    es_archive,
    make_records,
    session_times,
    sha256,
    symbology,
    write_archive,
)

FIXTURES = "dbn-glbx-es-fixtures"
SLICES = "dbn-glbx-es-slices"


def zip_real_files(shared_data: Path, folder: str, names: list[str], path: Path, **kwargs) -> Path:
    members = {name: (shared_data / folder / name).read_bytes() for name in names}
    return write_archive(path, members, **kwargs)


def databento_rows(shared_data: Path, folder: str, names: list[str], session: Session) -> list:
    """databento_dbn's own records of the files, in SLIM order: member name, then stable sort."""
    records = []
    for name in sorted(names):
        decoder = databento_dbn.DBNDecoder()
        data = (shared_data / folder / name).read_bytes()
        decoder.write(zstandard.ZstdDecompressor().stream_reader(data).read())
        records += [
            r for r in decoder.decode()[1:] if session.open_ns <= r.ts_recv < session.close_ns
        ]
    return sorted(records, key=lambda r: (r.ts_recv, r.sequence))


def in_arrival_order(*parts: np.ndarray) -> np.ndarray:
    """Concatenate record arrays of one dtype in ts_recv order, as Databento writes them."""
    records = np.concatenate(parts)
    return records[np.argsort(records["ts_recv"], kind="stable")]


def expected_price(fixed: int) -> float | None:
    return None if fixed == UNDEF_PRICE else fixed / 1e9


def assert_rows_match(rows: list[dict], references: list, contract: str) -> None:
    assert len(rows) == len(references) > 0
    for row, reference in zip(rows, references, strict=True):
        is_trade = reference.action.value == "T"
        assert row["ts_recv"] == reference.ts_recv
        assert row["ts_event"] == reference.ts_event
        assert row["sequence"] == reference.sequence
        assert row["instrument_id"] == reference.instrument_id
        assert (row["symbol"], row["raw_symbol"]) == ("ES", contract)
        assert row["action"] == reference.action.value
        assert row["flags"] == int(reference.flags)
        assert row["trade_px"] == (expected_price(reference.price) if is_trade else None)
        assert row["trade_sz"] == (reference.size if is_trade else None)
        assert row["trade_side"] == (reference.side.value if is_trade else None)
        levels = getattr(reference, "levels", [])
        for depth in range(10):
            level = levels[depth] if depth < len(levels) else None
            for side in ("bid", "ask"):
                price = getattr(level, f"{side}_px", UNDEF_PRICE)
                assert row[f"{side}_px_{depth:02d}"] == expected_price(price)
                if price != UNDEF_PRICE:  # exact on the 0.25 tick grid
                    assert (row[f"{side}_px_{depth:02d}"] / 0.25).is_integer()
                for kind in ("sz", "ct"):
                    value = None if level is None else getattr(level, f"{side}_{kind}")
                    assert row[f"{side}_{kind}_{depth:02d}"] == value
        for bar_column in ("open", "high", "low", "close", "volume"):
            assert row[bar_column] is None


def test_build_slim_day_dbn_v3_fixtures_match_databento_decoder(shared_data, tmp_path):
    names = ["test_data.mbp-10.dbn.zst", "test_data.mbp-1.dbn.zst", "test_data.trades.dbn.zst"]
    esh1 = {"ESH1": [{"d0": "2020-12-28", "d1": "2020-12-29", "s": "5482"}]}
    archive = zip_real_files(
        shared_data,
        FIXTURES,
        names,
        tmp_path / "GLBX-20201228.zip",
        symbology_json={"result": esh1},
    )
    session = TradingCalendar("CME_Equity").session(dt.date(2020, 12, 28))

    summary = build_slim_day([archive], session, "ES", tmp_path / "slim.parquet")

    table = pq.read_table(summary.path)
    assert table.schema.equals(SLIM_SCHEMA, check_metadata=False)
    assert_rows_match(
        table.to_pylist(), databento_rows(shared_data, FIXTURES, names, session), "ESH1"
    )
    assert (summary.rows, summary.contract, summary.instrument_id) == (12, "ESH1", 5482)
    assert summary.contract_volumes == {"ESH1": 4}  # four 1-lot trades, seen by each schema
    assert summary.schemas == ["mbp-1", "mbp-10", "trades"]
    assert summary.first_ts_recv == table.column("ts_recv")[0].as_py()


def test_build_slim_day_dbn_v1_slices_match_databento_decoder(shared_data, tmp_path):
    names = [
        "futures_mbp-1_2024-07-01T23-58_2024-07-02T00-02.dbn.zst",
        "futures_trades_2024-07-01T23-58_2024-07-02T00-02.dbn.zst",
    ]
    archive = zip_real_files(shared_data, SLICES, names, tmp_path / "GLBX-20240702.zip")
    session = TradingCalendar("CME_Equity").session(dt.date(2024, 7, 2))

    summary = build_slim_day(
        [archive], session, "ES", tmp_path / "slim.parquet", expected_utc_days=session.utc_days
    )

    rows = pq.read_table(summary.path).to_pylist()
    references = databento_rows(shared_data, SLICES, names, session)
    assert_rows_match(rows, references, "ESU4")
    trades = [r for r in references if r.rtype == databento_dbn.RType.MBP_0]
    assert summary.contract_volumes == {"ESU4": sum(r.size for r in trades)}
    assert (summary.contract, summary.partial, summary.degraded) == ("ESU4", False, False)


def test_build_slim_day_real_fixture_records_metadata(shared_data, tmp_path):
    names = ["test_data.trades.dbn.zst"]
    archive = zip_real_files(shared_data, FIXTURES, names, tmp_path / "GLBX-20201228.zip")
    session = TradingCalendar("CME_Equity").session(dt.date(2020, 12, 28))

    summary = build_slim_day(
        [archive], session, "ES", tmp_path / "slim.parquet", expected_utc_days=session.utc_days
    )

    metadata = read_slim_metadata(summary.path)
    member_sha = sha256((shared_data / FIXTURES / names[0]).read_bytes())
    assert json.loads(metadata[META_SOURCE_FILES]) == [
        {"archive": "GLBX-20201228.zip", "member": names[0], "sha256": member_sha}
    ]
    assert metadata[META_TRADING_DAY] == "2020-12-28"
    assert metadata[META_TICK_SIZE] == "0.25"
    assert metadata[META_CONTRACT] == "ESH1"
    assert json.loads(metadata[META_CONTRACT_VOLUMES]) == {"ESH1": 4}
    # The request covered 2020-12-28 only; the session opened on 2020-12-27 (UTC).
    assert metadata[META_PARTIAL] == "true"
    assert summary.missing_utc_days == [dt.date(2020, 12, 27)]


def test_build_slim_day_keeps_session_span_and_root_contracts_only(tmp_path):
    times = [SESSION.open_ns - 1, SESSION.open_ns, SESSION.close_ns - 1, SESSION.close_ns]
    inside = make_records(TRADE_DTYPE, times, actions=b"T")
    spread = make_records(TRADE_DTYPE, [SESSION.open_ns + 5], instrument_ids=9999, actions=b"T")
    archive = es_archive(tmp_path / "a.zip", in_arrival_order(inside, spread), "trades")

    summary = build_slim_day([archive], SESSION, "ES", tmp_path / "slim.parquet")

    ts_recv = pq.read_table(summary.path).column("ts_recv").to_pylist()
    assert ts_recv == [SESSION.open_ns, SESSION.close_ns - 1]
    assert summary.contract_volumes == {"ESH1": 2}


def test_build_slim_day_rows_sorted_by_ts_recv_then_sequence(tmp_path):
    times = session_times(4)
    records = make_records(
        MBP1_DTYPE, [times[2], times[0], times[0], times[1]], sequence=[7, 9, 8, 1]
    )
    archive = es_archive(tmp_path / "a.zip", records, "mbp-1")

    summary = build_slim_day([archive], SESSION, "ES", tmp_path / "slim.parquet")

    table = pq.read_table(summary.path)
    assert table.column("sequence").to_pylist() == [8, 9, 1, 7]
    assert table.column("bid_px_00").null_count == 0
    assert table.column("bid_px_01").null_count == 4  # MBP-1 has one level


def test_build_slim_day_chunk_of_one_record_writes_the_same_file(tmp_path):
    records = make_records(MBP10_DTYPE, session_times(50), actions=[b"A", b"T"] * 25)
    archive = es_archive(tmp_path / "a.zip", records)

    whole = build_slim_day([archive], SESSION, "ES", tmp_path / "whole.parquet")
    one_by_one = build_slim_day([archive], SESSION, "ES", tmp_path / "one.parquet", chunk_records=1)

    assert whole.path.read_bytes() == one_by_one.path.read_bytes()
    assert one_by_one.rows == 50


def test_build_slim_day_rebuild_is_byte_identical(tmp_path):
    archive = es_archive(tmp_path / "a.zip", make_records(MBP10_DTYPE, session_times(30)))
    out = tmp_path / "slim.parquet"

    build_slim_day([archive], SESSION, "ES", out)
    first = out.read_bytes()
    build_slim_day([archive], SESSION, "ES", out)

    assert out.read_bytes() == first


def test_build_slim_day_failing_rebuild_keeps_earlier_file(tmp_path):
    records = make_records(MBP10_DTYPE, session_times(30))
    out = tmp_path / "slim.parquet"
    build_slim_day([es_archive(tmp_path / "a.zip", records)], SESSION, "ES", out)
    earlier = out.read_bytes()
    broken = write_archive(
        tmp_path / "a.zip",
        {"glbx-mdp3-20210105.mbp-10.dbn.zst": dbn_stream(records, "mbp-10")[:-50]},
        symbology_json=symbology({"ESH1": 5482}),
    )

    with pytest.raises(ArchiveError, match="glbx-mdp3-20210105.mbp-10.dbn.zst"):
        build_slim_day([broken], SESSION, "ES", out)

    assert out.read_bytes() == earlier
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "slim.parquet"]


def test_build_slim_day_record_stream_cut_mid_record_names_archive_and_member(tmp_path):
    raw = dbn_stream(make_records(TRADE_DTYPE, session_times(3)), "trades", compress=False)
    member = "glbx-mdp3-20210105.trades.dbn"
    archive = write_archive(
        tmp_path / "cut.zip", {member: raw[:-7]}, symbology_json=symbology({"ESH1": 5482})
    )

    with pytest.raises(ArchiveError, match=rf"archive cut\.zip, member '{member}': .*mid-record"):
        build_slim_day([archive], SESSION, "ES", tmp_path / "slim.parquet")


def test_build_slim_day_unknown_dbn_version_names_member(tmp_path):
    raw = bytearray(
        dbn_stream(make_records(TRADE_DTYPE, session_times(3)), "trades", compress=False)
    )
    raw[3] = 7
    archive = write_archive(
        tmp_path / "v7.zip", {"day.trades.dbn": bytes(raw)}, symbology_json=symbology({"ESH1": 1})
    )

    with pytest.raises(
        ArchiveError, match=r"v7\.zip, member 'day.trades.dbn': unknown DBN version 7"
    ):
        build_slim_day([archive], SESSION, "ES", tmp_path / "slim.parquet")


def test_build_slim_day_symbology_without_root_contract_raises(tmp_path):
    records = make_records(TRADE_DTYPE, session_times(3), instrument_ids=7777)
    archive = write_archive(
        tmp_path / "nq.zip",
        {"day.trades.dbn.zst": dbn_stream(records, "trades")},
        symbology_json=symbology({"NQH1": 7777}),
    )

    with pytest.raises(ArchiveError, match=r"nq\.zip, member 'symbology.json': no ES contract"):
        build_slim_day([archive], SESSION, "ES", tmp_path / "slim.parquet")


def test_build_slim_day_corrupt_archive_raises_naming_archive(tmp_path):
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(b"PK\x03\x04" + b"\x00" * 64)

    with pytest.raises(ArchiveError, match=r"archive corrupt\.zip: not a readable ZIP"):
        build_slim_day([corrupt], SESSION, "ES", tmp_path / "slim.parquet")


def test_build_slim_day_evil_member_raises_and_writes_nothing(tmp_path):
    archive = es_archive(
        tmp_path / "evil.zip", make_records(TRADE_DTYPE, session_times(2)), "trades"
    )
    with zipfile.ZipFile(archive, "a") as zipped:
        zipped.writestr("../evil", b"payload")

    with pytest.raises(ArchiveError, match=r"evil\.zip, member '\.\./evil': unsafe member path"):
        build_slim_day([archive], SESSION, "ES", tmp_path / "slim.parquet")

    assert not (tmp_path / "slim.parquet").exists()


def test_build_slim_day_empty_session_writes_empty_file(tmp_path):
    late = make_records(TRADE_DTYPE, [SESSION.close_ns + 1], actions=b"T")
    archive = es_archive(tmp_path / "a.zip", late, "trades")

    summary = build_slim_day([archive], SESSION, "ES", tmp_path / "slim.parquet")

    table = pq.read_table(summary.path)
    assert (summary.rows, table.num_rows) == (0, 0)
    assert (summary.first_ts_recv, summary.last_ts_recv) == (None, None)
    assert table.schema.equals(SLIM_SCHEMA, check_metadata=False)
    assert summary.contract == "ESH1"  # nearest expiry among the archive's contracts
    assert summary.contract_volumes == {}


def test_build_slim_day_two_archives_join_days_and_flag_degraded(tmp_path):
    hour = 3600 * 10**9
    evening = make_records(TRADE_DTYPE, [SESSION.open_ns + 10], actions=b"T", sizes=3)
    day = make_records(TRADE_DTYPE, [SESSION.close_ns - 10], actions=b"T", sizes=4)
    evening_stream = dbn_stream(
        evening, "trades", start_ns=SESSION.open_ns - 23 * hour, end_ns=SESSION.open_ns + hour
    )
    first = write_archive(
        tmp_path / "GLBX-20210104.zip",
        {"d.trades.dbn.zst": evening_stream},
        symbology_json=symbology({"ESH1": 5482}),
    )
    second = write_archive(
        tmp_path / "GLBX-20210105.zip",
        {"d.trades.dbn.zst": dbn_stream(day, "trades", start_ns=SESSION.open_ns + hour)},
        symbology_json=symbology({"ESH1": 5482}),
        condition_json=[{"date": "2021-01-05", "condition": "degraded"}],
    )
    out = tmp_path / "slim.parquet"

    summary = build_slim_day(
        [second, first], SESSION, "ES", out, expected_utc_days=SESSION.utc_days
    )

    metadata = read_slim_metadata(summary.path)
    assert pq.read_table(summary.path).column("trade_sz").to_pylist() == [3, 4]
    assert (summary.partial, summary.degraded) == (False, True)
    assert summary.contract_volumes == {"ESH1": 7}
    assert (metadata[META_PARTIAL], metadata[META_DEGRADED]) == ("false", "true")
    archives = [source["archive"] for source in summary.source_files]
    assert archives == ["GLBX-20210104.zip", "GLBX-20210105.zip"]


def test_build_slim_day_missing_expected_day_sets_partial(tmp_path):
    day = make_records(TRADE_DTYPE, [SESSION.close_ns - 10], actions=b"T")
    archive = write_archive(
        tmp_path / "GLBX-20210105.zip",
        {"d.trades.dbn.zst": dbn_stream(day, "trades", start_ns=SESSION.close_ns - 3600 * 10**9)},
        symbology_json=symbology({"ESH1": 5482}),
    )

    summary = build_slim_day(
        [archive], SESSION, "ES", tmp_path / "slim.parquet", expected_utc_days=SESSION.utc_days
    )

    assert (summary.rows, summary.partial) == (1, True)
    assert summary.missing_utc_days == [dt.date(2021, 1, 4)]


def test_build_slim_day_row_groups_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(slim_spill, "ROW_GROUP_ROWS", 8)
    archive = es_archive(tmp_path / "a.zip", make_records(MBP10_DTYPE, session_times(20)))

    summary = build_slim_day([archive], SESSION, "ES", tmp_path / "slim.parquet")

    metadata = pq.ParquetFile(summary.path).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [8, 8, 4]
    assert metadata.row_group(0).column(0).compression == "ZSTD"


def test_build_slim_day_instrument_id_reused_next_day_maps_each_day_point_in_time(tmp_path):
    """symbology.json gives id 7 to ESH1 on 2021-01-04 and to ESM1 on 2021-01-05: each daily
    member's records take the contract of their own day."""
    day_ns = 86_400 * 10**9
    evening = make_records(TRADE_DTYPE, [SESSION.open_ns + 10], instrument_ids=7, actions=b"T")
    day = make_records(TRADE_DTYPE, [SESSION.close_ns - 10], instrument_ids=7, actions=b"T")
    first_day_ns = SESSION.open_ns - 23 * 3600 * 10**9  # 2021-01-04 00:00 UTC
    reused = {
        "ESH1": [{"d0": "2021-01-04", "d1": "2021-01-05", "s": "7"}],
        "ESM1": [{"d0": "2021-01-05", "d1": "2021-01-06", "s": "7"}],
    }
    archive = write_archive(
        tmp_path / "GLBX-20210104-20210105.zip",
        {
            "glbx-mdp3-20210104.trades.dbn.zst": dbn_stream(
                evening, "trades", start_ns=first_day_ns, end_ns=first_day_ns + day_ns
            ),
            "glbx-mdp3-20210105.trades.dbn.zst": dbn_stream(
                day, "trades", start_ns=first_day_ns + day_ns, end_ns=first_day_ns + 2 * day_ns
            ),
        },
        symbology_json={"result": reused},
    )

    summary = build_slim_day([archive], SESSION, "ES", tmp_path / "slim.parquet")

    assert summary.contract_volumes == {"ESH1": 1, "ESM1": 1}
    assert summary.contract == "ESH1"  # nearest expiry: no previous-day volume given
    assert pq.read_table(summary.path).column("ts_recv").to_pylist() == [SESSION.open_ns + 10]
