"""A session's rows of one root symbol, gathered member by member from its archives.

Every data member (DBN or Databento CSV, see :mod:`hft_pipeline.ingest.slim_members`) is read a
chunk at a time; each chunk's records of the root's contracts received within the session go
to their contract's writer or spill (:mod:`hft_pipeline.ingest.slim_spill`), with the facts the
SLIM file records (volumes, covered days, degraded days, sources).

Where the ``instrument_id -> contract`` map comes from, first found wins: symbology.json, the
DBN metadata's mappings, the definition records in force, a CSV member's ``symbol`` column.
The symbology is read point in time: each member is mapped with the intervals covering its own
UTC days (one day for Databento's daily files), so an instrument_id that names another contract
on another day cannot relabel its records.

MBO members are replayed into MBP-10 books before the session filter: a book needs every event
since its last snapshot, including those before the open. One replay serves the whole session,
fed the members in name (date) order, so a session read across two UTC-day files keeps its book.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hft_pipeline.ingest.archive import (
    ArchiveContents,
    ArchiveError,
    degraded_days,
    root_instruments,
)
from hft_pipeline.ingest.dbn_layout import MBO_DTYPE
from hft_pipeline.ingest.mbo_book import MboBookReplay
from hft_pipeline.ingest.slim_members import (
    DEFINITION_SCHEMA,
    ArchiveCaps,
    MemberRecords,
    chunk_instruments,
    open_member_records,
)
from hft_pipeline.ingest.slim_rows import slim_ts_recv, traded_volume
from hft_pipeline.ingest.slim_spill import SpilledContract, StreamedContract
from hft_pipeline.partitions import Session


@dataclass
class SessionRows:
    """The session's rows of the root's contracts, chunk by chunk, and their facts."""

    folder: Path  # temporary: the expected contract's file, the spills, the sort's files
    symbol: str
    session: Session
    choose: Callable[[Collection[str]], str]  # the front contract among candidates
    caps: ArchiveCaps
    chunk_records: int
    # The root's contracts by instrument_id from the definition records in force: the map of
    # last resort, when neither symbology.json nor the DBN metadata has one.
    defined: dict[int, str] = field(default_factory=dict)
    expected: StreamedContract | None = None  # chosen among the first contracts listed
    spills: dict[str, SpilledContract] = field(default_factory=dict)  # the other contracts
    # Traded volume per schema, then contract: every schema read sees the same trades.
    volumes: defaultdict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    # The root's (instrument_id, contract) pairs listed; an id may name two contracts on two days.
    instruments: set[tuple[int, str]] = field(default_factory=set)
    covered_days: set[dt.date] = field(default_factory=set)  # UTC days the members span
    degraded_days: set[dt.date] = field(default_factory=set)
    schemas: set[str] = field(default_factory=set)
    source_files: list[dict] = field(default_factory=list)
    replay: MboBookReplay | None = None  # created by the session's first MBO member

    def expect_front_contract(self, listed: Collection[str]) -> None:
        """Stream the contract the rule picks among the first listing; the rule picks the
        same one at the end whenever it has a record in the session."""
        if self.expected is None:
            self.expected = StreamedContract(self.folder, self.choose(listed), self.symbol)

    def rows_of(self, contract: str) -> StreamedContract | SpilledContract:
        if self.expected is not None and contract == self.expected.contract:
            return self.expected
        if contract not in self.spills:
            # Numbered, not named: a contract name comes from the archive and is not a path.
            prefix = self.folder / f"contract{len(self.spills)}"
            self.spills[contract] = SpilledContract(prefix, contract, self.symbol)
        return self.spills[contract]

    def present(self) -> dict[str, StreamedContract | SpilledContract]:
        """Contracts with a record in the session, by name."""
        found = {self.expected.contract: self.expected} if self.expected else {}
        everyone = {**found, **self.spills}
        return {name: contract for name, contract in everyone.items() if contract.rows}

    def replay_book(self, events: np.ndarray, instruments: Mapping[int, str]) -> np.ndarray:
        """MBP-10 records of the root's MBO ``events`` up to the session close."""
        if self.replay is None:
            self.replay = MboBookReplay()
        keep = np.isin(events["instrument_id"], np.fromiter(instruments, np.uint32))
        # Events after the close cannot change the session's rows: not replayed.
        keep &= events["ts_recv"] < self.session.close_ns
        return self.replay.apply(events if keep.all() else events[keep])

    def close(self) -> None:
        if self.expected is not None:
            self.expected.abandon()


