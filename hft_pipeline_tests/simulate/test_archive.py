"""The sample bucket: keys, ZIP members, DBN bytes, UTC-day split, contracts, determinism."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import zipfile
from pathlib import Path

import databento_dbn
import numpy as np
import pytest
import zstandard

from hft_pipeline.config import DEFAULT_RAW_KEY_PATTERN
from hft_pipeline.ingest.dbn_layout import MBP10_DTYPE, PRELUDE_SIZE, UNDEF_PRICE
from hft_pipeline.partitions import TradingCalendar
from hft_pipeline.simulate import simulate_bucket
from hft_pipeline.simulate.archive import contract, front_contract

QUIET_RATE = 0.05  # events per second: a few thousand records per session keeps tests fast
NS_PER_HOUR = 3600 * 10**9
NS_PER_DAY = 24 * NS_PER_HOUR


def _simulate(out_dir: Path, start: dt.date, end: dt.date, symbols=("ES",), **kwargs) -> list[Path]:
    kwargs.setdefault("events_per_second", QUIET_RATE)
    return simulate_bucket(out_dir, start, end, list(symbols), **kwargs)


def _read_archive(path: Path) -> tuple[dict[str, bytes], bytes, np.ndarray]:
    """Members, the decompressed DBN stream and its records as numpy."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    (data_name,) = [name for name in members if name.endswith(".mbp-10.dbn.zst")]
    stream = zstandard.ZstdDecompressor().decompress(members[data_name])
    metadata_length = int.from_bytes(stream[4:PRELUDE_SIZE], "little")
    records = np.frombuffer(stream[PRELUDE_SIZE + metadata_length :], MBP10_DTYPE)
    return members, stream, records


def _utc_days(paths: list[Path]) -> set[dt.date]:
    return {dt.datetime.strptime(path.parent.parent.name, "%Y%m%d").date() for path in paths}


@pytest.fixture(scope="module")
def week_bucket(tmp_path_factory) -> tuple[Path, list[Path]]:
    """ES and ZN over the trading days 2024-01-05 (Fri) .. 2024-01-08 (Mon)."""
    out_dir = tmp_path_factory.mktemp("bucket")
    return out_dir, _simulate(out_dir, dt.date(2024, 1, 5), dt.date(2024, 1, 8), ("ES", "ZN"))


def test_simulate_bucket_keys_match_default_raw_key_pattern(week_bucket):
    out_dir, paths = week_bucket

    keys = [path.relative_to(out_dir).as_posix() for path in paths]
    matches = [re.match(DEFAULT_RAW_KEY_PATTERN, key) for key in keys]

    assert "raw/2024/20240105/ES/glbx-mdp3-20240105-ES.zip" in keys
    assert all(matches)
    assert {(m["date"], m["symbol"]) for m in matches} == {
        (day, symbol)
        for day in ("20240104", "20240105", "20240107", "20240108")
        for symbol in ("ES", "ZN")
    }


def test_simulate_bucket_monday_session_in_sunday_and_monday_archives_none_saturday(week_bucket):
    _, paths = week_bucket
    monday = TradingCalendar("CME_Equity").session(dt.date(2024, 1, 8))
    es_paths = [path for path in paths if path.parent.name == "ES"]

    sunday_records = _read_archive(es_paths[2])[2]
    monday_records = _read_archive(es_paths[3])[2]

    assert dt.date(2024, 1, 6) not in _utc_days(paths)
    assert es_paths[2].name == "glbx-mdp3-20240107-ES.zip"
    assert sunday_records["ts_recv"].min() >= monday.open_ns  # Sunday 17:00 CT onwards
    assert monday_records["ts_recv"].max() < monday.close_ns
    assert sunday_records["sequence"][-1] < monday_records["sequence"][0]


def test_simulate_bucket_records_inside_their_utc_day_sorted_sequenced(week_bucket):
    _, paths = week_bucket

    for path in paths:
        records = _read_archive(path)[2]
        day = dt.datetime.strptime(path.parent.parent.name, "%Y%m%d").date()
        record_days = records["ts_recv"].astype(np.int64) // NS_PER_DAY
        assert records.size > 0, path
        assert np.all(record_days == (day - dt.date(1970, 1, 1)).days), path
        assert np.all(np.diff(records["ts_recv"].astype(np.int64)) >= 0), path
        assert np.all(np.diff(records["sequence"].astype(np.int64)) > 0), path
        assert np.all(records["ts_event"] < records["ts_recv"]), path


