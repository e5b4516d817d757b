"""`GET /api/v1/ledger/checkpoints`: the head of each device's ingest-ledger chain (hash and position)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from api.auth import Principal
from api.deps import PlantDep, PoolDep, in_scope, require_role
from api.schemas import LedgerCheckpoint, LedgerCheckpoints
from collector.reads import chain_heads_query

router = APIRouter(tags=["ledger"])


@router.get("/ledger/checkpoints", response_model=LedgerCheckpoints)
async def checkpoints(pool: PoolDep, cfg: PlantDep,
                      user: Annotated[Principal, require_role("manager", "certifier")]) -> LedgerCheckpoints:
    """Per device the last ledger entry (chain_seq, entry_hash): a certifier notes these to detect rewrites later."""
    sql, params = chain_heads_query()
    async with pool.connection() as conn:
        cur = await conn.execute(sql, params)  # type: ignore[arg-type]
        rows = await cur.fetchall()
    allowed = None
    if user.scope is not None:
        allowed = {m.device for m in cfg.machines() if m.device and in_scope(cfg, user.scope, m.id)}
    return LedgerCheckpoints(kind="chain-heads", checkpoints=[
        LedgerCheckpoint(device_id=r[0], chain_seq=r[1], hour=r[2], revision=r[3], row_count=r[4], entry_hash=r[5],
                         sealed_at=r[6]) for r in rows if allowed is None or r[0] in allowed])
