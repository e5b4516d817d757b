"""`GET /api/v1/samples`: raw samples of one device (and tag) as JSON, CSV or Parquet, streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from starlette.responses import StreamingResponse

from api import audit
from api.auth import Principal
from api.deps import PlantDep, PoolDep, SamplesPeriodDep, check_device_scope, require_role
from api.schemas import Sample
from api.stream import Format, Row, stream
from collector.reads import SAMPLE_COLUMNS, samples_query

router = APIRouter(tags=["samples"])
TextQ = Query(min_length=1, max_length=200)


def sample_schema() -> Any:
    """Arrow schema of samples: the one the raw-data export writes."""
    from api.export import arrow_schemas

    return arrow_schemas()["samples"]


@router.get("/samples", response_model=list[Sample],
            responses={200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}}}})
async def samples(request: Request, pool: PoolDep, cfg: PlantDep, period: SamplesPeriodDep,
                  user: Annotated[Principal, require_role("manager", "certifier")],
                  device: Annotated[str, TextQ], tag: Annotated[str | None, TextQ] = None,
                  format: Format = "json") -> StreamingResponse:
    """Samples of `device` (one `tag`, or all) with ts in [from, to), ordered by tag and time."""
    check_device_scope(user, cfg, device, *period)  # first: a scoped token learns nothing about other devices
    if device not in {d.id for d in cfg.devices}:
        raise HTTPException(404, f"unknown device {device!r}: use a device id from the plant file "
                                 f"({', '.join(sorted(d.id for d in cfg.devices))[:300]})")
    sql, params = samples_query([device], *period, tag)
    if format != "json":
        async with pool.connection() as conn:
            await audit.record(conn, "export", token_id=user.token_id, role=user.role, method="GET",
                               path=request.url.path, query=request.url.query, status=200,
                               client=request.client.host if request.client else "")

    async def rows() -> AsyncIterator[Row]:
        async with pool.connection() as conn, conn.cursor() as cur:
            async for r in cur.stream(sql, params, size=2000):  # type: ignore[arg-type]
                yield dict(zip(SAMPLE_COLUMNS, r, strict=True))

    return stream(rows(), format, list(SAMPLE_COLUMNS), sample_schema, f"samples-{device}")
