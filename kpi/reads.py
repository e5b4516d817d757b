"""Reads of kpi_values for the API and exports (the SQL stays with the stage that owns the table).

Rows are read with `SELECT *` so that columns added to kpi_values later pass through to callers by name.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import psycopg


def kpi_values_query(assets: list[str], kpis: list[str], bucket: str, start: datetime,
                     end: datetime) -> tuple[str, tuple[Any, ...]]:
    """Stored KPI rows of these assets and kpis for buckets of kind `bucket` starting in [start, end)."""
    return ("""SELECT * FROM kpi_values
               WHERE asset_id = ANY(%s) AND kpi = ANY(%s) AND bucket = %s AND bucket_start >= %s AND bucket_start < %s
               ORDER BY asset_id, kpi, bucket_start""", (assets, kpis, bucket, start, end))


_COLUMN = re.compile(r"^[a-z_][a-z0-9_]*$")


def kpi_value_columns(conn: psycopg.Connection[Any]) -> list[str]:
    """The columns kpi_values has in this database, in table order ([] before migration)."""
    return [str(r[0]) for r in conn.execute(
        """SELECT column_name FROM information_schema.columns
           WHERE table_schema = current_schema() AND table_name = 'kpi_values' ORDER BY ordinal_position""")]


def kpi_values_json_query(assets: list[str], kpis: list[str], bucket: str, start: datetime, end: datetime,
                          known: tuple[str, ...], extra: tuple[str, ...] = (), chunk: int = 2000
                          ) -> tuple[str, tuple[Any, ...]]:
    """The rows of kpi_values_query as JSON objects built by PostgreSQL, `chunk` objects per result row joined
    by commas (few round trips, little Python per row): the `known` columns in that order, then "extra" with
    the `extra` columns (kpi_value_columns() minus known). Times follow the session's TimeZone."""
    for c in (*known, *extra):
        if not _COLUMN.match(c):
            raise ValueError(f"{c!r} is not a column name")
    fields = ", ".join(f"'{c}', k.{c}" for c in known)
    extras = ", ".join(f"'{c}', k.{c}" for c in extra)
    return (f"""SELECT string_agg(obj, ',' ORDER BY n) FROM (
                  SELECT json_build_object({fields}, 'extra', json_build_object({extras}))::text AS obj,
                         row_number() OVER (ORDER BY asset_id, kpi, bucket_start) AS n
                  FROM kpi_values k
                  WHERE asset_id = ANY(%s) AND kpi = ANY(%s) AND bucket = %s AND bucket_start >= %s
                    AND bucket_start < %s) rows
                GROUP BY (n - 1) / {int(chunk)} ORDER BY (n - 1) / {int(chunk)}""", (assets, kpis, bucket, start, end))


def kpi_values_version_query(assets: list[str], kpis: list[str], bucket: str, start: datetime,
                             end: datetime) -> tuple[str, tuple[Any, ...]]:
    """(row count, latest computed_at) of the rows kpi_values_query returns: the job stamps computed_at = now()
    on every insert and update, so a cached answer with the same pair is still the stored one."""
    return ("""SELECT count(*), max(computed_at) FROM kpi_values
               WHERE asset_id = ANY(%s) AND kpi = ANY(%s) AND bucket = %s AND bucket_start >= %s AND bucket_start < %s""",
            (assets, kpis, bucket, start, end))
