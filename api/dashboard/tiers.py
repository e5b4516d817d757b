"""Tier readiness: a rulebook evaluated over the stored KPIs by the evidence code itself (api.evidence), so the page
shows what an evidence pack for the same scope and periods would say, without signing anything."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg

from api.dashboard.views import ViewError
from core.plant import PlantConfig

EVIDENCE_ROLES = ("manager", "certifier", "admin")  # who may build a pack (POST /api/v1/evidence)


def rulebook_choices(lang: str) -> list[tuple[str, str]]:
    """(id, title in the page's language) of every rulebook shipped or installed."""
    from api.evidence.rulebook import load_all

    return [(rid, getattr(lb.rulebook.title, lang, None) or lb.rulebook.title.en)
            for rid, lb in sorted(load_all().items())]


def readiness(conn: psycopg.Connection[Any], cfg: PlantConfig, rulebook_id: str | None, scope: str, start: datetime,
              end: datetime, baseline: tuple[datetime, datetime] | None, bucket: str = "day") -> dict[str, Any]:
    """The rulebook's criteria with measured value, threshold, baseline, improvement and result, and per tier red,
    yellow or blue, exactly as `api.evidence.pack.evaluation` computes them from the same rows a pack reads
    (buckets still open are left out there and here)."""
    from api.evidence import collect
    from api.evidence.pack import evaluation
    from api.evidence.rulebook import load_all

    books = load_all()
    rid = rulebook_id or next(iter(sorted(books)), None)
    if rid not in books:
        raise ViewError(f"unknown rulebook {rulebook_id!r}: choose one of {', '.join(sorted(books))}")
    _, is_machine = collect.scope_assets(cfg, scope)
    # the evaluation reads only the scope's own rows (its roll-up); a pack also carries the machines' rows
    rows, _ = collect.kpi_rows(conn, [scope], bucket, start, end, False)
    brows = collect.kpi_rows(conn, [scope], bucket, *baseline, False)[0] if baseline else []
    iso = [None if t is None else t.astimezone(UTC).isoformat() for t in (start, end, *(baseline or (None, None)))]
    manifest = {"scope": scope, "scope_is_machine": is_machine, "bucket": bucket, "from": iso[0], "to": iso[1],
                "baseline_from": iso[2], "baseline_to": iso[3], "region": "national", "min_coverage": 0.9}
    ev, _, _ = evaluation(books[str(rid)].rulebook, manifest, collect.rows_json(rows), collect.rows_json(brows), {},
                          cfg.plant.emission_factor_kg_per_kwh)
    return {"rulebook_id": rid, "evaluation": ev, "baseline": baseline,
            "evidence_request": {"rulebook": rid, "scope": scope, "from": iso[0], "to": iso[1],
                                 "baseline_from": iso[2], "baseline_to": iso[3], "bucket": bucket}}
