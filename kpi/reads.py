"""Reads of kpi_values for the API and exports (the SQL stays with the stage that owns the table).

Rows are read with `SELECT *` so that columns added to kpi_values later pass through to callers by name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


def kpi_values_query(assets: list[str], kpis: list[str], bucket: str, start: datetime,
                     end: datetime) -> tuple[str, tuple[Any, ...]]:
    """Stored KPI rows of these assets and kpis for buckets of kind `bucket` starting in [start, end)."""
    return ("""SELECT * FROM kpi_values
               WHERE asset_id = ANY(%s) AND kpi = ANY(%s) AND bucket = %s AND bucket_start >= %s AND bucket_start < %s
               ORDER BY asset_id, kpi, bucket_start""", (assets, kpis, bucket, start, end))
