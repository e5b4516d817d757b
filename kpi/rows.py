"""Element sums and KPI results -> kpi_values rows (with provenance)."""

from __future__ import annotations

import math
from datetime import datetime
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from psycopg.types.json import Jsonb

from core.plant import Asset, PlantConfig
from kpi.buckets import BucketSet, from_us
from kpi.catalog import BY_ID, DEFINITION_VERSION
from kpi.formulas import kpis_from_elements, quality_flags
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


_EVENT_FLAGS = {
    "corrections": ("counter_correction", "{sig} dropped {n:g} time(s) without looking like a reset (operator "
                    "correction or meter jitter): the drop added nothing and became the new baseline"),
    "negative_readings": ("negative_counter_reading", "{sig} read negative {n:g} time(s): ignored as bad data"),
    "conflicting_samples": ("overlapping_states", "{n:g} pair(s) of state samples with the same timestamp and "
                            "different states: the later one in storage order was used"),
}
Events = dict[str, dict[str, np.ndarray]]


def data_quality(j: int, events: Events | None, e: dict[str, float],
                 results: dict[str, tuple[float | None, str | None]]) -> tuple[dict[str, Any], dict[str, str]]:
    """Bucket j's data-quality events (signal -> kind -> count, non-zero only) and flags (flag -> likely cause)."""
    seen: dict[str, Any] = {}
    flags: dict[str, str] = {}
    for sig, kinds in (events or {}).items():
        counts = {k: float(v[j]) for k, v in kinds.items() if v[j]}
        if counts:
            seen[sig] = counts
        for kind, n in counts.items():
            if kind in _EVENT_FLAGS:
                flag, cause = _EVENT_FLAGS[kind]
                flags[flag] = "; ".join(filter(None, (flags.get(flag), cause.format(sig=sig, n=n))))
    flags.update(quality_flags(e, results))
    return seen, flags


def bucket_rows(cfg: PlantConfig, asset_id: str, is_machine: bool, b: BucketSet, elements: dict[str, np.ndarray],
                why: dict[str, str], input_rows: np.ndarray, coverage: np.ndarray, until_us: int,
                prov: Jsonb | None = None, events: Events | None = None,
                why_at: dict[str, list[str | None]] | None = None,
                inherited_flags: list[dict[str, str]] | None = None) -> list[tuple[Any, ...]]:
    """One row per (bucket, KPI) in store.COLUMNS order; `why_at` gives per-bucket reasons that win over `why`.

    Data-quality events and flags go into the bucket's provenance (`data_quality`) and `quality_flags`; a
    roll-up passes its machines' flags per bucket as `inherited_flags` (flag -> which machines).
    """
    prov = prov if prov is not None else provenance(cfg)
    tz = ZoneInfo(cfg.plant.timezone)
    rows: list[tuple[Any, ...]] = []
    ef = cfg.plant.emission_factor_kg_per_kwh
    for j in range(len(b)):
        e = {k: float(v[j]) for k, v in elements.items()}
        w = dict(why)
        for k, reasons in (why_at or {}).items():
            if reasons[j]:
                w[k] = reasons[j]  # type: ignore[assignment]
        start: datetime = from_us(int(b.starts[j]))
        end: datetime = from_us(int(b.ends[j]))
        final = bool(b.ends[j] <= until_us)
        cov = float(coverage[j])
        cov_out = None if math.isnan(cov) else cov
        results = kpis_from_elements(e, w, ef, is_machine)
        seen, flags = data_quality(j, events, e, results)
        for flag, where in (inherited_flags[j] if inherited_flags else {}).items():
            flags.setdefault(flag, where)
        p = Jsonb({**prov.obj, "data_quality": {"events": seen, "flags": flags}}) if seen or flags else prov
        keys = sorted(flags) or None
        day = start.astimezone(tz).date()
        for kpi, (value, reason) in results.items():
            if kpi not in BY_ID:
                continue
            if value is not None and not math.isfinite(value):
                value, reason = None, "not a finite number"
            rows.append((start, b.kind, asset_id, kpi, value, reason, BY_ID[kpi].unit, b.shift_name,
                         DEFINITION_VERSION, code_version(), int(input_rows[j]), cov_out, end, final, p,
                         b.shift_name or "", day, keys))
    return rows
