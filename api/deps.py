"""Dependencies every route takes by annotation: the pool, the plant model, the settings, the current user.

    @router.get("/things")
    async def things(pool: PoolDep, cfg: PlantDep, user: Annotated[Principal, require_role("manager")]): ...

`require_role(...)` lets the named roles in (admin always); `check_scope` refuses what lies outside a
certifier token's asset subtree or period. Both answer 403 with what would be needed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, Request
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from api import audit
from api.auth import NO_AUTH, Principal, lookup
from api.settings import Settings
from core.plant import PlantConfig


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_pool(request: Request) -> AsyncConnectionPool[Any]:
    return request.app.state.pool  # type: ignore[no-any-return]


def get_stage_pool(request: Request) -> ConnectionPool[Any]:
    """Small sync pool for stage functions written against sync connections (kpi.networking, exports)."""
    return request.app.state.stage_pool  # type: ignore[no-any-return]


def get_plant(request: Request) -> PlantConfig:
    return request.app.state.plant  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[AsyncConnectionPool[Any], Depends(get_pool)]
StagePoolDep = Annotated[ConnectionPool[Any], Depends(get_stage_pool)]
PlantDep = Annotated[PlantConfig, Depends(get_plant)]


def request_token(request: Request, settings: Settings) -> str | None:
    """The bearer token, else the dashboard cookie, else None."""
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.cookies.get(settings.cookie_name) or None


async def get_current_user(request: Request, pool: PoolDep, settings: SettingsDep) -> Principal:
    """The principal behind the request's token (401 without a valid one); certifier uses are audited."""
    if not settings.auth:
        return NO_AUTH
    token = request_token(request, settings)
    if token is None:
        raise HTTPException(401, "this endpoint needs a token: send 'Authorization: Bearer <token>' "
                                 "(an admin creates one with `shopfloor api token create --role viewer`)",
                            headers={"WWW-Authenticate": "Bearer"})
    async with pool.connection() as conn:
        user = await lookup(conn, token)
        if user is None:
            raise HTTPException(401, "the token is unknown, revoked or expired: ask an admin for a new one",
                                headers={"WWW-Authenticate": "Bearer"})
        request.state.principal = user
        if user.role == "certifier":
            await audit.record(conn, "certifier_use", token_id=user.token_id, role=user.role,
                               method=request.method, path=request.url.path, query=request.url.query,
                               client=request.client.host if request.client else "")
    return user


CurrentUser = Annotated[Principal, Depends(get_current_user)]


def require_role(*roles: str) -> Any:
    """A dependency letting in the given roles (admin always); others get 403 naming the role needed."""
    names = list(dict.fromkeys((*roles, "admin")))
    allowed = set(names)
    needed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]

    async def check(user: CurrentUser) -> Principal:
        if user.role not in allowed:
            raise HTTPException(403, f"this needs the {needed} role; your token has the {user.role} role")
        return user

    return Depends(check)


def in_scope(cfg: PlantConfig, scope: str | None, asset_id: str) -> bool:
    """True when asset_id lies in the subtree of `scope` (None or the plant id: everything)."""
    if scope is None or scope == cfg.plant.id or scope == asset_id:
        return True
    return any(a.id == asset_id and scope in ancestors for a, ancestors in cfg.iter_assets())


def check_scope(user: Principal, cfg: PlantConfig, asset_id: str | None, start: datetime | None = None,
                end: datetime | None = None) -> None:
    """403 when the asset or the period lies outside what the user's token may read."""
    if user.scope is not None and not in_scope(cfg, user.scope, asset_id or cfg.plant.id):
        raise HTTPException(403, f"{asset_id or cfg.plant.id!r} is outside this token's scope "
                                 f"({user.scope}): ask for an asset in {user.scope}")
    check_period(user, start, end)


def check_period(user: Principal, start: datetime | None, end: datetime | None) -> None:
    """403 when [start, end) reaches outside the token's period."""
    lo, hi = user.period_from, user.period_to
    if (lo is not None and start is not None and start < lo) or (hi is not None and end is not None and end > hi):
        raise HTTPException(403, f"the period is outside this token's period "
                                 f"({_iso(lo) or '-'} .. {_iso(hi) or '-'}): narrow from/to to it")


def check_device_scope(user: Principal, cfg: PlantConfig, device_id: str, start: datetime, end: datetime) -> None:
    """check_scope for a device: allowed when a machine using the device is in scope."""
    machines = [m.id for m in cfg.machines() if m.device == device_id]
    if user.scope is not None and not any(in_scope(cfg, user.scope, m) for m in machines):
        raise HTTPException(403, f"device {device_id!r} is outside this token's scope ({user.scope})")
    check_period(user, start, end)


def _iso(ts: datetime | None) -> str:
    return "" if ts is None else ts.astimezone(UTC).isoformat()


def _period(start: datetime, end: datetime, max_days: int) -> tuple[datetime, datetime]:
    try:
        start = (start if start.tzinfo else start.replace(tzinfo=UTC)).astimezone(UTC)
        end = (end if end.tzinfo else end.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise HTTPException(400, "'from' or 'to' lies outside the years 1..9999 in UTC: give a real time") from None
    if start.year < EARLIEST_YEAR or end.year > LATEST_YEAR:
        raise HTTPException(400, f"'from' and 'to' must lie between the years {EARLIEST_YEAR} and {LATEST_YEAR}")
    if end <= start:
        raise HTTPException(400, f"'to' ({end.isoformat()}) must be after 'from' ({start.isoformat()})")
    if end - start > timedelta(days=max_days):
        raise HTTPException(400, f"the period spans {(end - start).days} days; at most {max_days} days "
                                 "per request: split it into shorter periods")
    return start, end


EARLIEST_YEAR, LATEST_YEAR = 1970, 9000
FromQ = Annotated[datetime, Query(alias="from", description="Start, ISO 8601 (UTC when no offset is given).")]
ToQ = Annotated[datetime, Query(alias="to", description="End (exclusive), ISO 8601.")]


def get_period(settings: SettingsDep, start: FromQ, end: ToQ) -> tuple[datetime, datetime]:
    """`from` and `to` as aware datetimes; 400 when inverted or longer than max_period_days."""
    return _period(start, end, settings.max_period_days)


def get_samples_period(settings: SettingsDep, start: FromQ, end: ToQ) -> tuple[datetime, datetime]:
    """Like get_period with the shorter limit for raw samples."""
    return _period(start, end, settings.max_samples_period_days)


PeriodDep = Annotated[tuple[datetime, datetime], Depends(get_period)]
SamplesPeriodDep = Annotated[tuple[datetime, datetime], Depends(get_samples_period)]
