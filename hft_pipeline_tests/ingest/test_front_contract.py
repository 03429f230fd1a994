"""Front contract of a root symbol: the previous day's volume decides, never the same day's."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from hft_pipeline.ingest.dbn_layout import TRADE_DTYPE
from hft_pipeline.ingest.slim import build_slim_day, choose_front_contract, read_slim_metadata
from hft_pipeline.ingest.slim_schema import (
    BASIS_NEAREST_EXPIRY,
    BASIS_NO_PREVIOUS_VOLUME,
    BASIS_PREVIOUS_DAY_VOLUME,
    META_CONTRACT,
    META_CONTRACT_VOLUMES,
    META_FRONT_CONTRACT_BASIS,
    META_FRONT_CONTRACT_RULE,
    META_PREVIOUS_CONTRACT_VOLUMES,
)
from hft_pipeline_tests.ingest.dbn_builders import (
    SESSION,
    es_archive,
    make_records,
    session_times,
)


@pytest.fixture
def two_contract_archive(tmp_path):
    """ESH1 (5482) trades 2 lots, ESM1 (5483) trades 30 lots in the session, interleaved."""
    records = make_records(
        TRADE_DTYPE,
        session_times(6),
        instrument_ids=[5482, 5483, 5482, 5483, 5483, 5483],
        actions=b"T",
        sizes=[1, 10, 1, 10, 5, 5],
    )
    return es_archive(tmp_path / "GLBX-20210105.zip", records, "trades")


def test_build_slim_day_previous_volumes_choose_the_busiest_contract(
    tmp_path, two_contract_archive
):
    summary = build_slim_day(
        [two_contract_archive],
        SESSION,
        "ES",
        tmp_path / "slim.parquet",
        previous_contract_volumes={"ESH1": 900, "ESM1": 1_200, "ESU1": 5_000},
    )

    table = pq.read_table(summary.path)
    metadata = read_slim_metadata(summary.path)
    assert (summary.contract, summary.instrument_id) == ("ESM1", 5483)
    assert set(table.column("raw_symbol").to_pylist()) == {"ESM1"}
    assert table.column("trade_sz").to_pylist() == [10, 10, 5, 5]
    assert metadata[META_CONTRACT] == "ESM1"
    assert json.loads(metadata[META_CONTRACT_VOLUMES]) == {"ESH1": 2, "ESM1": 30}
    assert metadata[META_FRONT_CONTRACT_BASIS] == BASIS_PREVIOUS_DAY_VOLUME
    assert json.loads(metadata[META_PREVIOUS_CONTRACT_VOLUMES]) == {
        "ESH1": 900,
        "ESM1": 1_200,
        "ESU1": 5_000,
    }


@pytest.mark.parametrize("previous", [None, {}])
def test_build_slim_day_without_previous_volumes_takes_nearest_expiry(
    tmp_path, two_contract_archive, previous
):
    summary = build_slim_day(
        [two_contract_archive],
        SESSION,
        "ES",
        tmp_path / "slim.parquet",
        previous_contract_volumes=previous,
    )

    # ESM1 traded more today, but today's volume would look ahead: ESH1 expires first.
    assert summary.contract == "ESH1"
    assert summary.rows == 2
    assert summary.contract_volumes == {"ESH1": 2, "ESM1": 30}
    assert summary.front_contract_basis == BASIS_NO_PREVIOUS_VOLUME
    assert read_slim_metadata(summary.path)[META_FRONT_CONTRACT_BASIS] == BASIS_NO_PREVIOUS_VOLUME


def test_choose_front_contract_previous_volume_only_for_absent_contract_takes_nearest():
    assert choose_front_contract({"ESM1", "ESH1"}, {"ESZ0": 10_000}, 2021) == "ESH1"


def test_choose_front_contract_tie_goes_to_nearest_expiry():
    assert choose_front_contract({"ESM1", "ESH1"}, {"ESH1": 5, "ESM1": 5}, 2021) == "ESH1"


def test_choose_front_contract_reads_one_digit_years_across_the_decade():
    assert choose_front_contract({"ESH1", "ESZ0"}, None, 2020) == "ESZ0"


def test_choose_front_contract_no_candidates_raises():
    with pytest.raises(ValueError, match="no candidate contract"):
        choose_front_contract(set(), None, 2021)


def test_build_slim_day_volumes_count_trades_only(tmp_path):
    records = make_records(
        TRADE_DTYPE, session_times(4), actions=[b"T", b"A", b"T", b"C"], sizes=[3, 50, 4, 60]
    )
    archive = es_archive(tmp_path / "a.zip", records, "trades")

    summary = build_slim_day([archive], SESSION, "ES", tmp_path / "slim.parquet")

    assert summary.contract_volumes == {"ESH1": 7}
    assert pq.read_table(summary.path).column("trade_px").to_pylist()[1::2] == [None, None]


def test_build_slim_day_nearest_expiry_rule_ignores_previous_volumes(
    tmp_path, two_contract_archive
):
    summary = build_slim_day(
        [two_contract_archive],
        SESSION,
        "ES",
        tmp_path / "slim.parquet",
        previous_contract_volumes={"ESH1": 900, "ESM1": 1_200},
        front_contract_rule="nearest_expiry",
    )

    metadata = read_slim_metadata(summary.path)
    assert (summary.contract, summary.rows) == ("ESH1", 2)
    assert metadata[META_CONTRACT] == "ESH1"
    assert metadata[META_FRONT_CONTRACT_RULE] == "nearest_expiry"
    assert metadata[META_FRONT_CONTRACT_BASIS] == BASIS_NEAREST_EXPIRY


def test_build_slim_day_records_previous_day_volume_rule_by_default(tmp_path, two_contract_archive):
    summary = build_slim_day([two_contract_archive], SESSION, "ES", tmp_path / "slim.parquet")

    assert read_slim_metadata(summary.path)[META_FRONT_CONTRACT_RULE] == "previous_day_volume"
    assert summary.front_contract_rule == "previous_day_volume"


def test_choose_front_contract_nearest_expiry_rule_ignores_volumes():
    volumes = {"ESH1": 5, "ESM1": 500}

    assert choose_front_contract({"ESM1", "ESH1"}, volumes, 2021, rule="nearest_expiry") == "ESH1"


def test_choose_front_contract_unknown_rule_raises():
    with pytest.raises(ValueError, match="front_contract_rule must be one of .* 'open_interest'"):
        choose_front_contract({"ESH1"}, None, 2021, rule="open_interest")
