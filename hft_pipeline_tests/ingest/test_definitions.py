"""Instrument definitions: exact tick sizes, point-in-time versions, DBN v1/v2/v3."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from fractions import Fraction

import pytest

from hft_pipeline.ingest.dbn_layout import MBP10_DTYPE
from hft_pipeline.ingest.decode import DbnFormatError
from hft_pipeline.ingest.definitions import (
    InstrumentDefinition,
    definitions_as_of,
    read_definitions,
    symbols_by_instrument,
)
from hft_pipeline_tests.ingest.dbn_builders import (
    TrickleStream,
    dbn_stream,
    make_records,
    read_zstd,
    upgrade_to_v2,
)

SLICES = "dbn-glbx-es-slices"


def test_read_definitions_v3_fixture_gives_exact_es_contract(shared_data):
    data = read_zstd(shared_data / "dbn-glbx-es-fixtures" / "test_data.definition.dbn.zst")

    (definition,) = read_definitions(io.BytesIO(data))

    assert data[:4] == b"DBN\x03"
    assert (definition.instrument_id, definition.raw_symbol, definition.asset) == (
        5482,
        "ESH1",
        "ES",
    )
    assert definition.min_price_increment == Fraction(1, 4)
    assert definition.contract_size == 50
    assert definition.instrument_class == "F"
    assert (definition.currency, definition.exchange) == ("USD", "XCME")
    assert definition.expiration == dt.datetime(2021, 3, 19, 13, 30, tzinfo=dt.UTC)
    assert definition.valid_from_ns == 1_609_113_600_000_000_000  # 2020-12-28 00:00 UTC
    assert not definition.deleted


def test_read_definitions_v1_slice_versions_apply_from_their_receive_time(shared_data):
    data = read_zstd(shared_data / SLICES / "definition-glbx-es-fut.dbn.zst")

    first, second = read_definitions(TrickleStream(data))

    assert data[:4] == b"DBN\x01"
    assert first.raw_symbol == second.raw_symbol == "ESM3"
    assert first.min_price_increment == Fraction(1, 4)
    assert definitions_as_of([first, second], first.valid_from_ns - 1) == {}
    assert definitions_as_of([second, first], first.valid_from_ns) == {95414: first}
    assert definitions_as_of([first, second], second.valid_from_ns) == {95414: second}


def test_read_definitions_v2_upgrade_reads_the_same_definitions(shared_data):
    data = read_zstd(shared_data / SLICES / "historical_bars_catalog__futures_definition.dbn.zst")
    upgraded = upgrade_to_v2(data)

    assert upgraded[:4] == b"DBN\x02"
    assert read_definitions(io.BytesIO(upgraded)) == read_definitions(io.BytesIO(data))


def test_read_definitions_asset_filter_and_symbol_map(shared_data):
    data = read_zstd(shared_data / SLICES / "historical_bars_catalog__futures_definition.dbn.zst")

    everything = read_definitions(io.BytesIO(data))
    es_only = read_definitions(io.BytesIO(data), asset="ES")

    in_force = definitions_as_of(everything, 2**62)
    assert symbols_by_instrument(in_force) == {118: "ESU4", 4358: "NQU4"}
    assert (in_force[4358].min_price_increment, in_force[4358].contract_size) == (
        Fraction(1, 4),
        20,
    )
    assert [definition.raw_symbol for definition in es_only] == ["ESU4"]


def test_definitions_as_of_deleted_instrument_drops_out():
    added = InstrumentDefinition(
        instrument_id=1,
        raw_symbol="ZNH4",
        asset="ZN",
        instrument_class="F",
        min_price_increment=Fraction(1, 64),
        contract_size=Fraction(1000),
        currency="USD",
        exchange="XCBT",
        expiration=None,
        activation=None,
        valid_from_ns=100,
        deleted=False,
    )
    deleted = dataclasses.replace(added, valid_from_ns=200, deleted=True)

    assert definitions_as_of([added, deleted], 150) == {1: added}
    assert definitions_as_of([added, deleted], 200) == {}


def test_read_definitions_other_schema_raises_naming_it():
    data = dbn_stream(make_records(MBP10_DTYPE, [1]), "mbp-10", compress=False)

    with pytest.raises(DbnFormatError, match="m.dbn: metadata says schema 'mbp-10'"):
        read_definitions(io.BytesIO(data), source="m.dbn")


def test_read_definitions_truncated_stream_raises(shared_data):
    data = read_zstd(shared_data / SLICES / "definition-glbx-es-fut.dbn.zst")[:-10]

    with pytest.raises(DbnFormatError, match=r"defs.dbn: stream ends mid-record \(\d+ trailing"):
        read_definitions(io.BytesIO(data), source="defs.dbn")


def test_read_definitions_not_dbn_raises():
    with pytest.raises(DbnFormatError, match="x.zip: not a DBN stream"):
        read_definitions(io.BytesIO(b"PK\x03\x04 a zip, not DBN"), source="x.zip")
