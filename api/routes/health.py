"""Probes: `/healthz` (no token: database reachable, schema version) and `/metrics` (Prometheus, with a token)."""

from __future__ import annotations

from typing import Annotated

import psycopg
from fastapi import APIRouter, Request, Response

from api.auth import Principal
from api.deps import PoolDep, require_role
from api.metrics import pipeline_metrics
from api.schemas import Health

PREFIX = ""
router = APIRouter(tags=["probes"])


@router.get("/healthz", response_model=Health)
async def healthz(pool: PoolDep, response: Response) -> Health:
    """Database reachable, which path (TimescaleDB or plain) and schema version; 503 when the database is down."""
    try:
        async with pool.connection(timeout=5) as conn:
            cur = await conn.execute(
                """SELECT (SELECT max(version) FROM schema_migrations),
                          EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')""")
            row = await cur.fetchone()
    except (psycopg.Error, TimeoutError) as exc:
        response.status_code = 503
        return Health(status="degraded", database="unreachable", path=None, detail=str(exc).strip().splitlines()[0][:200])
    assert row is not None
    return Health(status="ok", database="reachable", path="timescaledb" if row[1] else "plain",
                  schema_version=row[0])


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
async def metrics(request: Request, pool: PoolDep,
                  user: Annotated[Principal, require_role("manager")]) -> Response:
    """Requests and latencies of this process, plus KPI job lag, ingest rate per gateway and quarantine size."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    own = generate_latest(request.app.state.metrics.registry)
    async with pool.connection() as conn:
        db = await pipeline_metrics(conn)
    return Response(own + db, media_type=CONTENT_TYPE_LATEST)
