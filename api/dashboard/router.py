"""The dashboard's routes: pages at /, sign-in by token (HttpOnly cookie), htmx partials, static files.

The app plugs it in with `build_router(hooks)`: the hooks give a database connection, the plant, the signed-in
user and token checking, so the dashboard shares the API's pool and authentication instead of having its own.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from api.dashboard import views as V
from api.dashboard.data import utcnow
from api.dashboard.i18n import LANG_COOKIE, catalog, kpi_name, kpi_status, networking_reason, pick_lang
from api.dashboard.render import STATIC_PREFIX, local_time, render, static_file, url
from core.plant import PlantConfig

log = logging.getLogger(__name__)
PAGES = ("glance", "networking", "trends", "losses", "quality", "tiers")
PATHS = {"glance": "/", "networking": "/networking", "trends": "/trends", "losses": "/losses",
         "quality": "/quality", "tiers": "/tiers"}
ENTRY_ROLES = ("manager", "admin")  # who may give downtime reasons (as POST /api/v1/operator-entries)
CHART_PAGES = ("networking", "trends", "losses")
STATE_KEYS = ("lang", "scope", "period", "bucket", "day", "from", "to", "rulebook", "baseline_from", "baseline_to")
YEAR_S = 365 * 24 * 3600


@dataclass(frozen=True)
class Viewer:
    """Who is looking: a name for the header, the role, and the asset the token is limited to (None: all)."""

    name: str
    role: str
    scope: str | None = None
    period_from: datetime | None = None  # a certifier token's period: views outside it are refused
    period_to: datetime | None = None
    token_id: int | None = None


@dataclass(frozen=True)
class Hooks:
    """What the dashboard needs from the app it is mounted in."""

    connect: Callable[[Request], AbstractContextManager[psycopg.Connection[Any]]]
    plant: Callable[[Request], PlantConfig]
    viewer: Callable[[Request], Awaitable[Viewer | None]]  # from the cookie or bearer token; None: not signed in
    check_token: Callable[[Request, str], Awaitable[Viewer | None]]  # a token typed in or passed as ?token=
    cookie_name: Callable[[Request], str]
    refresh_s: Callable[[], float] = lambda: 5.0  # how often live views poll for a fresh partial


def _state(request: Request, lang: str) -> dict[str, str | None]:
    q = request.query_params
    return {**{k: q.get(k) for k in STATE_KEYS}, "lang": lang}


def _lang(request: Request) -> str:
    return pick_lang(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE),
                     request.headers.get("accept-language"))


def _remember_lang(response: Response, request: Request, lang: str) -> None:
    if request.query_params.get("lang") and request.cookies.get(LANG_COOKIE) != lang:
        response.set_cookie(LANG_COOKIE, lang, max_age=YEAR_S, samesite="lax", path="/")


def build_router(hooks: Hooks) -> APIRouter:
    """The dashboard's APIRouter (include it without a prefix: the dashboard is the site's root)."""
    router = APIRouter(include_in_schema=False)

    @router.get(f"{STATIC_PREFIX}/{{name:path}}")
    def static(name: str, request: Request) -> Response:
        f = static_file(name)
        if f is None:
            return Response(f"no such file: {name}\n", status_code=404, media_type="text/plain")
        headers = {"Cache-Control": f"public, max-age={YEAR_S}, immutable", "ETag": f'"{f.etag}"',
                   "Vary": "Accept-Encoding"}
        if request.headers.get("if-none-match") == f'"{f.etag}"':
            return Response(status_code=304, headers=headers)
        if "gzip" in request.headers.get("accept-encoding", ""):
            return Response(f.gz, media_type=f.media_type, headers={**headers, "Content-Encoding": "gzip"})
        return Response(f.body, media_type=f.media_type, headers=headers)

    @router.get("/signin", response_class=HTMLResponse)
    def signin_form(request: Request, next: str = "/") -> Response:
        lang = _lang(request)
        return _page_response(request, lang, render("signin.html", **_base(request, lang, None, "signin"),
                                                    next=_safe_next(next), failed=False))

    @router.post("/signin", response_class=HTMLResponse)
    async def signin(request: Request, token: str = Form(""), next: str = Form("/")) -> Response:
        return await _sign_in(request, hooks, token.strip(), _safe_next(next))

    @router.get("/signout")
    def signout(request: Request) -> Response:
        resp = RedirectResponse("/signin", status_code=303)
        resp.delete_cookie(hooks.cookie_name(request), path="/")
        return resp

    @router.post("/losses/reason", response_class=HTMLResponse)
    async def reason(request: Request, asset_id: str = Form(...), event_start: str = Form(...),
                     event_end: str = Form(...), reason_code: str = Form(...), note: str = Form(""),
                     back: str = Form("/losses")) -> Response:
        viewer = await hooks.viewer(request)
        if viewer is None:
            return RedirectResponse("/signin", status_code=303)
        return await run_in_threadpool(_reason, request, hooks, viewer, _safe_next(back), asset_id, event_start,
                                       event_end, reason_code, note)

    def page(name: str) -> Callable[..., Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            token = request.query_params.get("token")
            if token:
                rest = {k: v for k, v in request.query_params.items() if k != "token"}
                return await _sign_in(request, hooks, token, url(request.url.path, rest))
            viewer = await hooks.viewer(request)
            if viewer is None:
                target = url(request.url.path, dict(request.query_params))
                return RedirectResponse(url("/signin", {"next": target}), status_code=303)
            return await run_in_threadpool(_show, request, hooks, viewer, name)

        handler.__name__ = f"dashboard_{name}"
        return handler

    for name in PAGES:
        router.add_api_route(PATHS[name], page(name), methods=["GET"], response_class=HTMLResponse)
    return router


def _safe_next(target: str) -> str:
    """Only local paths after sign-in (no open redirect to another site)."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


