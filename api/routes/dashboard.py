"""The plant managers' dashboard at / (pages, sign-in, static files): api/dashboard, wired to the API's pools and tokens."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from fastapi import Request

from api.auth import NO_AUTH, Principal, lookup
from api.dashboard.router import Hooks, Viewer, build_router
from api.deps import get_plant, get_settings, get_stage_pool, request_token

PREFIX = ""
REFRESH_ENV = "SHOPFLOOR_DASHBOARD_REFRESH_S"
log = logging.getLogger(__name__)


def _refresh_s() -> float:
    """Seconds between live refreshes: $SHOPFLOOR_DASHBOARD_REFRESH_S (0.5 .. 3600), else 5."""
    raw = os.environ.get(REFRESH_ENV, "")
    try:
        value = float(raw) if raw else 5.0
    except ValueError:
        value = -1.0
    if not 0.5 <= value <= 3600:
        log.warning("event=dashboard_bad_refresh %s=%r hint='give seconds between 0.5 and 3600'; using 5",
                    REFRESH_ENV, raw)
        return 5.0
    return value


@contextmanager
def _connect(request: Request) -> Iterator[psycopg.Connection[Any]]:
    with get_stage_pool(request).connection() as conn:
        yield conn


def _viewer(p: Principal) -> Viewer:
    return Viewer(p.name or f"token {p.token_id}", p.role, p.scope, p.period_from, p.period_to, p.token_id)


async def _check(request: Request, token: str) -> Viewer | None:
    async with request.app.state.pool.connection() as conn:
        p = await lookup(conn, token)
    return None if p is None else _viewer(p)


async def _current(request: Request) -> Viewer | None:
    settings = get_settings(request)
    if not settings.auth:
        return _viewer(NO_AUTH)
    token = request_token(request, settings)
    return None if token is None else await _check(request, token)


router = build_router(Hooks(connect=_connect, plant=get_plant, viewer=_current, check_token=_check,
                            cookie_name=lambda request: get_settings(request).cookie_name, refresh_s=_refresh_s))
