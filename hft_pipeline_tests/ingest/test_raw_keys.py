import datetime as dt

import pytest

from hft_pipeline.automation import plan_slim_requests
from hft_pipeline.config import DEFAULT_RAW_KEY_PATTERN
from hft_pipeline.ingest.raw_keys import RawKeyParser, session_archives
from hft_pipeline.partitions import PipelinePartitions
from hft_pipeline.resources import StoredObject

PARSER = RawKeyParser(DEFAULT_RAW_KEY_PATTERN, "raw/{yyyy}/{yyyymmdd}/")
STAMP = dt.datetime(2024, 1, 9, tzinfo=dt.UTC)


def _archive(key: str, etag: str = "e"):
    return PARSER.parse(StoredObject(key, 1, etag, STAMP))


@pytest.fixture(scope="module")
def partitions() -> PipelinePartitions:
    return PipelinePartitions.build(
        "CME_Equity", dt.date(2024, 1, 2), dt.date(2024, 3, 1), ("ES", "ZN")
    )


def test_parse_reads_day_and_optional_symbol_and_rejects_other_keys():
    with_symbol = _archive("raw/2024/20240102/ES/glbx-mdp3-20240102-ES.zip")
    all_symbols = _archive("raw/2024/20240102/GLBX-20240102.zip")

    assert (with_symbol.utc_day, with_symbol.symbol) == (dt.date(2024, 1, 2), "ES")
    assert (all_symbols.utc_day, all_symbols.symbol) == (dt.date(2024, 1, 2), None)
    assert _archive("raw/2024/20240102/ES/notes.txt") is None
    assert _archive("raw/2024/20241399/ES/x.zip") is None  # no such date
    assert PARSER.prefix_for(dt.date(2024, 1, 2)) == "raw/2024/20240102/"
    assert PARSER.listing_prefix == "raw/"


def test_session_archives_reports_missing_utc_days(partitions):
    monday = partitions.calendar.session(dt.date(2024, 1, 8))
    archives = [_archive("raw/2024/20240108/ES/a.zip"), _archive("raw/2024/20240107/ZN/a.zip")]

    found, missing = session_archives(archives, monday, "ES")

    assert [a.object.key for a in found] == ["raw/2024/20240108/ES/a.zip"]
    assert missing == [dt.date(2024, 1, 7)]


def test_plan_requests_only_complete_sessions_and_unsplit_archives_serve_all_symbols(partitions):
    sunday = _archive("raw/2024/20240107/GLBX-20240107.zip")
    monday = _archive("raw/2024/20240108/GLBX-20240108.zip")

    only_sunday = plan_slim_requests([sunday], [sunday], partitions, ("ES", "ZN"))
    both = plan_slim_requests([monday], [sunday, monday], partitions, ("ES", "ZN"))

    assert only_sunday == []
    assert [(r.day, r.symbol) for r in both] == [
        (dt.date(2024, 1, 8), "ES"),
        (dt.date(2024, 1, 8), "ZN"),
    ]