async def _sign_in(request: Request, hooks: Hooks, token: str, target: str) -> Response:
    viewer = await hooks.check_token(request, token) if token else None
    if viewer is None:
        lang = _lang(request)
        html = render("signin.html", **_base(request, lang, None, "signin"), next=target, failed=bool(token))
        return _page_response(request, lang, html, 401 if token else 200)
    log.info("event=dashboard_signin user=%s role=%s", viewer.name, viewer.role)
    resp = RedirectResponse(target, status_code=303)
    resp.set_cookie(hooks.cookie_name(request), token, httponly=True, samesite="lax", path="/",
                    secure=request.url.scheme == "https", max_age=30 * 24 * 3600)
    return resp


def _base(request: Request, lang: str, viewer: Viewer | None, page: str) -> dict[str, Any]:
    state = _state(request, lang)
    other = "en" if lang == "zh" else "zh"
    return {"t": catalog(lang), "lang": lang, "viewer": viewer, "page": page, "state": state, "pages": PAGES,
            "paths": PATHS, "url": url, "lang_url": url(request.url.path, state, lang=other),
            "kpi_name": lambda k: kpi_name(k, lang), "kpi_status": kpi_status,
            "why": lambda r: networking_reason(r, catalog(lang))}


def _page_response(request: Request, lang: str, html: str, status: int = 200) -> Response:
    headers = {"Cache-Control": "no-store", "Vary": "Accept-Encoding"}
    body = html.encode()
    if len(body) > 1400 and "gzip" in request.headers.get("accept-encoding", ""):
        body = gzip.compress(body, 5, mtime=0)
        headers["Content-Encoding"] = "gzip"
    resp = Response(body, status_code=status, headers=headers, media_type="text/html; charset=utf-8")
    _remember_lang(resp, request, lang)
    return resp


def _show(request: Request, hooks: Hooks, viewer: Viewer, page: str) -> Response:
    lang = _lang(request)
    cfg = hooks.plant(request)
    ctx = _base(request, lang, viewer, page)
    ctx.update(plant=cfg, refresh_s=hooks.refresh_s(), tz=cfg.plant.timezone, charts=page in CHART_PAGES,
               ltime=lambda ts, fmt="%Y-%m-%d %H:%M:%S": local_time(ts, cfg.plant.timezone, fmt))
    partial = request.query_params.get("partial") == "1"
    try:
        with hooks.connect(request) as conn:
            ctx.update(_view(conn, cfg, viewer, page, ctx["state"], lang))
    except V.ViewError as exc:
        ctx.update(error=str(exc))
        return _page_response(request, lang, render("error.html", **ctx), 400)
    ctx["partial_url"] = url(request.url.path, ctx["state"], partial="1")
    html = render(f"{page}.html", **ctx, partial=partial)
    return _page_response(request, lang, html)


