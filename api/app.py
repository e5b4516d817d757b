"""The FastAPI application: `create_app(settings)` wires settings, plant model, pools, routers and error handlers.

Routers are found, not listed: every module in api/routes/ that defines `router` is included, under its
module-level `PREFIX` (default "/api/v1"; "" for pages and probes). Adding an endpoint group touches one new
file. See api/README.md.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import audit, routes
from api.cache import ResponseCache
from api.metrics import Metrics, MetricsMiddleware
from api.settings import Settings
from core.errors import ShopfloorError
from core.plant import PlantConfig

log = logging.getLogger(__name__)
API_PREFIX = "/api/v1"
NO_AUTH_BANNER = ("*** AUTHENTICATION IS OFF (--no-auth): anyone who can reach this port reads everything as admin. "
                  "Use it only on a local demo. ***")


def create_app(settings: Settings, plant: PlantConfig | None = None) -> FastAPI:
    """The API application; the plant file is loaded now (an invalid file never starts a server)."""
    if plant is None:
        from core.config import load_config

        plant = load_config(settings.config_path)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from psycopg_pool import AsyncConnectionPool, ConnectionPool

        if not settings.auth:
            log.warning("event=api_no_auth %s", NO_AUTH_BANNER)
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            settings.database_url, min_size=settings.pool_min_size, max_size=settings.pool_max_size,
            kwargs={"autocommit": True, "options": "-c TimeZone=UTC"}, open=False, name="api")
        stage_pool: ConnectionPool[Any] = ConnectionPool(
            settings.database_url, min_size=0, max_size=2, kwargs={"autocommit": True}, open=False, name="api-stage")
        await pool.open()
        stage_pool.open()
        app.state.pool, app.state.stage_pool = pool, stage_pool
        app.state.kpi_columns = await run_in_threadpool(_kpi_columns, stage_pool)
        try:
            yield
        finally:
            stage_pool.close()
            await pool.close()

    app = FastAPI(title="Shopfloor API", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None,  # served by routes/docs.py, behind the token like everything else
                  description="Assets, samples, KPIs, networking rate and exports of one plant. "
                              "Send `Authorization: Bearer <token>`; roles viewer, manager, certifier, admin.")
    app.state.settings, app.state.plant = settings, plant
    app.state.metrics = Metrics()
    app.state.kpi_cache = ResponseCache(int(settings.kpi_cache_mb * 1e6))
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics, max_query_chars=settings.max_query_chars,
                       max_body_bytes=settings.max_body_bytes)
    _handlers(app)
    for module in sorted(m.name for m in pkgutil.iter_modules(routes.__path__)):
        mod = importlib.import_module(f"{routes.__name__}.{module}")
        if hasattr(mod, "router"):
            prefix = getattr(mod, "PREFIX", API_PREFIX)
            app.include_router(mod.router, prefix=prefix)
            app.state.metrics.prefixes.update({id(r): prefix for r in mod.router.routes})
    return app


def _kpi_columns(stage_pool: Any) -> list[str]:
    """kpi_values' columns, read once: columns added by later migrations pass through as "extra"."""
    from kpi.reads import kpi_value_columns

    try:
        with stage_pool.connection(timeout=10) as conn:
            return kpi_value_columns(conn)
    except psycopg.Error as exc:
        log.warning("event=api_schema_unknown error=%r hint='run shopfloor db migrate; KPI rows are served "
                    "without extra columns until the API restarts'", str(exc).strip()[:200])
        return []


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("shopfloor")
    except PackageNotFoundError:
        return "0"


_HINTS = {
    "missing": "is required",
    "datetime_from_date_parsing": "is not a time: use ISO 8601, e.g. 2024-03-01T00:00:00+08:00",
    "datetime_parsing": "is not a time: use ISO 8601, e.g. 2024-03-01T00:00:00+08:00",
    "datetime_type": "is not a time: use ISO 8601, e.g. 2024-03-01T00:00:00+08:00",
}


def _validation_message(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors: list[dict[str, Any]] = []
    parts = []
    for e in exc.errors():
        loc, msg, kind = [str(p) for p in e.get("loc", ())], str(e.get("msg", "")), str(e.get("type", ""))
        errors.append({"loc": loc, "msg": msg, "type": kind})
        where = f"{loc[0]} parameter {loc[-1]!r}" if len(loc) > 1 and loc[0] in ("query", "path", "header", "cookie") \
            else "request body" if loc[:1] == ["body"] else ".".join(loc) or "request"
        parts.append(f"{where}: {_HINTS.get(kind, msg)}")
    return "; ".join(parts) or "invalid request", errors


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, errors = _validation_message(exc)
        return JSONResponse({"detail": message, "errors": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code in (401, 403):
            await _audit_refused(request, exc.status_code, str(exc.detail))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(ShopfloorError)
    async def domain_error(request: Request, exc: ShopfloorError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(psycopg.OperationalError)
    async def db_down(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        log.warning("event=api_db_unavailable error=%r", str(exc).strip()[:200])
        return JSONResponse({"detail": "the database is unavailable; retry shortly (see /healthz)"}, status_code=503)


async def _audit_refused(request: Request, status: int, detail: str) -> None:
    pool = getattr(request.app.state, "pool", None)
    if pool is None:
        return
    user = getattr(request.state, "principal", None)
    try:
        async with pool.connection() as conn:
            await audit.record(conn, "refused", token_id=getattr(user, "token_id", None),
                               role=getattr(user, "role", None), method=request.method, path=request.url.path,
                               query=request.url.query, status=status, detail=detail,
                               client=request.client.host if request.client else "")
    except psycopg.Error as exc:
        log.warning("event=api_audit_failed error=%r hint='check the database; the request was refused anyway'",
                    str(exc).strip()[:200])