def gather_archive(
    archive: ArchiveContents, schemas: Mapping[str, str], gathered: SessionRows
) -> None:
    """Add one archive's session rows, volumes, covered days and condition to ``gathered``.

    ``schemas`` gives each DBN and CSV member's schema; ``definition`` members are skipped
    (read beforehand), the others are read in name order.
    """
    session = gathered.session
    gathered.degraded_days.update(degraded_days(archive.condition, session.utc_days))
    members = sorted(name for name, schema in schemas.items() if schema != DEFINITION_SCHEMA)
    for member in members:
        with open_member_records(archive, member, gathered.chunk_records, gathered.caps) as data:
            listed = _symbology_instruments(archive, gathered.symbol, data.utc_days)
            instruments = _gather_member(archive, data, listed, gathered)
        for spill in gathered.spills.values():
            spill.end_run()
        gathered.instruments.update(instruments.items())
        gathered.covered_days.update(data.utc_days)
        gathered.schemas.add(data.schema)
        gathered.source_files.append(
            {"archive": archive.path.name, "member": member, "sha256": archive.sha256[member]}
        )


def _gather_member(
    archive: ArchiveContents,
    data: MemberRecords,
    listed: dict[int, str],
    gathered: SessionRows,
) -> dict[int, str]:
    """Pass one member's chunks on; returns the root's contracts it maps."""
    symbol = gathered.symbol
    instruments = dict(
        listed
        or _root_instruments(data.mappings, symbol, data.utc_days, archive, data.member)
        or gathered.defined
    )
    read_symbols = not instruments  # only a CSV member's symbol column is left to say
    for chunk in data.chunks:
        if read_symbols:
            instruments.update(chunk_instruments(chunk, symbol))
        if not instruments:
            continue
        gathered.expect_front_contract(set(instruments.values()))
        records = chunk.records
        if records.dtype == MBO_DTYPE:
            records = gathered.replay_book(records, instruments)
        _add_chunk(records, instruments, data.schema, gathered)
    if not instruments:
        raise _no_contract_error(symbol, data.utc_days, archive, data.member, data.mappings)
    return instruments


def _add_chunk(
    records: np.ndarray, instruments: Mapping[int, str], schema: str, gathered: SessionRows
) -> None:
    """Pass the chunk's records of the root's contracts known within the session (bars at
    their close) on to their contract's writer or spill."""
    session = gathered.session
    ts_recv, instrument_ids = slim_ts_recv(records), records["instrument_id"]
    keep = (ts_recv >= session.open_ns) & (ts_recv < session.close_ns)
    keep &= np.isin(instrument_ids, np.fromiter(instruments, np.uint32))
    if not keep.any():
        return
    # Opaque fixed-size items: selecting them is a plain memcpy, not a field-by-field copy.
    opaque = records.view(np.dtype((np.void, records.dtype.itemsize)))
    for instrument in np.unique(instrument_ids[keep]):
        selected = keep & (instrument_ids == instrument)
        rows = records if selected.all() else opaque[selected].view(records.dtype)
        contract = instruments[int(instrument)]
        gathered.rows_of(contract).append(rows, stream=schema)
        gathered.volumes[schema][contract] += traded_volume(rows)


def _symbology_instruments(
    archive: ArchiveContents, symbol: str, days: Sequence[dt.date]
) -> dict[int, str]:
    """The root's contracts symbology.json maps on ``days``; empty when the archive has none."""
    if archive.symbology is None:
        return {}
    symbology = archive.symbology
    result = symbology.get("result", symbology) if isinstance(symbology, Mapping) else {}
    instruments = _root_instruments(result, symbol, days, archive, "symbology.json")
    if not instruments:
        raise _no_contract_error(symbol, days, archive, "symbology.json", result)
    return instruments


def _root_instruments(
    mappings: Mapping,
    symbol: str,
    days: Sequence[dt.date],
    archive: ArchiveContents,
    member: str,
) -> dict[int, str]:
    try:
        return root_instruments(mappings, symbol, days)
    except ValueError as error:
        raise ArchiveError(archive.path, member, str(error)) from error


def _no_contract_error(
    symbol: str,
    days: Sequence[dt.date],
    archive: ArchiveContents,
    member: str,
    mappings: Mapping,
) -> ArchiveError:
    shown = sorted(map(str, mappings))[:10]
    return ArchiveError(
        archive.path,
        member,
        f"no {symbol} contract (like {symbol}H4) mapped to an instrument_id on UTC days "
        f"{[day.isoformat() for day in days]}; symbols found: {shown}. "
        "Request the data with stype_in=raw_symbol or a parent symbol mapped to raw symbols, "
        "or include the definition schema or CSV symbols (map_symbols)",
    )
