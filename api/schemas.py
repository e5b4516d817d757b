"""Response models: the API's contract (OpenAPI at /docs). Fields are added, never renamed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: str = Field(description="ok, or degraded when the database cannot be reached")
    database: str = Field(description="reachable | unreachable")
    path: str | None = Field(None, description="timescaledb | plain")
    schema_version: int | None = None
    detail: str = ""


class AssetNode(BaseModel):
    id: str
    kind: str
    name: str
    device: str | None = Field(None, description="device id of a machine; null when it is not networked")
    networked: bool = Field(description="a machine with a configured device (non-machines: any machine below is)")
    production: bool = Field(description="counts in the equipment register (networking rate)")
    ideal_cycle_time_s: float | None = None
    children: list[AssetNode] = Field(default_factory=list)


class AssetTree(BaseModel):
    plant_id: str
    plant_name: str
    timezone: str
    assets: list[AssetNode]


class Sample(BaseModel):
    ts: datetime
    device_id: str
    tag: str
    value: float | None
    value_text: str | None
    quality: str


class KpiValue(BaseModel):
    bucket_start: datetime
    bucket_end: datetime | None
    bucket: str
    asset_id: str
    kpi: str
    value: float | None
    null_reason: str | None = Field(description="why value is null (zero denominator, no data), else null")
    unit: str | None
    shift_name: str | None = None
    coverage: float | None = Field(description="fraction of the bucket with data behind it, 0..1")
    revision: int
    is_final: bool | None = None
    computed_at: datetime | None = None
    definition_version: str | None = None
    code_version: str | None = None
    input_rows: int | None = None
    provenance: dict[str, Any] | None = None
    extra: dict[str, Any] = Field(default_factory=dict, description="further stored columns, passed through")


class KpiDefinition(BaseModel):
    id: str
    name_en: str
    name_zh: str
    formula: str
    unit: str
    inputs: list[str]
    trend: str
    source: str
    status: str = Field(description="verified | secondary | unverified | proposed: how far the formula as "
                                    "written is backed by its source")
    kind: str = Field(description="kpi, or element (a time or quantity the KPIs are built from)")
    range: list[float | None]
    notes: str
    levels: list[str]


class KpiCatalog(BaseModel):
    definition_version: str
    status_marks: dict[str, str]
    kpis: list[KpiDefinition]


class MachineNetworking(BaseModel):
    machine_id: str
    device_id: str | None
    reporting: bool
    connected_fraction: float
    reason: str
    last_seen: datetime | None = Field(description="latest sample of any quality before the period's end")
    state: str = Field(description="last known connection state: connected | disconnected | unknown")


class NetworkingRate(BaseModel):
    scope: str
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    rate: float | None = Field(description="numerator / denominator (count-based)")
    time_weighted_rate: float | None = Field(description="mean fraction of the period each machine was connected")
    numerator: int = Field(description="production machines with >= 1 good-quality sample in the period")
    denominator: int = Field(description="production machines in scope in the equipment register")
    equipment_register: list[str] = Field(description="the machines counted: production machines in scope")
    definition: str
    machines_not_reporting: list[MachineNetworking]
    machines: list[MachineNetworking]


class LedgerCheckpoint(BaseModel):
    device_id: str
    chain_seq: int
    hour: datetime
    revision: int
    row_count: int
    entry_hash: str
    sealed_at: datetime | None


class LedgerCheckpoints(BaseModel):
    kind: str = Field(description="chain-heads: the last entry of each device's ingest-ledger chain")
    checkpoints: list[LedgerCheckpoint]


class AuditEntry(BaseModel):
    id: int
    ts: datetime
    event: str
    token_id: int | None
    role: str | None
    method: str
    path: str
    query: str
    status: int | None
    detail: str
    client: str
