"""Per-root contract specifications: tick sizes keep prices exact on their grid."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

# CME month codes, in calendar order.
MONTH_CODES = "FGHJKMNQUVXZ"


@dataclass(frozen=True)
class RootSpec:
    root: str
    # Exact tick as a fraction so 1/64 (ZN) and 0.00005 (6E) survive arithmetic.
    tick: Fraction
    description: str

    @property
    def tick_size(self) -> float:
        return float(self.tick)


ROOT_SPECS: dict[str, RootSpec] = {
    spec.root: spec
    for spec in (
        RootSpec("ES", Fraction(1, 4), "E-mini S&P 500"),
        RootSpec("MES", Fraction(1, 4), "Micro E-mini S&P 500"),
        RootSpec("NQ", Fraction(1, 4), "E-mini Nasdaq-100"),
        RootSpec("ZN", Fraction(1, 64), "10-Year T-Note"),
        RootSpec("ZB", Fraction(1, 32), "U.S. Treasury Bond"),
        RootSpec("6E", Fraction(5, 100_000), "Euro FX"),
        RootSpec("CL", Fraction(1, 100), "Crude Oil"),
        RootSpec("GC", Fraction(1, 10), "Gold"),
    )
}

_CONTRACT = re.compile(r"^(?P<root>[A-Z0-9]+?)(?P<month>[FGHJKMNQUVXZ])(?P<year>\d{1,2})$")


def root_spec(root: str) -> RootSpec:
    try:
        return ROOT_SPECS[root]
    except KeyError:
        raise KeyError(
            f"no contract specification for root symbol {root!r}; known roots: "
            f"{sorted(ROOT_SPECS)}. Add it to hft_pipeline/instruments.py::ROOT_SPECS."
        ) from None


def contract_root(raw_symbol: str) -> str | None:
    """``ESH4`` -> ``ES``; None for a symbol that is not an outright futures contract."""
    match = _CONTRACT.match(raw_symbol)
    return match["root"] if match else None


def contract_sort_key(raw_symbol: str, reference_year: int) -> tuple[int, int]:
    """(year, month) of a contract code; a 1-digit year is the next one >= reference_year - 1."""
    match = _CONTRACT.match(raw_symbol)
    if match is None:
        raise ValueError(f"{raw_symbol!r} is not a futures contract code like ESH4")
    digits = match["year"]
    modulus = 10 ** len(digits)
    base = (reference_year - 1) - (reference_year - 1) % modulus
    year = base + int(digits)
    if year < reference_year - 1:
        year += modulus
    return year, MONTH_CODES.index(match["month"]) + 1
