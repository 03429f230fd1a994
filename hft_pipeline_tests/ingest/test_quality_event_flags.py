"""Book checks judge the book once each event is complete (DBN's F_LAST), not between the
records of one event."""

from __future__ import annotations

import datetime as dt
import zipfile

from hft_pipeline.ingest.quality import run_quality_checks
from hft_pipeline.ingest.slim import build_slim_day
from hft_pipeline.partitions import TradingCalendar


def test_real_mbo_day_crosses_only_within_events_and_at_the_opening_uncross(shared_data, tmp_path):
    archive = tmp_path / "mbo.zip"
    real = shared_data / "dbn-glbx-es-slices" / "esh4-glbx-mdp3-20231225.mbo.dbn.zst"
    with zipfile.ZipFile(archive, "w") as opened:
        opened.writestr("glbx-mdp3-20231225.mbo.dbn.zst", real.read_bytes())
    session = TradingCalendar("CME_Equity").session(dt.date(2023, 12, 26))
    summary = build_slim_day([archive], session, "ES", tmp_path / "slim.parquet")

    checks = {check.name: check for check in run_quality_checks(summary.path, 0.25)}

    crossed = checks["book_not_crossed"]
    # 88 rows are crossed, all but one between the records of an event; that one ends the
    # opening auction's first event, 69 microseconds after the open.
    assert crossed.violations == 1
    assert crossed.example_ts_recv - session.open_ns < 10**6
    assert checks["book_not_locked"].passed
    assert checks["prices_on_tick_grid"].passed
