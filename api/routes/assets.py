"""`GET /api/v1/assets`: the ISA-95 asset tree with each machine's device and whether it is networked."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentUser, PlantDep
from api.schemas import AssetNode, AssetTree
from core.plant import Asset

router = APIRouter(tags=["assets"])


def _node(a: Asset) -> AssetNode:
    children = [_node(c) for c in a.children]
    networked = a.device is not None if a.kind == "machine" else any(c.networked for c in children)
    return AssetNode(id=a.id, kind=a.kind, name=a.name or a.id, device=a.device, networked=networked,
                     production=a.production, ideal_cycle_time_s=a.ideal_cycle_time_s, children=children)


@router.get("/assets", response_model=AssetTree)
async def assets(cfg: PlantDep, user: CurrentUser) -> AssetTree:
    """The asset tree (a certifier sees the subtree of the token's scope)."""
    roots: list[Asset] = cfg.assets
    if user.scope is not None and user.scope != cfg.plant.id:
        roots = [a for a, _ in cfg.iter_assets() if a.id == user.scope]
    return AssetTree(plant_id=cfg.plant.id, plant_name=cfg.plant.name or cfg.plant.id, timezone=cfg.plant.timezone,
                     assets=[_node(a) for a in roots])