def test_simulate_bucket_manifest_lists_every_other_member_with_sha256(week_bucket):
    _, paths = week_bucket

    members = _read_archive(paths[0])[0]
    manifest = json.loads(members["manifest.json"])
    listed = {entry["filename"]: entry for entry in manifest["files"]}

    assert set(listed) == set(members) - {"manifest.json"}
    for name, body in members.items():
        if name != "manifest.json":
            assert listed[name]["size"] == len(body)
            assert listed[name]["hash"] == f"sha256:{hashlib.sha256(body).hexdigest()}"


def test_simulate_bucket_zip_stores_dbn_and_deflates_json(week_bucket):
    _, paths = week_bucket

    with zipfile.ZipFile(paths[0]) as archive:
        methods = {info.filename: info.compress_type for info in archive.infolist()}
        dates = {info.date_time for info in archive.infolist()}

    assert methods == {
        "metadata.json": zipfile.ZIP_DEFLATED,
        "symbology.json": zipfile.ZIP_DEFLATED,
        "condition.json": zipfile.ZIP_DEFLATED,
        "glbx-mdp3-20240104.mbp-10.dbn.zst": zipfile.ZIP_STORED,
        "manifest.json": zipfile.ZIP_DEFLATED,
    }
    assert dates == {(1980, 1, 1, 0, 0, 0)}


def test_simulate_bucket_dbn_decodes_with_databento_record_by_record(week_bucket):
    _, paths = week_bucket

    (friday,) = [p for p in paths if p.name == "glbx-mdp3-20240105-ES.zip"]
    _, stream, records = _read_archive(friday)  # a few thousand records
    decoder = databento_dbn.DBNDecoder()
    decoder.write(stream)
    metadata, *decoded = decoder.decode()

    assert stream[:4] == b"DBN\x03"
    assert metadata.dataset == "GLBX.MDP3" and metadata.schema == "mbp-10"
    assert len(decoded) == records.size
    for ours, theirs in zip(records, decoded, strict=True):
        assert theirs.instrument_id == ours["instrument_id"]
        assert (theirs.ts_event, theirs.ts_recv) == (ours["ts_event"], ours["ts_recv"])
        assert (theirs.price, theirs.size) == (ours["price"], ours["size"])
        assert (theirs.action, theirs.side) == (ours["action"].decode(), ours["side"].decode())
        assert (theirs.depth, theirs.flags, theirs.sequence) == (
            ours["depth"],
            ours["flags"],
            ours["sequence"],
        )
        assert theirs.ts_in_delta == ours["ts_in_delta"]
        for k, level in enumerate(theirs.levels):
            mine = ours["levels"][k]
            assert (level.bid_px, level.ask_px) == (mine["bid_px"], mine["ask_px"])
            assert (level.bid_sz, level.ask_sz) == (mine["bid_sz"], mine["ask_sz"])
            assert (level.bid_ct, level.ask_ct) == (mine["bid_ct"], mine["ask_ct"])
    assert np.all(records["levels"]["bid_px"] != UNDEF_PRICE)


def test_simulate_bucket_symbology_maps_front_contract_to_its_instrument_id(week_bucket):
    _, paths = week_bucket
    es_friday = [p for p in paths if p.name == "glbx-mdp3-20240105-ES.zip"][0]

    members, stream, records = _read_archive(es_friday)
    symbology = json.loads(members["symbology.json"])
    metadata = json.loads(members["metadata.json"])
    condition = json.loads(members["condition.json"])
    decoder = databento_dbn.DBNDecoder()
    decoder.write(stream[: PRELUDE_SIZE + int.from_bytes(stream[4:8], "little")])
    (dbn_metadata,) = decoder.decode()
    esh4 = contract("ESH4")

    assert symbology["result"] == {
        "ESH4": [{"d0": "2024-01-05", "d1": "2024-01-06", "s": str(esh4.instrument_id)}]
    }
    assert symbology["stype_in"] == "raw_symbol" and symbology["stype_out"] == "instrument_id"
    assert (symbology["partial"], symbology["not_found"]) == ([], [])
    assert set(np.unique(records["instrument_id"])) == {esh4.instrument_id}
    assert dbn_metadata.mappings["ESH4"][0]["symbol"] == str(esh4.instrument_id)
    assert metadata["query"]["dataset"] == "GLBX.MDP3"
    assert metadata["query"]["schema"] == "mbp-10"
    assert metadata["query"]["symbols"] == ["ESH4"]
    assert metadata["query"]["encoding"] == "dbn"
    assert metadata["query"]["compression"] == "zstd"
    assert condition == [
        {"date": "2024-01-05", "condition": "available", "last_modified_date": "2024-01-06"}
    ]


