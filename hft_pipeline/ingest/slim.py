"""One trading day's SLIM parquet file for one root symbol, built from its raw archives.

Steps of :func:`build_slim_day`, in bounded memory whatever the archives' size:
1. read and verify every archive (member names, zip-bomb caps, manifest SHA-256, sidecars), and
   the root's instrument definitions from its ``definition`` members, if any;
2. decode each DBN or CSV member a chunk at a time (MBO replayed into books first) and keep the
   root's records whose ``ts_recv`` (a bar's close) falls in the session: the expected front
   contract's are written as SLIM row groups at once, the other contracts' are spilled to disk
   (:mod:`hft_pipeline.ingest.slim_gather`, :mod:`hft_pipeline.ingest.slim_spill`);
3. choose the front contract by the configured rule, never from the session's own volume, and
   take its tick size from its definition (else ``instruments.ROOT_SPECS``);
4. write its rows in ``ts_recv`` then ``sequence`` order (as they came when the source is in
   order, sorted out of core otherwise) with the file metadata, and rename the file into
   place; the temporary folder is removed whatever happens.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import tempfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from hft_pipeline.config import DataSettings
from hft_pipeline.ingest import slim_schema
from hft_pipeline.ingest.archive import (
    DEFAULT_MAX_COMPRESSION_RATIO,
    DEFAULT_MAX_UNCOMPRESSED_GB,
    ArchiveContents,
    ArchiveError,
    inspect_archive,
)
from hft_pipeline.ingest.dbn_layout import PRICE_SCALE
from hft_pipeline.ingest.definitions import (
    InstrumentDefinition,
    definitions_as_of,
    symbols_by_instrument,
)
from hft_pipeline.ingest.mbo_book import ReplayStats
from hft_pipeline.ingest.slim_gather import SessionRows, gather_archive
from hft_pipeline.ingest.slim_members import (
    DEFINITION_SCHEMA,
    ArchiveCaps,
    archive_definitions,
    member_schemas,
)
from hft_pipeline.ingest.slim_rows import bar_interval_ns, records_to_slim_table
from hft_pipeline.ingest.slim_spill import ROW_GROUP_ROWS, write_slim_tables
from hft_pipeline.instruments import contract_root, contract_sort_key, root_spec
from hft_pipeline.partitions import Session

__all__ = [
    "ROW_GROUP_ROWS",
    "ArchiveError",
    "SlimSummary",
    "build_slim_day",
    "choose_front_contract",
    "front_contract_basis",
    "read_slim_metadata",
    "records_to_slim_table",
]

FRONT_CONTRACT_RULES = (
    "previous_day_volume",  # most traded on the previous trading day: follows the roll
    "nearest_expiry",  # the first contract to expire: needs no history
)
TRADING_HOURS = ("eth", "rth")
# What a build holds whatever the source, in MiB: the interpreter and its libraries, a decoded
# chunk, a row group being written (a standalone build of an in-order source peaks at 370-400 MB
# RSS from 0.6 to 6 M MBP-10 records). The out-of-core sort of an out-of-order source gets the
# rest of the bound; it peaked at about 340 MB + its limit, and DuckDB's merge ran out of a
# 128 MB limit at 3 M shuffled MBP-10 records but not of 256 MB at 6 M.
RESERVED_MB = 384
SORT_MIN_MB = 256
MIN_MEMORY_MB = RESERVED_MB + SORT_MIN_MB
_META_KEYS = frozenset(
    value for name, value in vars(slim_schema).items() if name.startswith("META_")
)


@dataclass(frozen=True)
class SlimSummary:
    """What :func:`build_slim_day` wrote; ``rows == 0`` means the session had no record."""

    path: Path
    rows: int
    contract: str  # chosen front contract, e.g. ESH1
    instrument_id: int
    contract_volumes: dict[str, int]  # this session's traded volume per contract present
    source_files: list[dict]  # [{archive, member, sha256}]
    degraded: bool  # condition.json marks one of the session's UTC days degraded
    partial: bool  # an expected UTC day had no archive
    first_ts_recv: int | None
    last_ts_recv: int | None
    front_contract_rule: str  # the rule ``contract`` was chosen by, one of FRONT_CONTRACT_RULES
    front_contract_basis: str  # what decided it, one of slim_schema.FRONT_CONTRACT_BASES
    source_ts_recv_regressions: int  # times ts_recv went backwards in the contract's source
    tick_size: float  # the contract's tick, in price units
    tick_size_source: str  # one of slim_schema.TICK_SIZE_SOURCES
    missing_utc_days: list[dt.date] = field(default_factory=list)
    schemas: list[str] = field(default_factory=list)  # schemas read, e.g. ["mbp-10"]
    bar_interval_ns: int | None = None  # OHLCV sources: the bars' interval
    mbo_replay: ReplayStats | None = None  # MBO sources: what the book replay met


def build_slim_day(
    archives: Sequence[Path],
    session: Session,
    symbol: str,
    out_path: Path,
    *,
    expected_utc_days: Sequence[dt.date] | None = None,
    previous_contract_volumes: Mapping[str, int] | None = None,
    front_contract_rule: str = "previous_day_volume",
    trading_hours: str = "eth",
    memory_mb: int = DataSettings.ingest_memory_mb,
    chunk_records: int = 65_536,
    max_uncompressed_gb: float = DEFAULT_MAX_UNCOMPRESSED_GB,
    max_compression_ratio: float = DEFAULT_MAX_COMPRESSION_RATIO,
) -> SlimSummary:
    """Write one trading session of a root symbol's front contract as a SLIM parquet file.

    Parameters
    ----------
    archives : Sequence[Path]
        Local Databento batch ZIPs whose UTC days overlap the session, read in name order.
        Their members may be DBN (``mbp-10``, ``mbp-1``, ``tbbo``, ``trades``, ``ohlcv-*``,
        ``mbo``, ``definition``) or Databento CSV of the same data schemas.
    session : Session
        The trading day and its [open_ns, close_ns) span; records are kept by ``ts_recv``
        (a bar's close for OHLCV).
    symbol : str
        Root symbol, e.g. ``ES``; must be in ``instruments.ROOT_SPECS``.
    out_path : Path
        Parquet file to (re)write atomically; an earlier file survives any failure.
    expected_utc_days : Sequence[date], optional
        UTC days the session needs; one that no member covers makes the file ``partial``.
    previous_contract_volumes : Mapping[str, int], optional
        The previous trading day's volume per contract, read by the ``previous_day_volume``
        rule: the largest among the contracts present is the front contract. None or empty:
        the nearest expiry.
    front_contract_rule : str, default "previous_day_volume"
        One of ``FRONT_CONTRACT_RULES``; see :func:`choose_front_contract`.
    trading_hours : str, default "eth"
        ``"eth"`` or ``"rth"``: which part of the day ``session`` spans, recorded in the
        metadata (the session itself is already cut to it).
    memory_mb : int, default DataSettings.ingest_memory_mb (640)
        Bound on the build's peak memory in MiB (a standalone process's RSS; inside a Dagster
        run, the run's own memory comes on top), at least ``MIN_MEMORY_MB``. An in-order
        source needs ``RESERVED_MB``; an out-of-order source's sort gets ``memory_mb -
        RESERVED_MB`` and spills beyond it. Neither grows with the archives' size.
    chunk_records : int, default 65_536
        Records decoded at a time (about 24 MB of MBP-10).
    max_uncompressed_gb, max_compression_ratio : float, default 200 and 200
        Zip-bomb caps of every archive (``DataSettings.archive_max_uncompressed_gb`` and
        ``archive_max_compression_ratio``; see :func:`archive.inspect_archive`).

    Returns
    -------
    SlimSummary
        Rows are in ``ts_recv`` order, ties by ``sequence``, then by archive name, member name
        and position in the member. An empty session gives an empty file and ``rows == 0``.

    Raises
    ------
    ArchiveError
        A damaged or unsafe archive (over a cap included), a manifest hash mismatch, a DBN or
        CSV member that cannot be decoded, or no contract of ``symbol`` mapped to an
        instrument_id by symbology.json, the DBN metadata, definitions or a CSV symbol column.
    ValueError
        No archive, an unknown rule or trading hours, ``memory_mb`` below the minimum, or bars
        of several intervals in one session.
    """
    if not archives:
        raise ValueError(f"no archive given for {symbol} on {session.day}; nothing to build")
    _check_options(front_contract_rule, trading_hours, memory_mb)
    root_spec(symbol)  # an unknown root fails here, before any archive is read
    out_path.parent.mkdir(parents=True, exist_ok=True)
    caps = ArchiveCaps(max_uncompressed_gb, max_compression_ratio)
    choose = functools.partial(
        choose_front_contract,
        previous_volumes=previous_contract_volumes,
        reference_year=session.day.year,
        rule=front_contract_rule,
    )
    # Beside the output: the same disk, so the finished file is renamed into place.
    with (
        tempfile.TemporaryDirectory(prefix=f".{out_path.name}.", dir=out_path.parent) as folder,
        contextlib.closing(
            SessionRows(Path(folder), symbol, session, choose, caps, chunk_records)
        ) as gathered,
    ):
        paths = sorted((Path(archive) for archive in archives), key=lambda path: path.name)
        contents = [inspect_archive(path, **caps.as_kwargs()) for path in paths]
        schemas = [member_schemas(archive, caps) for archive in contents]
        in_force = _definitions_in_force(contents, schemas, symbol, session, caps)
        gathered.defined = {
            iid: name
            for iid, name in symbols_by_instrument(in_force).items()
            if contract_root(name) == symbol
        }
        for archive, member_kinds in zip(contents, schemas, strict=True):
            gather_archive(archive, member_kinds, gathered)
        by_contract = gathered.present()
        present = sorted(by_contract)
        contract = choose(present or {name for _, name in gathered.instruments})
        basis = front_contract_basis(contract, previous_contract_volumes, front_contract_rule)
        chosen = by_contract.get(contract)
        regressions = chosen.order.ts_recv_regressions if chosen else 0
        contract_volumes = {
            name: max((int(volumes[name]) for volumes in gathered.volumes.values()), default=0)
            for name in present
        }
        tick_size, tick_source = _tick_size(symbol, contract, in_force)
        interval_ns = _bar_interval_ns(gathered.schemas)
        missing = sorted(set(expected_utc_days or ()) - gathered.covered_days)
        degraded, partial = bool(gathered.degraded_days), bool(missing)
        metadata = {
            slim_schema.META_SCHEMA_VERSION: slim_schema.SLIM_SCHEMA_VERSION,
            slim_schema.META_TRADING_DAY: session.day.isoformat(),
            slim_schema.META_SYMBOL: symbol,
            slim_schema.META_TICK_SIZE: repr(tick_size),
            slim_schema.META_TICK_SIZE_SOURCE: tick_source,
            slim_schema.META_PRICE_SCALE: str(PRICE_SCALE),
            slim_schema.META_SOURCE_FILES: json.dumps(gathered.source_files),
            slim_schema.META_CONTRACT: contract,
            slim_schema.META_CONTRACT_VOLUMES: json.dumps(contract_volumes, sort_keys=True),
            **slim_schema.session_metadata(session),
            slim_schema.META_DEGRADED: json.dumps(degraded),
            slim_schema.META_PARTIAL: json.dumps(partial),
            slim_schema.META_FRONT_CONTRACT_RULE: front_contract_rule,
            slim_schema.META_FRONT_CONTRACT_BASIS: basis,
            slim_schema.META_PREVIOUS_CONTRACT_VOLUMES: json.dumps(
                dict(previous_contract_volumes or {}), sort_keys=True
            ),
            slim_schema.META_TRADING_HOURS: trading_hours,
            slim_schema.META_SOURCE_TS_RECV_REGRESSIONS: json.dumps(regressions),
        }
        if interval_ns is not None:
            metadata[slim_schema.META_BAR_INTERVAL_NS] = str(interval_ns)
        if chosen is None:
            written = write_slim_tables((), metadata, out_path)
        else:
            written = chosen.finish(metadata, out_path, Path(folder), memory_mb - RESERVED_MB)
    return SlimSummary(
        path=out_path,
        rows=written.rows,
        contract=contract,
        instrument_id=min(i for i, name in gathered.instruments if name == contract),
        contract_volumes=contract_volumes,
        source_files=gathered.source_files,
        degraded=degraded,
        partial=partial,
        first_ts_recv=written.first_ts_recv,
        last_ts_recv=written.last_ts_recv,
        front_contract_rule=front_contract_rule,
        front_contract_basis=basis,
        source_ts_recv_regressions=regressions,
        tick_size=tick_size,
        tick_size_source=tick_source,
        missing_utc_days=missing,
        schemas=sorted(gathered.schemas),
        bar_interval_ns=interval_ns,
        mbo_replay=gathered.replay.stats if gathered.replay else None,
    )


def read_slim_metadata(path: Path) -> dict[str, str]:
    """The SLIM file's ``META_*`` key-value metadata as text (JSON values left as text)."""
    metadata = pq.read_schema(path).metadata or {}
    decoded = {key.decode(): value.decode() for key, value in metadata.items()}
    return {key: value for key, value in decoded.items() if key in _META_KEYS}


def choose_front_contract(
    candidates: Collection[str],
    previous_volumes: Mapping[str, int] | None,
    reference_year: int,
    rule: str = "previous_day_volume",
) -> str:
    """The session's front contract among ``candidates`` by ``rule``.

    Parameters
    ----------
    candidates : Collection[str]
        Contracts present in the session, e.g. ``{"ESH4", "ESM4"}``.
    previous_volumes : Mapping[str, int], optional
        Volumes of the previous trading day; never the session's own (that would look ahead).
    reference_year : int
        The session's year, to read 1-digit contract years (``ESH4``).
    rule : str, default "previous_day_volume"
        ``"previous_day_volume"``: the contract with the most previous-day volume;
        ``"nearest_expiry"``: the first to expire, whatever the volumes.

    Returns
    -------
    str
        Ties, and candidates without previous volume, go to the nearest expiry.
    """
    if not candidates:
        raise ValueError("no candidate contract to choose a front contract from")
    _check_rule(rule)
    by_expiry = sorted(candidates, key=lambda name: contract_sort_key(name, reference_year))
    if rule == "nearest_expiry":
        return by_expiry[0]
    volumes = previous_volumes or {}
    # max() keeps the first of equal volumes: the nearest expiry wins ties.
    busiest = max(by_expiry, key=lambda name: volumes.get(name, 0))
    return busiest if volumes.get(busiest, 0) > 0 else by_expiry[0]


def front_contract_basis(
    contract: str, previous_volumes: Mapping[str, int] | None, rule: str
) -> str:
    """What made ``contract`` the choice of :func:`choose_front_contract` under ``rule``."""
    if rule == "nearest_expiry":
        return slim_schema.BASIS_NEAREST_EXPIRY
    if (previous_volumes or {}).get(contract, 0) > 0:
        return slim_schema.BASIS_PREVIOUS_DAY_VOLUME
    return slim_schema.BASIS_NO_PREVIOUS_VOLUME


def _check_rule(rule: str) -> None:
    if rule not in FRONT_CONTRACT_RULES:
        raise ValueError(
            f"front_contract_rule must be one of {FRONT_CONTRACT_RULES}, found {rule!r}"
        )


def _check_options(front_contract_rule: str, trading_hours: str, memory_mb: int) -> None:
    """Fail before reading any archive, not after."""
    _check_rule(front_contract_rule)
    if trading_hours not in TRADING_HOURS:
        raise ValueError(f"trading_hours must be one of {TRADING_HOURS}, found {trading_hours!r}")
    if memory_mb < MIN_MEMORY_MB:
        raise ValueError(
            f"ingest memory bound {memory_mb} MiB is below the minimum {MIN_MEMORY_MB} MiB "
            f"({RESERVED_MB} MiB for the interpreter, a decoded chunk and a row group, "
            f"{SORT_MIN_MB} MiB for a sort); raise DataSettings.ingest_memory_mb"
        )


def _definitions_in_force(
    contents: Sequence[ArchiveContents],
    schemas: Sequence[Mapping[str, str]],
    symbol: str,
    session: Session,
    caps: ArchiveCaps,
) -> dict[int, InstrumentDefinition]:
    """The root's definitions in force at the session's end: any version received by then
    (a daily definition file is received at 00:00 UTC, after a CME session's open)."""
    definitions = [
        definition
        for archive, member_kinds in zip(contents, schemas, strict=True)
        for definition in archive_definitions(
            archive,
            sorted(name for name, kind in member_kinds.items() if kind == DEFINITION_SCHEMA),
            symbol,
            caps,
        )
    ]
    return definitions_as_of(definitions, session.close_ns - 1)


def _tick_size(
    symbol: str, contract: str, in_force: Mapping[int, InstrumentDefinition]
) -> tuple[float, str]:
    """The contract's tick and where it came from: its definition, else the root's spec."""
    for definition in in_force.values():
        if definition.raw_symbol == contract and definition.min_price_increment is not None:
            return float(definition.min_price_increment), slim_schema.TICK_FROM_DEFINITION
    return root_spec(symbol).tick_size, slim_schema.TICK_FROM_ROOT_SPEC


def _bar_interval_ns(schemas: Collection[str]) -> int | None:
    """The interval of the bar schemas read; None without bars. One file, one interval."""
    intervals = {name: interval for name in schemas if (interval := bar_interval_ns(name))}
    if len(set(intervals.values())) > 1:
        raise ValueError(
            f"the session's archives hold bars of several intervals ({sorted(intervals)}); "
            "a SLIM file holds one: keep one OHLCV schema per bucket"
        )
    return next(iter(intervals.values()), None)