def _view(conn: psycopg.Connection[Any], cfg: PlantConfig, viewer: Viewer, page: str,
          state: dict[str, str | None], lang: str) -> dict[str, Any]:
    now = utcnow()
    scope = V.check_scope(cfg, state.get("scope") or viewer.scope)
    if viewer.scope and scope != viewer.scope and scope not in _below(cfg, viewer.scope):
        raise V.ViewError(f"scope {scope!r} is outside what this sign-in may see ({viewer.scope})")
    state["scope"] = scope
    default_period = {"glance": "today", "networking": "today", "trends": "7d", "losses": "today",
                      "quality": "24h", "tiers": "30d"}[page]
    period = state.get("period") or default_period
    if state.get("from") or state.get("to"):
        start, end = V.explicit_window(state.get("from"), state.get("to"), now)
    else:
        start, end = V.period_window(cfg, period, now)
    state["period"] = period
    lo, hi = viewer.period_from, viewer.period_to
    if (lo is not None and start < lo) or (hi is not None and end > hi):
        raise V.ViewError(f"this sign-in may see {lo or '-'} .. {hi or '-'} only; the dashboard shows recent periods")
    out: dict[str, Any] = {"now": now, "start": start, "end": end, "scopes": V.scope_choices(cfg),
                           "periods": V.PERIODS}
    if page == "glance":
        out.update(V.glance(conn, cfg, now))
    elif page == "networking":
        out.update(V.networking(conn, cfg, scope, start, end))
    elif page == "trends":
        bucket = state.get("bucket") or "hour"
        state["bucket"] = bucket
        out.update(V.trends(conn, cfg, scope, bucket, start, end, lang), buckets=V.BUCKETS)
    elif page == "losses":
        day = V.day_start(cfg, state.get("day"), now)
        state["day"] = day.strftime("%Y-%m-%d")
        out.update(V.losses(conn, cfg, scope, start, end, day, now, lang), may_enter=viewer.role in ENTRY_ROLES)
    elif page == "tiers":
        from api.dashboard import tiers

        baseline = None
        if state.get("baseline_from"):
            baseline = V.explicit_window(state.get("baseline_from"), state.get("baseline_to"), now, 400)
        out.update(tiers.readiness(conn, cfg, state.get("rulebook"), scope, start, end, baseline),
                   rulebooks=tiers.rulebook_choices(lang), evidence_roles=tiers.EVIDENCE_ROLES)
        state["rulebook"] = out["rulebook_id"]
    else:
        out.update(V.quality(conn, cfg, start, end))
    return out


def _reason(request: Request, hooks: Hooks, viewer: Viewer, back: str, asset_id: str, event_start: str,
            event_end: str, reason_code: str, note: str) -> Response:
    """Record a downtime reason given in the losses page, then show the page again (or one line saying why not)."""
    from api import operator

    lang = _lang(request)
    cfg = hooks.plant(request)
    try:
        if viewer.role not in ENTRY_ROLES:
            raise V.ViewError(f"giving downtime reasons needs the manager role; this sign-in has the {viewer.role} role")
        if viewer.scope and asset_id != viewer.scope and asset_id not in _below(cfg, viewer.scope):
            raise V.ViewError(f"{asset_id!r} is outside what this sign-in may see ({viewer.scope})")
        t0, t1 = V.explicit_window(event_start, event_end, utcnow(), 400)
        with hooks.connect(request) as conn:
            operator.record(conn, cfg, author=viewer.name, role=viewer.role, token_id=viewer.token_id, asset_id=asset_id,
                            event_start=t0, event_end=t1, reason_code=reason_code, note=note)
    except (V.ViewError, operator.OperatorInputError) as exc:
        ctx = _base(request, lang, viewer, "losses")
        ctx.update(plant=cfg, error=str(exc), ltime=lambda ts, fmt="": local_time(ts, cfg.plant.timezone))
        return _page_response(request, lang, render("error.html", **ctx), 400)
    log.info("event=downtime_reason machine=%s start=%s reason=%s by=%s", asset_id, event_start, reason_code,
             viewer.name)
    return RedirectResponse(back, status_code=303)


def _below(cfg: PlantConfig, asset: str) -> set[str]:
    return {a.id for a, path in cfg.iter_assets() if asset in path}