def test_simulate_bucket_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    day = dt.date(2024, 1, 3)

    first = _simulate(tmp_path / "a", day, day, seed=7)
    again = _simulate(tmp_path / "b", day, day, seed=7)
    other = _simulate(tmp_path / "c", day, day, seed=8)

    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    assert [p.read_bytes() for p in first] != [p.read_bytes() for p in other]


def test_simulate_bucket_inner_days_do_not_depend_on_the_range(tmp_path):
    narrow = _simulate(tmp_path / "narrow", dt.date(2024, 1, 3), dt.date(2024, 1, 4))
    wide = _simulate(tmp_path / "wide", dt.date(2024, 1, 2), dt.date(2024, 1, 5))

    # UTC 2024-01-03 holds the day of the 3rd's session and the evening of the 4th's.
    (narrow_day,) = [p for p in narrow if p.name == "glbx-mdp3-20240103-ES.zip"]
    (wide_day,) = [p for p in wide if p.name == "glbx-mdp3-20240103-ES.zip"]

    assert narrow_day.read_bytes() == wide_day.read_bytes()


def test_simulate_bucket_holiday_utc_day_holds_only_next_sessions_evening(tmp_path):
    calendar = TradingCalendar("CME_Equity")
    december_26 = calendar.session(dt.date(2023, 12, 26))

    paths = _simulate(tmp_path, dt.date(2023, 12, 22), dt.date(2023, 12, 26))
    christmas = [p for p in paths if p.name == "glbx-mdp3-20231225-ES.zip"][0]
    records = _read_archive(christmas)[2]

    assert _utc_days(paths) == {
        dt.date(2023, 12, 21),
        dt.date(2023, 12, 22),
        dt.date(2023, 12, 25),
        dt.date(2023, 12, 26),
    }
    assert records["ts_recv"].min() >= december_26.open_ns  # 2023-12-25 23:00 UTC


def test_simulate_bucket_early_close_day_stops_at_the_close(tmp_path):
    mlk_day = TradingCalendar("CME_Equity").session(dt.date(2024, 1, 15))

    paths = _simulate(tmp_path, dt.date(2024, 1, 15), dt.date(2024, 1, 15))
    records = _read_archive(paths[-1])[2]

    assert mlk_day.close_ns - mlk_day.open_ns == 19 * NS_PER_HOUR  # closes 12:00 CT
    assert records["ts_recv"].max() < mlk_day.close_ns


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (dt.date(2024, 1, 2), "ESH4"),
        (dt.date(2024, 3, 6), "ESH4"),
        (dt.date(2024, 3, 7), "ESM4"),  # 8 days before the third Friday, 2024-03-15
        (dt.date(2024, 12, 11), "ESZ4"),
        (dt.date(2024, 12, 12), "ESH5"),  # 2024-12-20 expiry
    ],
)
def test_front_contract_rolls_eight_days_before_quarterly_expiry(day, expected):
    assert front_contract("ES", day).code == expected


def test_simulate_bucket_roll_session_trades_both_contracts(tmp_path):
    paths = _simulate(tmp_path, dt.date(2024, 3, 7), dt.date(2024, 3, 7))

    members, _, records = _read_archive(paths[-1])
    symbology = json.loads(members["symbology.json"])
    esh4, esm4 = contract("ESH4"), contract("ESM4")

    assert list(symbology["result"]) == ["ESM4", "ESH4"]
    assert np.count_nonzero(records["instrument_id"] == esm4.instrument_id) > np.count_nonzero(
        records["instrument_id"] == esh4.instrument_id
    )
    for instrument in (esh4, esm4):
        sequence = records["sequence"][records["instrument_id"] == instrument.instrument_id]
        assert sequence.size > 0 and np.all(np.diff(sequence.astype(np.int64)) > 0)
    assert np.all(np.diff(records["ts_recv"].astype(np.int64)) >= 0)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"signal": 1.5}, "signal must lie in"),
        ({"symbols": ["CL"]}, "no simulation profile"),
        ({"symbols": ["XYZ"]}, "no simulation profile"),
        ({"start": dt.date(2024, 1, 6), "end": dt.date(2024, 1, 7)}, "no trading day"),
        ({"events_per_second": 0.0}, "events_per_second must be positive"),
    ],
)
def test_simulate_bucket_bad_arguments_raise_naming_the_value(tmp_path, arguments, message):
    call = {
        "start": dt.date(2024, 1, 3),
        "end": dt.date(2024, 1, 3),
        "symbols": ["ES"],
        **arguments,
    }

    with pytest.raises((ValueError, KeyError), match=message):
        simulate_bucket(tmp_path, call.pop("start"), call.pop("end"), call.pop("symbols"), **call)
