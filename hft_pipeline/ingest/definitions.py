"""Instrument definitions (DBN schema ``definition``) -> point-in-time instrument facts.

Definition records are few (one per instrument per day, plus changes), and their layout differs
between DBN versions 1, 2 and 3, so databento-dbn's own decoder reads them (upgrading v1/v2).
Each record is a version of its instrument valid from its ``ts_recv``; a daily file repeats
every live instrument at the start of the day. Prices in the records are int64 fixed-point
(1e-9), so tick sizes convert exactly: ES 0.25, ZN 1/64, 6E 0.00005.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

import databento_dbn

from hft_pipeline.ingest.dbn_layout import PRICE_SCALE, UNDEF_PRICE
from hft_pipeline.ingest.decode import ByteStream, DbnFormatError

_UNDEF_TIMESTAMP = 2**64 - 1
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_READ_BYTES = 1 << 20  # decompressed bytes handed to the decoder at a time
_DELETE = "D"  # security_update_action of an instrument the venue removed


@dataclass(frozen=True)
class InstrumentDefinition:
    """One version of an instrument's definition, valid from ``valid_from_ns``."""

    instrument_id: int
    raw_symbol: str  # venue symbol, e.g. ESH4
    asset: str  # root / product, e.g. ES
    instrument_class: str  # F future, S future spread, C/P option, ... (databento-dbn's codes)
    min_price_increment: Fraction | None  # tick size in price units, exact; None if unset
    contract_size: Fraction | None  # unit_of_measure_qty: for ES 50 (USD per index point)
    currency: str
    exchange: str  # MIC, e.g. XCME
    expiration: dt.datetime | None  # last eligible trade time, UTC
    activation: dt.datetime | None  # first time the instrument trades, UTC
    valid_from_ns: int  # ts_recv: when this version became known, ns since epoch UTC
    deleted: bool  # the venue removed the instrument at valid_from_ns


def read_definitions(
    stream: ByteStream, *, asset: str | None = None, source: str = "DBN stream"
) -> list[InstrumentDefinition]:
    """Every definition record of a decompressed DBN stream, in stream order.

    Parameters
    ----------
    stream : binary file-like
        Decompressed DBN bytes (any version 1-3), positioned at the start.
    asset : str, optional
        Keep only this root's instruments (e.g. ``ES``); a whole-venue file holds many.
    source : str, default "DBN stream"
        Name of the file or archive member, for error messages.

    Returns
    -------
    list[InstrumentDefinition]
        One per definition record; other record types in the stream are skipped.

    Raises
    ------
    DbnFormatError
        Bytes databento-dbn cannot decode, or metadata naming a schema other than
        ``definition``.
    """
    decoder = databento_dbn.DBNDecoder()
    definitions: list[InstrumentDefinition] = []
    while block := stream.read(_READ_BYTES):
        decoder.write(block)
        definitions.extend(_definitions_of(_decode(decoder, source), asset, source))
    definitions.extend(_definitions_of(_decode(decoder, source), asset, source))
    if decoder.buffer():
        raise DbnFormatError(
            f"{source}: stream ends mid-record ({len(decoder.buffer())} trailing bytes); "
            "the file is truncated"
        )
    return definitions


def definitions_as_of(
    definitions: Iterable[InstrumentDefinition], ts_ns: int
) -> dict[int, InstrumentDefinition]:
    """The definition of each instrument in force at ``ts_ns``: its latest version received
    at or before then, leaving out instruments deleted by then.

    Parameters
    ----------
    definitions : Iterable[InstrumentDefinition]
        Versions from one or more files, in any order.
    ts_ns : int
        The moment, ns since epoch UTC; e.g. a session's open.

    Returns
    -------
    dict[int, InstrumentDefinition]
        Keyed by ``instrument_id``. Versions received at the same time keep stream order.
    """
    known = sorted(
        (definition for definition in definitions if definition.valid_from_ns <= ts_ns),
        key=lambda definition: definition.valid_from_ns,
    )
    in_force = {definition.instrument_id: definition for definition in known}
    return {iid: definition for iid, definition in in_force.items() if not definition.deleted}


def symbols_by_instrument(definitions: Mapping[int, InstrumentDefinition]) -> dict[int, str]:
    """``instrument_id -> raw_symbol`` of definitions in force (see :func:`definitions_as_of`)."""
    return {iid: definition.raw_symbol for iid, definition in definitions.items()}


def _decode(decoder: databento_dbn.DBNDecoder, source: str) -> list:
    try:
        return decoder.decode()
    except (databento_dbn.DBNError, ValueError) as error:
        raise DbnFormatError(f"{source}: not a DBN stream databento-dbn reads ({error})") from error


def _definitions_of(
    records: list, asset: str | None, source: str
) -> Iterable[InstrumentDefinition]:
    for record in records:
        if isinstance(record, databento_dbn.Metadata):
            if record.schema is not None and str(record.schema) != "definition":
                raise DbnFormatError(
                    f"{source}: metadata says schema {str(record.schema)!r}; instrument "
                    "definitions come in schema 'definition'"
                )
        elif isinstance(record, databento_dbn.InstrumentDefMsg) and (
            asset is None or record.asset == asset
        ):
            yield _definition(record)


def _definition(record: databento_dbn.InstrumentDefMsg) -> InstrumentDefinition:
    return InstrumentDefinition(
        instrument_id=int(record.instrument_id),
        raw_symbol=str(record.raw_symbol),
        asset=str(record.asset),
        instrument_class=str(record.instrument_class.value),
        min_price_increment=_fixed_point(record.min_price_increment),
        contract_size=_fixed_point(record.unit_of_measure_qty),
        currency=str(record.currency),
        exchange=str(record.exchange),
        expiration=_timestamp(record.expiration),
        activation=_timestamp(record.activation),
        valid_from_ns=int(record.ts_recv),
        deleted=str(record.security_update_action.value) == _DELETE,
    )


def _fixed_point(value: int) -> Fraction | None:
    """An int64 1e-9 fixed-point value as an exact fraction; None when undefined (int64 max)."""
    return None if value == UNDEF_PRICE else Fraction(int(value), PRICE_SCALE)


def _timestamp(ns: int) -> dt.datetime | None:
    """ns since epoch -> UTC datetime (to the microsecond); None when undefined."""
    return None if ns == _UNDEF_TIMESTAMP else _EPOCH + dt.timedelta(microseconds=ns // 1000)
