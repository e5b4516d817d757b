"""Tier evidence over HTTP: rulebooks, evidence packs (request, status, download), signed ledger checkpoints.

Every evidence request and download is written to the audit log. The pack is built by the same code as
`shopfloor evidence pack` and signed with the key in SHOPFLOOR_SIGNING_KEY (a file path; never served).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from api import audit
from api.auth import Principal
from api.deps import CurrentUser, PlantDep, PoolDep, SettingsDep, check_scope, require_role

router = APIRouter(tags=["evidence"])
Managers = Annotated[Principal, require_role("manager", "certifier")]
PackId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="Evidence pack id (from POST /evidence).")]


class EvidenceRequest(BaseModel):
    """What to evaluate: rulebook, scope, report period and (optional) frozen baseline period."""

    model_config = ConfigDict(extra="forbid")
    rulebook: str = Field(min_length=1, max_length=200)
    scope: str = Field(min_length=1, max_length=200)
    from_: datetime = Field(alias="from")
    to: datetime
    baseline_from: datetime | None = None
    baseline_to: datetime | None = None
    bucket: str = Field(default="day", pattern="^(hour|shift|day)$")
    region: str = Field(default="national", max_length=100)
    min_coverage: float = Field(default=0.9, ge=0, le=1)


def _rulebook_doc(lb: Any) -> dict[str, Any]:
    from api.evidence.rulebook import STATUS_MARK

    rb = lb.rulebook
    return {"id": rb.id, "version": rb.version, "title": rb.title.model_dump(), "jurisdiction": rb.jurisdiction,
            "tiers": [{"id": t.id, "name": t.name.model_dump()} for t in rb.tiers],
            "sources": {k: v.model_dump() for k, v in rb.sources.items()},
            "criteria": [{**c.model_dump(), "status_mark": STATUS_MARK[c.status]} for c in rb.criteria]}


@router.get("/tiers/rulebooks")
async def rulebooks(user: CurrentUser) -> list[dict[str, Any]]:
    """Every tier rulebook with its criteria, sources and status marks (verified/secondary/unverified/proposed)."""
    from api.evidence.rulebook import load_all

    return [_rulebook_doc(lb) for _, lb in sorted(load_all().items())]


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def _key() -> Path:
    k = os.environ.get("SHOPFLOOR_SIGNING_KEY")
    if not k:
        raise HTTPException(503, "this server has no signing key: set SHOPFLOOR_SIGNING_KEY to the private key "
                                 "file written by `shopfloor evidence keygen`, then restart `shopfloor api`")
    return Path(k)


def _build(settings: Any, cfg: Any, body: EvidenceRequest) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    import yaml

    from api.evidence.pack import PackRequest, build

    path = Path(settings.config_path)
    text = path.read_text(encoding="utf-8") if path.is_file() else \
        yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True), sort_keys=False, allow_unicode=True)
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "pack.zip"
        manifest = build(PackRequest(
            path, settings.database_url, body.rulebook, body.scope, body.from_, body.to, _key(), out,
            body.baseline_from, body.baseline_to, body.bucket, body.region, min_coverage=body.min_coverage,
            plant_text=text))
        data = out.read_bytes()
    import zipfile
    from io import BytesIO

    with zipfile.ZipFile(BytesIO(data)) as z:
        ev = json.loads(z.read("evaluation.json"))
    summary = {"tiers": [{"id": t["id"], "readiness": t["readiness"], "missing": t["missing"]} for t in ev["tiers"]],
               "criteria": [{k: c.get(k) for k in ("id", "tier", "result", "value", "unit", "status", "status_mark")}
                            for c in ev["criteria"]]}
    return data, manifest, summary


@router.post("/evidence", status_code=201)
async def create(request: Request, body: EvidenceRequest, pool: PoolDep, cfg: PlantDep, settings: SettingsDep,
                 user: Managers) -> dict[str, Any]:
    """Build and sign an evidence pack; returns its id, evaluation summary and download path."""
    check_scope(user, cfg, body.scope, min(body.from_, body.baseline_from or body.from_),
                max(body.to, body.baseline_to or body.to))
    async with pool.connection() as conn:
        await audit.record(conn, "evidence_request", token_id=user.token_id, role=user.role, method="POST",
                           path=request.url.path, detail=f"evidence request {body.model_dump_json(by_alias=True)}",
                           client=_client(request))
    data, manifest, summary = await asyncio.to_thread(_build, settings, cfg, body)
    digest = hashlib.sha256(data).hexdigest()
    async with pool.connection() as conn:
        cur = await conn.execute(
            """INSERT INTO evidence_packs (token_id, role, request, manifest, summary, sha256, zip)
               VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (user.token_id, user.role, body.model_dump_json(by_alias=True), json.dumps(manifest, default=str),
             json.dumps(summary), digest, data))
        row = await cur.fetchone()
    pid = int(row[0]) if row else 0
    return {"id": pid, "sha256": digest, "manifest": manifest, "summary": summary,
            "download": f"/api/v1/evidence/{pid}/download"}


