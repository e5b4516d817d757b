"""Grid emission factors as versioned reference data, chosen by region and period; CO2 figures that name them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from core.errors import ConfigError

TABLE = Path(__file__).parent / "emission_factors.yaml"


@dataclass(frozen=True)
class Factor:
    id: str  # e.g. east-china/2022/average
    region: str
    year: int
    caliber: str
    kg_per_kwh: float
    document: str
    url: str
    status: str
    table_version: str


@cache
def _table() -> tuple[str, dict[str, str], list[Factor]]:
    doc: dict[str, Any] = yaml.safe_load(TABLE.read_text(encoding="utf-8"))
    srcs = doc["sources"]
    out = [Factor(f"{f['region']}/{f['year']}/{f['caliber']}", f["region"], int(f["year"]), f["caliber"],
                  float(f["kg_per_kwh"]), srcs[f["source"]]["document"], srcs[f["source"]].get("url", ""),
                  f["status"], str(doc["table_version"])) for f in doc["factors"]]
    return str(doc["table_version"]), dict(doc["regions_of_provinces"]), out


def table_version() -> str:
    return _table()[0]


def regions() -> list[str]:
    _, provinces, factors = _table()
    return sorted({f.region for f in factors} | set(provinces))


def choose(region: str, period_end: datetime, caliber: str = "average") -> tuple[Factor, str]:
    """The factor for `region` (a province maps to its grid region) and the period: the latest published year
    not after the period's year, else the earliest published one; with a sentence saying which and why."""
    _, provinces, factors = _table()
    key = provinces.get(region.lower(), region.lower())
    cands = sorted((f for f in factors if f.region == key and f.caliber == caliber), key=lambda f: f.year)
    if not cands:
        raise ConfigError(f"no published {caliber} grid emission factor for region {region!r} "
                          f"(known: {', '.join(regions())})")
    year = period_end.year
    before = [f for f in cands if f.year <= year]
    f = before[-1] if before else cands[0]
    via = f" ({region} is in the {key} grid)" if key != region.lower() else ""
    why = (f"{f.id}{via}: latest published year not after {year}" if before
           else f"{f.id}{via}: no factor published for {year} or earlier; the earliest published one is used")
    return f, why


def co2_figure(energy_kwh: float | None, factor: Factor, why: str) -> dict[str, Any]:
    """A CO2 figure with everything needed to trace it: energy, factor, document, year, caliber."""
    co2 = None if energy_kwh is None else energy_kwh * factor.kg_per_kwh
    return {"co2_kg": co2, "energy_kwh": energy_kwh, "factor": asdict(factor), "factor_choice": why}
