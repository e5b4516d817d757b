"""Element sums and KPI results -> kpi_values rows (with provenance)."""

from __future__ import annotations

import math
from datetime import datetime
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
from psycopg.types.json import Jsonb

from core.plant import Asset, PlantConfig
from kpi.buckets import BucketSet, from_us
from kpi.catalog import BY_ID, DEFINITION_VERSION
from kpi.formulas import kpis_from_elements
from kpi.statemodel import REDUCED_SPEED_WINDOW_S, micro_stop_s, state_max_hold_s


@cache
def code_version() -> str:
    try:
        return f"shopfloor {version('shopfloor')}"
    except PackageNotFoundError:
        return "shopfloor 0+unknown"


def provenance(cfg: PlantConfig, machine: Asset | None = None) -> Jsonb:
    """What, besides the inputs, a value depends on: calendar choice, state-model knobs, emission factor."""
    doc: dict[str, Any] = {"calendar": cfg.kpi.calendar, "micro_stop_s": cfg.kpi.micro_stop_s,
                           "reduced_speed_ratio": cfg.kpi.reduced_speed_ratio,
                           "reduced_speed_window_s": REDUCED_SPEED_WINDOW_S,
                           "emission_factor_kg_per_kwh": cfg.plant.emission_factor_kg_per_kwh,
                           "emission_factor_version": cfg.plant.emission_factor_version,
                           "timezone": cfg.plant.timezone}
    if machine is not None:
        doc["micro_stop_s"] = micro_stop_s(cfg, machine)
        doc["state_max_hold_s"] = state_max_hold_s(cfg, machine)
    return Jsonb(doc)


def bucket_rows(cfg: PlantConfig, asset_id: str, is_machine: bool, b: BucketSet, elements: dict[str, np.ndarray],
                why: dict[str, str], input_rows: np.ndarray, coverage: np.ndarray, until_us: int,
                prov: Jsonb | None = None) -> list[tuple[Any, ...]]:
    """One row per (bucket, KPI) in store.COLUMNS order."""
    prov = prov if prov is not None else provenance(cfg)
    rows: list[tuple[Any, ...]] = []
    ef = cfg.plant.emission_factor_kg_per_kwh
    for j in range(len(b)):
        e = {k: float(v[j]) for k, v in elements.items()}
        start: datetime = from_us(int(b.starts[j]))
        end: datetime = from_us(int(b.ends[j]))
        final = bool(b.ends[j] <= until_us)
        cov = float(coverage[j])
        cov_out = None if math.isnan(cov) else cov
        for kpi, (value, reason) in kpis_from_elements(e, why, ef, is_machine).items():
            if kpi not in BY_ID:
                continue
            if value is not None and not math.isfinite(value):
                value, reason = None, "not a finite number"
            rows.append((start, b.kind, asset_id, kpi, value, reason, BY_ID[kpi].unit, b.shift_name,
                         DEFINITION_VERSION, code_version(), int(input_rows[j]), cov_out, end, final, prov))
    return rows
