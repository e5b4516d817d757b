"""KPI values from element sums (one bucket, one asset or roll-up), with the NULL-reason rule.

Machines and roll-ups go through the same function: roll-ups pass element sums over their machines, so every
ratio is a ratio of sums. A KPI whose denominator is zero or whose input is unavailable gets value None and a
reason; never 0 or 1 in its place.
"""

from __future__ import annotations

import math

from kpi.catalog import GBT2589_KGCE_PER_KWH

Result = tuple[float | None, str | None]


def _has(e: dict[str, float], name: str) -> bool:
    v = e.get(name, math.nan)
    return not math.isnan(v)


def _missing(e: dict[str, float], why: dict[str, str], *names: str) -> str | None:
    for n in names:
        if not _has(e, n):
            return why.get(n, f"{n} not available")
    return None


def _ratio(e: dict[str, float], why: dict[str, str], num: str, den: str, zero: str) -> Result:
    reason = _missing(e, why, num, den)
    if reason:
        return None, reason
    if e[den] == 0:
        return None, zero
    return e[num] / e[den], None


def _product(*parts: Result) -> Result:
    value = 1.0
    for v, reason in parts:
        if v is None:
            return None, reason
        value *= v
    return value, None


def _off_calendar(e: dict[str, float]) -> str | None:
    """The reason for a bucket without planned time, saying what happened outside it; None if it has some."""
    if not _has(e, "calendar_time_s") or e["calendar_time_s"] > 0:
        return None
    parts = e.get("off_calendar_produced_quantity", math.nan)
    made = f"; {parts:g} parts counted outside it" if _has(e, "off_calendar_produced_quantity") and parts > 0 else ""
    return f"bucket outside the shift calendar (no planned operation time){made}"


def _no_apt_reason(e: dict[str, float]) -> str:
    off = _off_calendar(e)
    if off:
        return off
    if _has(e, "planned_busy_time_s") and e["planned_busy_time_s"] == 0:
        return "planned busy time is zero (planned stop all along)"
    pq = e.get("produced_quantity", math.nan)
    if _has(e, "produced_quantity") and pq > 0:
        return f"actual production time is zero, yet {pq:g} parts were counted (check the state mapping)"
    return "actual production time is zero"


def _no_pq_reason(e: dict[str, float]) -> str:
    return _off_calendar(e) or "produced quantity is zero"


def quality_flags(e: dict[str, float], results: dict[str, Result]) -> dict[str, str]:
    """Impossible or suspicious values, stored as computed: flag -> likely cause (never clamped)."""
    flags: dict[str, str] = {}
    perf = results.get("performance", (None, None))[0]
    if perf is not None and perf > 1.0 + 1e-9:
        flags["performance_above_1"] = (f"effectiveness {perf:.4f} > 1: more parts than ideal_cycle_time_s allows "
                                        "(ideal cycle time set too long, or the counter counts more than parts)")
    if _has(e, "produced_quantity") and _has(e, "actual_production_time_s") and _has(e, "calendar_time_s") \
            and e["produced_quantity"] > 0 and e["actual_production_time_s"] == 0 and e["calendar_time_s"] > 0:
        flags["parts_without_running"] = "parts counted in planned time without any running state (state mapping?)"
    return flags


