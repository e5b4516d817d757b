"""`GET/POST /api/v1/operator-entries`: managers' reasons for downtime events (append-only, hash-chained)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api import operator
from api.auth import Principal
from api.deps import CurrentUser, PeriodDep, PlantDep, StagePoolDep, check_scope, require_role

router = APIRouter(tags=["operator input"])


class DowntimeReason(BaseModel):
    """A reason for one downtime event of a machine, and why it is given."""

    model_config = ConfigDict(extra="forbid")
    asset_id: str = Field(min_length=1, max_length=200)
    event_start: datetime
    event_end: datetime
    reason_code: str = Field(min_length=1, max_length=64)
    note: str = Field(min_length=1, max_length=2000)


@router.get("/operator-entries")
async def entries(cfg: PlantDep, stage_pool: StagePoolDep, period: PeriodDep, user: CurrentUser,
                  scope: Annotated[str | None, Query(max_length=200)] = None) -> dict[str, Any]:
    """Entries for downtime events starting in [from, to), in chain order, with the reason tree."""
    scope = scope or user.scope or cfg.plant.id
    check_scope(user, cfg, scope, *period)
    machines = [m.id for m, path in cfg.iter_assets()
                if m.kind == "machine" and (scope in (cfg.plant.id, m.id) or scope in path)]

    def read() -> list[dict[str, Any]]:
        with stage_pool.connection() as conn:
            return operator.read(conn, *period, machines)

    return {"entries": await run_in_threadpool(read),
            "reasons": [r.__dict__ for r in operator.reasons(cfg)]}


@router.post("/operator-entries", status_code=201)
async def add(body: DowntimeReason, cfg: PlantDep, stage_pool: StagePoolDep,
              user: Annotated[Principal, require_role("manager")]) -> dict[str, Any]:
    """Record a reason for a downtime event (who and when from the token; why in `note`)."""
    check_scope(user, cfg, body.asset_id, body.event_start, body.event_end)

    def write() -> dict[str, Any]:
        with stage_pool.connection() as conn:
            return operator.record(conn, cfg, author=user.name or f"token {user.token_id}", role=user.role,
                                   token_id=user.token_id, **body.model_dump())

    try:
        return await run_in_threadpool(write)
    except operator.OperatorInputError as exc:
        raise HTTPException(422, str(exc)) from None
