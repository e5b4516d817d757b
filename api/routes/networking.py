"""`GET /api/v1/networking-rate`: served by kpi.networking.networking_rate, the function the KPI job stores."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentUser, PeriodDep, PlantDep, StagePoolDep, check_scope
from api.schemas import MachineNetworking, NetworkingRate
from collector.errors import ScopeError
from kpi import networking

router = APIRouter(tags=["networking"])
DEFINITION = ("rate = production machines with at least one good-quality sample in [from, to) / production "
              "machines in scope in the equipment register; time_weighted_rate = mean fraction of [from, to) "
              "each machine's device was connected (device_status; a machine without a device counts 0)")


@router.get("/networking-rate", response_model=NetworkingRate, response_model_by_alias=True)
async def networking_rate(cfg: PlantDep, stage_pool: StagePoolDep, period: PeriodDep, user: CurrentUser,
                          scope: Annotated[str | None, Query(max_length=200, description="Asset id or the plant "
                                                             "id (default: the whole plant).")] = None
                          ) -> NetworkingRate:
    """Count-based and time-weighted networking rate, numerator, denominator, the register counted, and the
    machines not reporting with their reasons and last-seen times."""
    scope = scope or (user.scope if user.scope is not None else cfg.plant.id)
    try:
        networking.scope_machines(cfg, scope)
    except ScopeError as exc:
        raise HTTPException(404, str(exc)) from None
    check_scope(user, cfg, scope, *period)

    def compute() -> networking.NetworkingRate:
        with stage_pool.connection() as conn:
            return networking.networking_rate(conn, cfg, scope, *period)

    r = await run_in_threadpool(compute)
    machines = [MachineNetworking(machine_id=m.machine_id, device_id=m.device_id, reporting=m.reporting,
                                  connected_fraction=m.connected_fraction, reason=m.reason,
                                  last_seen=m.last_sample_ts, state=m.state) for m in r.machines]
    return NetworkingRate(scope=scope, start=r.start, end=r.end, rate=r.rate, time_weighted_rate=r.time_weighted_rate,
                          numerator=r.machines_reporting, denominator=r.machines_total,
                          equipment_register=[m.machine_id for m in r.machines], definition=DEFINITION,
                          machines_not_reporting=[m for m in machines if not m.reporting], machines=machines)
