"""Which bucket objects are raw archives, and of which UTC day and symbol (pure functions)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hft_pipeline.partitions import Session
from hft_pipeline.resources import ObjectStore, StoredObject


@dataclass(frozen=True)
class RawArchive:
    """A bucket object recognised as one UTC day's archive; symbol None means all symbols."""

    object: StoredObject
    utc_day: dt.date
    symbol: str | None


@dataclass(frozen=True)
class RawKeyParser:
    pattern: str
    day_prefix: str

    def parse(self, stored: StoredObject) -> RawArchive | None:
        match = re.match(self.pattern, stored.key)
        if match is None:
            return None
        try:
            day = dt.datetime.strptime(match["date"], "%Y%m%d").date()
        except ValueError:
            return None
        symbol = match.groupdict().get("symbol")
        return RawArchive(stored, day, symbol)

    def prefix_for(self, utc_day: dt.date) -> str:
        return self.day_prefix.format(yyyy=f"{utc_day:%Y}", yyyymmdd=f"{utc_day:%Y%m%d}")

    @property
    def listing_prefix(self) -> str:
        """The fixed part of the day prefix: everything the sensor has to list."""
        return self.day_prefix.split("{", 1)[0]


def archives_of(archives: Iterable[RawArchive], utc_day: dt.date, symbol: str) -> list[RawArchive]:
    """The archives holding `symbol` on `utc_day`, sorted by key."""
    found = [
        archive
        for archive in archives
        if archive.utc_day == utc_day and archive.symbol in (None, symbol)
    ]
    return sorted(found, key=lambda archive: archive.object.key)


def session_archives(
    archives: Sequence[RawArchive], session: Session, symbol: str
) -> tuple[list[RawArchive], list[dt.date]]:
    """Archives a session needs, and the UTC days of the session that have none."""
    found, missing = [], []
    for utc_day in session.utc_days:
        day_archives = archives_of(archives, utc_day, symbol)
        found.extend(day_archives)
        if not day_archives:
            missing.append(utc_day)
    return found, missing


def archives_fingerprint(archives: Iterable[RawArchive]) -> str:
    """Changes when any archive of a session is added or rewritten (keys and ETags)."""
    digest = hashlib.sha256()
    for archive in sorted(archives, key=lambda a: a.object.key):
        digest.update(f"{archive.object.key}\0{archive.object.etag}\n".encode())
    return digest.hexdigest()[:16]


def list_day_archives(
    store: ObjectStore, parser: RawKeyParser, utc_day: dt.date
) -> list[RawArchive]:
    """Every recognised archive listed under one UTC day's prefix."""
    parsed = (parser.parse(stored) for stored in store.list_objects(parser.prefix_for(utc_day)))
    return [archive for archive in parsed if archive is not None and archive.utc_day == utc_day]


def list_session_archives(
    store: ObjectStore, parser: RawKeyParser, session: Session
) -> list[RawArchive]:
    return [
        archive for day in session.utc_days for archive in list_day_archives(store, parser, day)
    ]
