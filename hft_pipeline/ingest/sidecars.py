"""What a batch ZIP's JSON sidecars say: instruments from symbology.json, degraded days from
condition.json. Reading is lenient: Databento's documented shapes and their common variants."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from hft_pipeline.instruments import contract_root


def root_instruments(
    symbology_result: Mapping[str, Any], root: str, days: Sequence[dt.date]
) -> dict[int, str]:
    """instrument_id -> contract (e.g. 5482 -> ``ESH1``) for the root's outright contracts.

    Parameters
    ----------
    symbology_result : Mapping
        ``{raw_symbol: [{"d0": date, "d1": date, "s": instrument_id}]}`` as in symbology.json's
        ``result`` (d1 exclusive); ISO strings or dates. The reverse direction
        (``{instrument_id: [{..., "s": raw_symbol}]}``) is read too.
    root : str
        Root symbol, e.g. ``ES``; spreads (``ESH1-ESM1``) and other roots are left out.
    days : Sequence[date]
        UTC days of the session: only intervals overlapping them count.

    Raises
    ------
    ValueError
        One instrument_id mapped to two of the root's contracts within ``days``.
    """
    first, last = min(days), max(days)
    found: dict[int, str] = {}
    for key, intervals in symbology_result.items():
        if not isinstance(intervals, list):
            continue  # a request field (stype_in, ...) beside the mappings, not a symbol
        for interval in intervals:
            if not isinstance(interval, Mapping):
                continue
            start, end = _as_date(interval.get("d0")), _as_date(interval.get("d1"))
            if start is None or end is None or start > last or end <= first:
                continue
            contract, instrument = _contract_and_id(str(key), str(interval.get("s", "")), root)
            if contract is None:
                continue
            if found.setdefault(instrument, contract) != contract:
                raise ValueError(
                    f"instrument_id {instrument} maps to both {found[instrument]} and {contract} "
                    f"between {first} and {last}"
                )
    return found


def degraded_days(condition: Any, days: Sequence[dt.date]) -> list[dt.date]:
    """The days among ``days`` that condition.json marks ``degraded``.

    Reads Databento's list form (``[{"date": "2024-01-02", "condition": "degraded"}]``) and a
    plain ``{date: condition}`` mapping.
    """
    if isinstance(condition, Mapping):
        entries = [{"date": day, "condition": state} for day, state in condition.items()]
    else:
        entries = condition if isinstance(condition, Sequence) else []
    marked = {
        _as_date(entry.get("date"))
        for entry in entries
        if isinstance(entry, Mapping) and str(entry.get("condition", "")).lower() == "degraded"
    }
    return [day for day in days if day in marked]


def _contract_and_id(key: str, value: str, root: str) -> tuple[str | None, int]:
    if contract_root(key) == root and value.isdigit():
        return key, int(value)
    if contract_root(value) == root and key.isdigit():
        return value, int(key)
    return None, 0


def _as_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None
