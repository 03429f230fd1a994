"""DBN versions 1, 2 and 3 of every schema ingest reads give the same SLIM rows: the real v3
fixtures, and the same records behind v1 and v2 metadata as databento-dbn encodes it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard

from hft_pipeline.ingest.slim import build_slim_day
from hft_pipeline.partitions import TradingCalendar
from hft_pipeline_tests.ingest.dbn_builders import dbn_at_version, read_zstd, write_archive

FIXTURES = "dbn-glbx-es-fixtures"
DATA_SCHEMAS = ["mbp-10", "mbp-1", "tbbo", "trades", "mbo", "ohlcv-1s", "ohlcv-1m"]
ESH1 = {"result": {"ESH1": [{"d0": "2020-12-28", "d1": "2020-12-29", "s": "5482"}]}}


def slim_of_version(shared_data: Path, schema: str, version: int, folder: Path) -> Path:
    """The SLIM file of the fixture of ``schema``, its metadata encoded as DBN ``version``."""
    v3 = read_zstd(shared_data / FIXTURES / f"test_data.{schema}.dbn.zst")
    member = zstandard.ZstdCompressor().compress(dbn_at_version(v3, version))
    archive = write_archive(
        folder / f"v{version}.zip",
        {f"glbx-mdp3-20201228.{schema}.dbn.zst": member},
        symbology_json=ESH1,
    )
    session = TradingCalendar("CME_Equity").session(dt.date(2020, 12, 28))
    return build_slim_day([archive], session, "ES", folder / f"v{version}.parquet").path


@pytest.mark.parametrize("schema", DATA_SCHEMAS)
def test_build_slim_day_dbn_v1_v2_v3_of_each_schema_give_the_same_rows(
    shared_data, tmp_path, schema
):
    tables = {
        version: pq.read_table(slim_of_version(shared_data, schema, version, tmp_path))
        for version in (1, 2, 3)
    }

    assert tables[3].num_rows > 0
    assert tables[1].equals(tables[3])
    assert tables[2].equals(tables[3])
