"""`GET /api/v1/kpis` (stored KPI values, streamed as JSON, CSV or Parquet) and `GET /api/v1/kpis/catalog`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from psycopg.rows import dict_row
from starlette.responses import Response

from api import audit
from api.cache import ResponseCache
from api.deps import CurrentUser, PeriodDep, PlantDep, PoolDep, check_scope
from api.schemas import KpiCatalog, KpiDefinition, KpiValue
from api.stream import Format, Row, json_text, stream
from kpi.catalog import BY_ID, CATALOG, DEFINITION_VERSION
from kpi.reads import kpi_values_json_query, kpi_values_query, kpi_values_version_query

router = APIRouter(tags=["kpis"])
STATUS_MARKS = {
    "verified": "formula checked against the cited standard's text",
    "secondary": "formula taken from a secondary source describing the standard",
    "unverified": "formula from a source not yet checked",
    "proposed": "this product's own definition or mapping, open to review",
}
KNOWN = ("bucket_start", "bucket_end", "bucket", "asset_id", "kpi", "value", "null_reason", "unit", "shift_name",
         "coverage", "revision", "is_final", "computed_at", "definition_version", "code_version", "input_rows",
         "provenance")


def kpi_schema() -> Any:
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema([("bucket_start", ts), ("bucket_end", ts), ("bucket", pa.string()), ("asset_id", pa.string()),
                      ("kpi", pa.string()), ("value", pa.float64()), ("null_reason", pa.string()),
                      ("unit", pa.string()), ("shift_name", pa.string()), ("coverage", pa.float64()),
                      ("revision", pa.int32()), ("is_final", pa.bool_()), ("computed_at", ts),
                      ("definition_version", pa.string()), ("code_version", pa.string()),
                      ("input_rows", pa.int64()), ("provenance", pa.string()), ("extra", pa.string())])


@router.get("/kpis/catalog", response_model=KpiCatalog)
async def catalog(user: CurrentUser) -> KpiCatalog:
    """Every KPI and element: formula, unit, inputs, source and its status mark."""
    return KpiCatalog(definition_version=DEFINITION_VERSION, status_marks=STATUS_MARKS,
                      kpis=[KpiDefinition(**{**asdict(k), "inputs": list(k.inputs), "range": list(k.range),
                                             "levels": list(k.levels)}) for k in CATALOG])


def _kpis(text: str) -> list[str]:
    ids = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in ids if k not in BY_ID]
    if unknown or not ids:
        raise HTTPException(422, f"unknown kpi {', '.join(repr(k[:60]) for k in unknown) or repr(text[:60])}: "
                                 "use ids from /api/v1/kpis/catalog (e.g. oee, availability, networking_rate), "
                                 "comma-separated")
    return ids


def _row(r: dict[str, Any]) -> Row:
    out = {k: r.get(k) for k in KNOWN}
    out["extra"] = {k: v for k, v in r.items() if k not in KNOWN}
    return out


async def _json(request: Request, pool: Any, asset: str, ids: list[str], bucket: str,
                period: tuple[datetime, datetime]) -> Response:
    """JSON built by PostgreSQL; a repeat of a query whose rows have not changed comes from the cache."""
    cache: ResponseCache = request.app.state.kpi_cache
    extra = tuple(c for c in request.app.state.kpi_columns if c not in KNOWN)
    key = (asset, tuple(ids), bucket, *period, extra)
    async with pool.connection() as conn:
        cur = await conn.execute(*kpi_values_version_query([asset], ids, bucket, *period))
        validator = await cur.fetchone()
    body = cache.get(key, validator)
    if body is not None:
        return Response(body, media_type="application/json")
    return json_text(pool, *kpi_values_json_query([asset], ids, bucket, *period, KNOWN, extra),
                     keep=lambda b: cache.put(key, validator, b))


@router.get("/kpis", response_model=list[KpiValue],
            responses={200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}}}})
async def kpis(request: Request, pool: PoolDep, cfg: PlantDep, period: PeriodDep, user: CurrentUser,
               asset: Annotated[str, Query(min_length=1, max_length=200, description="Asset id or the plant id.")],
               kpi: Annotated[str, Query(min_length=1, max_length=2000, description="KPI id(s), comma-separated.")],
               bucket: Literal["hour", "shift", "day"] = "hour", format: Format = "json") -> Response:
    """Stored values of `kpi` for `asset`, buckets starting in [from, to): value or null with its reason,
    coverage, revision and provenance."""
    if asset != cfg.plant.id and not any(a.id == asset for a, _ in cfg.iter_assets()):
        raise HTTPException(404, f"unknown asset {asset[:100]!r}: use the plant id ({cfg.plant.id}) or an asset "
                                 "id from /api/v1/assets")
    ids = _kpis(kpi)
    check_scope(user, cfg, asset, *period)
    if format != "json":
        if user.role == "viewer":
            raise HTTPException(403, "CSV and Parquet exports need the manager, certifier or admin role; "
                                     "your token has the viewer role (format=json works)")
        async with pool.connection() as conn:
            await audit.record(conn, "export", token_id=user.token_id, role=user.role, method="GET",
                               path=request.url.path, query=request.url.query, status=200,
                               client=request.client.host if request.client else "")
    if format == "json":
        return await _json(request, pool, asset, ids, bucket, period)
    sql, params = kpi_values_query([asset], ids, bucket, *period)

    async def rows() -> AsyncIterator[Row]:
        async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            async for r in cur.stream(sql, params, size=2000):  # type: ignore[arg-type]
                yield _row(r)

    return stream(rows(), format, [*KNOWN, "extra"], kpi_schema, f"kpis-{asset}-{bucket}")
