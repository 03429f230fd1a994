"""Data-quality checks of one SLIM file, computed in DuckDB (pure: file in, verdicts out).

Their verdicts are stored beside the SLIM file (``*.checks.json``) so that a later run of
`features` can refuse a day whose latest SLIM checks failed, whichever run produced them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from hft_pipeline.layout import atomic_file


@dataclass(frozen=True)
class QualityCheck:
    name: str
    passed: bool
    violations: int
    rows: int
    description: str


QUALITY_CHECKS = (
    "session_complete",
    "not_empty",
    "book_not_crossed",
    "prices_on_tick_grid",
    "ts_event_not_after_ts_recv",
    "ts_recv_ordered",
)


def run_quality_checks(
    slim_path: Path, tick_size: float, missing_utc_days: int = 0
) -> list[QualityCheck]:
    """Counts violations of each rule over the file's rows; a check passes with none.

    ``missing_utc_days`` is how many UTC days of the session had no archive: a partial
    session is written (to be inspected) but fails `session_complete`.
    """
    rules = {
        "not_empty": (
            "count(*) = 0",
            "the session has at least one record",
        ),
        "book_not_crossed": (
            "bid_px_00 >= ask_px_00",
            "best bid strictly below best ask wherever both sides are present",
        ),
        "prices_on_tick_grid": (
            f"abs(bid_px_00 / {tick_size!r} - round(bid_px_00 / {tick_size!r})) > 1e-6 "
            f"OR abs(ask_px_00 / {tick_size!r} - round(ask_px_00 / {tick_size!r})) > 1e-6 "
            f"OR abs(trade_px / {tick_size!r} - round(trade_px / {tick_size!r})) > 1e-6",
            f"best prices and trade prices are multiples of the tick ({tick_size})",
        ),
        "ts_event_not_after_ts_recv": (
            "ts_event > ts_recv",
            "the venue's event time is not after our receive time",
        ),
        "ts_recv_ordered": (
            "ts_recv < lag(ts_recv) OVER (ORDER BY file_row_number)",
            "rows are in arrival (ts_recv) order",
        ),
    }
    source = f"read_parquet('{slim_path.as_posix()}', file_row_number = true)"
    with duckdb.connect() as connection:
        rows = connection.execute(f"SELECT count(*) FROM {source}").fetchone()[0]
        checks = [
            QualityCheck(
                "session_complete",
                missing_utc_days == 0,
                missing_utc_days,
                rows,
                "every UTC day the session overlaps had an archive",
            )
        ]
        for name, (violation, description) in rules.items():
            if name == "not_empty":
                violations = int(rows == 0)
            else:
                # Window expressions cannot sit in a FILTER clause: flag rows first, then count.
                violations = connection.execute(
                    f"SELECT count(*) FILTER (WHERE bad) FROM "
                    f"(SELECT coalesce({violation}, false) AS bad FROM {source})"
                ).fetchone()[0]
            checks.append(QualityCheck(name, violations == 0, int(violations), rows, description))
    return checks


def checks_file(slim_path: Path) -> Path:
    return slim_path.with_name(slim_path.name.removesuffix(".parquet") + ".checks.json")


def write_check_record(slim_path: Path, checks: list[QualityCheck]) -> None:
    with atomic_file(checks_file(slim_path)) as temporary:
        temporary.write_text(json.dumps([asdict(check) for check in checks], indent=1))


def failed_checks(slim_path: Path) -> list[str]:
    """Names of the failed checks of the file's latest ingest; raises if none was recorded."""
    record = checks_file(slim_path)
    if not record.is_file():
        raise FileNotFoundError(
            f"{slim_path.name} has no check record ({record.name}): re-materialize its "
            "slim_parquet partition so its data-quality checks run"
        )
    return [check["name"] for check in json.loads(record.read_text()) if not check["passed"]]
