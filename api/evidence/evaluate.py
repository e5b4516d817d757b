"""Rulebook evaluation: pure functions over KPI rows (no I/O). Per criterion a result, per tier a readiness."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from api.evidence.rulebook import STATUS_MARK, Criterion, Rulebook

RESULTS = ("pass", "fail", "not_enough_data", "reported", "attested", "awaiting_attestation")
READY_OK = {"pass", "reported", "attested"}


@dataclass(frozen=True)
class Row:
    """One kpi_values row as the evaluation needs it."""

    asset_id: str
    kpi: str
    bucket: str
    bucket_start: str
    value: float | None
    null_reason: str | None
    coverage: float | None


@dataclass(frozen=True)
class Window:
    start: str
    end: str


def period_values(rows: Iterable[Row], asset: str, bucket: str, is_machine: bool,
                  emission_factor: float | None) -> dict[str, dict[str, Any]]:
    """KPIs over a whole period as ratios of sums: the asset's element rows summed, then the catalog formulas."""
    from kpi.catalog import BY_ID, ELEMENTS
    from kpi.formulas import kpis_from_elements

    sums: dict[str, float] = {}
    why: dict[str, str] = {}
    cov: dict[str, float] = {}  # bucket -> data coverage (the same on every row of the bucket)
    buckets: set[str] = set()
    for r in rows:
        if r.asset_id != asset or r.bucket != bucket:
            continue
        buckets.add(r.bucket_start)
        if r.coverage is not None:
            cov[r.bucket_start] = r.coverage
        if r.kpi in ELEMENTS:
            if r.value is None:
                why.setdefault(r.kpi, r.null_reason or "not available")
            else:
                sums[r.kpi] = sums.get(r.kpi, 0.0) + r.value
    elements = {e: sums.get(e, math.nan) for e in ELEMENTS}
    out: dict[str, dict[str, Any]] = {}
    for kpi, (value, reason) in kpis_from_elements(elements, why, emission_factor, is_machine).items():
        if kpi not in BY_ID:
            continue
        d = BY_ID[kpi]
        c = list(cov.values())
        num, den = (d.inputs + ("", ""))[:2] if d.kind == "kpi" else ("", "")
        out[kpi] = {"value": value, "null_reason": reason, "unit": d.unit, "buckets": len(buckets),
                    "coverage": sum(c) / len(c) if c else None,
                    "numerator": {"name": num, "value": elements.get(num)} if num in elements else None,
                    "denominator": {"name": den, "value": elements.get(den)} if den in elements else None}
    return out


def _compare(value: float, op: str, threshold: float) -> bool:
    return {">=": value >= threshold, "<=": value <= threshold, ">": value > threshold,
            "<": value < threshold}[op]


def improvement(rep: float | None, base: float | None, trend: str) -> float | None:
    """KPI.md cn.improvement (proposed): 1 - rep/base for lower-is-better, rep/base - 1 for higher-is-better."""
    if rep is None or base is None or base == 0 or trend not in ("lower_is_better", "higher_is_better"):
        return None
    return 1 - rep / base if trend == "lower_is_better" else rep / base - 1


def _measured(c: Criterion, rep: dict[str, Any], base: dict[str, Any], min_coverage: float) -> dict[str, Any]:
    from kpi.catalog import BY_ID

    m = rep.get(c.metric or "", {})
    value, coverage = m.get("value"), m.get("coverage")
    out: dict[str, Any] = {"value": value, "unit": m.get("unit"), "coverage": coverage, "buckets": m.get("buckets", 0),
                           "numerator": m.get("numerator"), "denominator": m.get("denominator")}
    if value is None:
        return {**out, "result": "not_enough_data", "why": m.get("null_reason") or "no KPI rows in the period"}
    if coverage is not None and coverage < min_coverage:
        return {**out, "result": "not_enough_data",
                "why": f"data coverage {coverage:.1%} below the required {min_coverage:.0%}"}
    if c.kind == "improvement":
        b = base.get(c.metric or "", {})
        out["baseline_value"], out["baseline_coverage"] = b.get("value"), b.get("coverage")
        imp = improvement(value, b.get("value"), BY_ID[c.metric or ""].trend)
        out["improvement"] = imp
        if imp is None:
            return {**out, "result": "not_enough_data", "why": "no baseline value (or it is zero)"}
        if c.op and c.threshold is not None:
            return {**out, "result": "pass" if _compare(imp, c.op, c.threshold) else "fail"}
        return {**out, "result": "reported"}
    if c.kind == "threshold" and c.op and c.threshold is not None:
        return {**out, "result": "pass" if _compare(value, c.op, c.threshold) else "fail"}
    return {**out, "result": "reported"}


def _attested(c: Criterion, att: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"attachment_slot": c.attachment, "attested_by": "plant"}
    if not att:
        return {**out, "result": "awaiting_attestation", "why": f"the plant attaches: {c.attachment or 'scores'}"}
    out["attachment"] = att.get("attachment")
    if c.kind == "weighted_review":
        scores = att.get("scores") or {}
        missing = sorted(set(c.weights or {}) - set(scores))
        if missing:
            return {**out, "result": "awaiting_attestation", "why": f"scores missing for {', '.join(missing)}"}
        out["value"] = sum(float(scores[k]) * w for k, w in (c.weights or {}).items())
        return {**out, "result": "reported"}
    value = att.get("value")
    out["value"] = value
    if c.op and c.threshold is not None and isinstance(value, int | float):
        return {**out, "result": "pass" if _compare(float(value), c.op, c.threshold) else "fail"}
    return {**out, "result": "attested"}


def evaluate(book: Rulebook, rep: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]], report: Window,
             baseline: Window | None, attestations: dict[str, Any] | None = None,
             min_coverage: float = 0.9) -> dict[str, Any]:
    """Every criterion's result, and per tier a readiness (red: a gate fails; yellow: data or attestation
    missing; blue: every gate met), with the status mark and sources of each criterion."""
    crits = []
    for c in book.criteria:
        head = {"id": c.id, "tier": c.tier, "kind": c.kind, "title": c.title.model_dump(), "metric": c.metric,
                "op": c.op, "threshold": c.threshold, "gate": c.gate, "status": c.status,
                "status_mark": STATUS_MARK[c.status], "source": c.source, "note": c.note,
                "window": {"start": report.start, "end": report.end},
                "baseline_window": {"start": baseline.start, "end": baseline.end} if baseline else None}
        if c.kind in ("attested", "weighted_review"):
            body = _attested(c, (attestations or {}).get(c.id))
        else:
            body = _measured(c, rep, base, min_coverage)
        crits.append({**head, **body})
    tiers = []
    for t in book.tiers:
        mine = [c for c in crits if c["tier"] == t.id and c["gate"]]
        missing = [{"id": c["id"], "result": c["result"], "why": c.get("why", "")}
                   for c in mine if c["result"] not in READY_OK]
        ready = "red" if any(c["result"] == "fail" for c in mine) else ("yellow" if missing else "blue")
        tiers.append({"id": t.id, "name": t.name.model_dump(), "readiness": ready, "missing": missing})
    return {"rulebook": {"id": book.id, "version": book.version, "title": book.title.model_dump()},
            "criteria": crits, "tiers": tiers, "min_coverage": min_coverage}
