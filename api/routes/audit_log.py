"""`GET /api/v1/audit` (admins): the append-only audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api import audit
from api.auth import Principal
from api.deps import PeriodDep, PoolDep, require_role
from api.schemas import AuditEntry

router = APIRouter(tags=["audit"])


@router.get("/audit", response_model=list[AuditEntry])
async def audit_log(pool: PoolDep, period: PeriodDep, user: Annotated[Principal, require_role("admin")],
                    event: audit.Event | None = None,
                    limit: Annotated[int, Query(ge=1, le=10000)] = 1000) -> list[AuditEntry]:
    """Audit rows in [from, to), newest first: certifier token uses, exports, evidence packs, refused requests."""
    async with pool.connection() as conn:
        return [AuditEntry(**r) for r in await audit.read(conn, *period, event=event, limit=limit)]