def kpis_from_elements(e: dict[str, float], why: dict[str, str], emission_factor: float | None,
                       is_machine: bool) -> dict[str, Result]:
    """All KPIs of the catalog that derive from elements; `why[element]` explains a NaN element."""
    out: dict[str, Result] = {}
    for name in e:
        out[name] = (None, why.get(name, f"{name} not available")) if not _has(e, name) else (e[name], None)
    out["availability"] = _ratio(e, why, "actual_production_time_s", "planned_busy_time_s", "planned busy time is zero")
    out["performance"] = _ratio(e, why, "ideal_production_time_s", "performance_time_s", _no_apt_reason(e))
    out["quality"] = _ratio(e, why, "good_quantity", "produced_quantity", _no_pq_reason(e))
    if _has(e, "no_data_time_s") and _has(e, "planned_busy_time_s") and e["planned_busy_time_s"] > 0 \
            and e["no_data_time_s"] >= e["planned_busy_time_s"]:
        # Nothing is known of the machine in this bucket: 0 % would claim a stoppage nobody saw.
        out["availability"] = (None, "no machine data in bucket (coverage 0)")
    out["oee"] = _product(out["availability"], out["performance"], out["quality"])
    reason = _missing(e, why, "actual_production_time_s", "setup_time_s", "planned_busy_time_s")
    if reason:
        out["nee"] = (None, reason)
    elif e["planned_busy_time_s"] == 0:
        out["nee"] = (None, "planned busy time is zero")
    elif out["availability"][0] is None:
        out["nee"] = out["availability"]
    else:
        aupt = e["actual_production_time_s"] + e["setup_time_s"]
        out["nee"] = _product((aupt / e["planned_busy_time_s"], None), out["performance"], out["quality"])
    aupt_e = dict(e)
    if _has(e, "actual_production_time_s") and _has(e, "setup_time_s"):
        aupt_e["_aupt"] = e["actual_production_time_s"] + e["setup_time_s"]
        aupt_e["_apt_adet"] = e["actual_production_time_s"] + e.get("down_time_s", math.nan)
    out["setup_rate"] = _ratio(aupt_e, why, "setup_time_s", "_aupt", "unit processing time (APT + ASUT) is zero")
    out["technical_efficiency"] = _ratio(aupt_e, why, "actual_production_time_s", "_apt_adet",
                                         "APT + ADET is zero")
    out["scrap_ratio"] = _ratio(e, why, "scrap_quantity", "produced_quantity", _no_pq_reason(e))
    out["rework_ratio"] = _ratio(e, why, "rework_quantity", "produced_quantity", _no_pq_reason(e))
    fpy = dict(e)
    if _has(e, "produced_quantity"):
        fpy["_first_pass"] = (e["produced_quantity"] - (e["scrap_quantity"] if _has(e, "scrap_quantity") else 0.0)
                              - (e["rework_quantity"] if _has(e, "rework_quantity") else 0.0))
    out["first_pass_yield"] = _ratio(fpy, why, "_first_pass", "produced_quantity", _no_pq_reason(e))
    if _has(aupt_e, "_aupt"):
        aupt_e["_operating"] = aupt_e["_aupt"]
    out["mtbf_s"] = _ratio(aupt_e, why, "_operating", "failure_events", "no failure events in bucket")
    out["mttr_s"] = _ratio(e, why, "down_time_s", "failure_events", "no failure events in bucket")
    out["energy_per_unit_kwh"] = _ratio(e, why, "energy_kwh", "produced_quantity", _no_pq_reason(e))
    out["energy_per_good_unit_kwh"] = _ratio(e, why, "energy_kwh", "good_quantity", "good quantity is zero")
    v, r = out["energy_per_unit_kwh"]
    out["comprehensive_energy_per_unit_kgce"] = (None, r) if v is None else (v * GBT2589_KGCE_PER_KWH, None)
    if emission_factor is None:
        out["co2_kg"] = out["co2_per_good_unit_kg"] = (None, "no plant.emission_factor_kg_per_kwh configured")
    else:
        v, r = out["energy_kwh"] if "energy_kwh" in out else (None, "energy_kwh not available")
        out["co2_kg"] = (None, r) if v is None else (v * emission_factor, None)
        v, r = out["energy_per_good_unit_kwh"]
        out["co2_per_good_unit_kg"] = (None, r) if v is None else (v * emission_factor, None)
    if not is_machine:
        out["networking_rate"] = _ratio(e, why, "networked_machines", "production_machines",
                                        "no production machines in scope")
    for k in ("no_data_time_s",):
        out.setdefault(k, (None, why.get(k, f"{k} not available")))
    return out
