"""API settings in one place: where the database and plant file are, auth on or off, request limits."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    """Everything the API process is configured with (built by `shopfloor api` from its flags and environment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str
    config_path: Path
    auth: bool = True  # False only with an explicit --no-auth (local demo): every request acts as admin
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=8, ge=1)
    max_period_days: int = Field(default=400, ge=1)  # longest from..to a KPI or export query may span
    max_samples_period_days: int = Field(default=62, ge=1)  # longest from..to of a raw samples query
    max_query_chars: int = Field(default=4096, ge=256)  # longer query strings are refused with 414
    max_body_bytes: int = Field(default=1_000_000, ge=1024)  # larger request bodies are refused with 413
    cookie_name: str = "shopfloor_token"
    kpi_cache_mb: float = Field(default=64, ge=0)  # JSON answers of /kpis kept while their rows are unchanged; 0: off