async def _pack(pool: Any, user: Principal, cfg: Any, pack_id: int, cols: str) -> tuple[Any, ...]:
    async with pool.connection() as conn:
        cur = await conn.execute(f"SELECT {cols}, manifest FROM evidence_packs WHERE id = %s", (pack_id,))
        row = await cur.fetchone()
    if row is None:
        raise HTTPException(404, f"no evidence pack {pack_id}: POST /api/v1/evidence creates one")
    m = row[-1] if isinstance(row[-1], dict) else json.loads(row[-1])
    check_scope(user, cfg, m["scope"], datetime.fromisoformat(m["baseline_from"] or m["from"]),
                datetime.fromisoformat(m["to"]))
    return tuple(row)


@router.get("/evidence/{pack_id}")
async def show(request: Request, pack_id: PackId, pool: PoolDep, cfg: PlantDep, user: Managers) -> dict[str, Any]:
    """A pack's request, manifest and evaluation summary."""
    pid, created, req, summary, digest, m = await _pack(pool, user, cfg, pack_id,
                                                        "id, created_at, request, summary, sha256")
    async with pool.connection() as conn:
        await audit.record(conn, "evidence_view", token_id=user.token_id, role=user.role, method="GET",
                           path=request.url.path, detail=f"evidence view {pid}", client=_client(request))
    return {"id": pid, "created_at": created.isoformat(), "request": req, "summary": summary, "sha256": digest,
            "manifest": m, "download": f"/api/v1/evidence/{pid}/download"}


@router.get("/evidence/{pack_id}/download", responses={200: {"content": {"application/zip": {}}}})
async def download(request: Request, pack_id: PackId, pool: PoolDep, cfg: PlantDep, user: Managers) -> Response:
    """The signed pack (zip with attestation.intoto.jsonl at its root)."""
    pid, data, _ = await _pack(pool, user, cfg, pack_id, "id, zip")
    async with pool.connection() as conn:
        await audit.record(conn, "evidence_download", token_id=user.token_id, role=user.role, method="GET",
                           path=request.url.path, detail=f"evidence download {pid}", client=_client(request))
    return Response(bytes(data), media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="evidence-{pid}.zip"'})


@router.get("/ledger/checkpoints/signed", responses={200: {"content": {"application/x-ndjson": {}}}})
async def signed_checkpoints(pool: PoolDep, user: Managers) -> Response:
    """Signed checkpoints of the ledger chain heads, one DSSE envelope per line (what `evidence verify
    --checkpoints FILE` reads): keep them to show later that the ledger was not rewritten."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT envelope FROM ledger_checkpoints ORDER BY created_at, id")
        rows = await cur.fetchall()
    lines = "".join(json.dumps(r[0] if isinstance(r[0], dict) else json.loads(r[0]), sort_keys=True) + "\n"
                    for r in rows)
    return Response(lines, media_type="application/x-ndjson")
