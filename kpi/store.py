"""Writes to kpi_values: staged by COPY, upserted; a changed value of a final bucket moves to kpi_value_revisions."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

COLUMNS = ("bucket_start", "bucket", "asset_id", "kpi", "value", "null_reason", "unit", "shift_name",
           "definition_version", "code_version", "input_rows", "coverage", "bucket_end", "is_final", "provenance",
           "shift_key", "bucket_date", "quality_flags")
KEY = ("asset_id", "kpi", "bucket", "bucket_start", "shift_key")
ALL = (*COLUMNS[:12], "revision", "computed_at", *COLUMNS[12:])
_CHANGED = "(k.value IS DISTINCT FROM s.value OR k.null_reason IS DISTINCT FROM s.null_reason)"


TYPES = ("timestamptz", "text", "text", "text", "float8", "text", "text", "text", "text", "text", "int8", "float8",
         "timestamptz", "bool", "jsonb", "text", "date", "text[]")  # COLUMNS' types, for the binary COPY


class _Dumped:
    """A `dumps` for Jsonb that returns a document dumped once."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __call__(self, _: Any) -> str:
        return self.text


def _staged(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows with their provenance dumped once per distinct document (most rows share one)."""
    i = COLUMNS.index("provenance")
    done: dict[int, Jsonb] = {}
    out = []
    for r in rows:
        p = r[i]
        if isinstance(p, Jsonb):
            j = done.get(id(p))
            if j is None:
                j = done[id(p)] = Jsonb(p.obj, dumps=_Dumped(json.dumps(p.obj)))
            r = (*r[:i], j, *r[i + 1:])
        out.append(r)
    return out


def _fresh(cur: psycopg.Cursor[Any], assets: list[str], first: datetime, last: datetime) -> bool:
    """True when kpi_values has no row of `assets` with bucket_start in [first, last]."""
    row = cur.execute("SELECT NOT EXISTS (SELECT 1 FROM kpi_values WHERE bucket_start >= %s AND bucket_start <= %s "
                      "AND asset_id = ANY(%s))", (first, last, assets)).fetchone()
    return bool(row and row[0])


def write_rows(conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> tuple[int, int]:
    """Upsert rows (tuples in COLUMNS order) in one transaction; returns (rows written, revisions kept).

    A final row is never replaced by one of a bucket that was still open when computed (a partial bucket).
    Where the table holds no row of these assets in the rows' bucket range (a first backfill, the next hour),
    the rows go in by one binary COPY; otherwise they are staged by COPY in a temporary table the session keeps
    (emptied at commit) and merged."""
    if not rows:
        return 0, 0
    cols = ", ".join(COLUMNS)
    key = ", ".join(KEY)
    starts = [r[0] for r in rows]
    assets = sorted({r[2] for r in rows})
    with conn.transaction(), conn.cursor() as cur:
        if _fresh(cur, assets, min(starts), max(starts)):
            try:
                with conn.transaction(), cur.copy(f"COPY kpi_values ({cols}) FROM STDIN (FORMAT binary)") as copy:
                    copy.set_types(list(TYPES))
                    for r in _staged(rows):
                        copy.write_row(r)
                return len(rows), 0
            except psycopg.errors.UniqueViolation:
                pass  # written meanwhile (a roll-up of another worker): merge below
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS kpi_stage (LIKE kpi_values INCLUDING DEFAULTS) "
                    "ON COMMIT DELETE ROWS")
        with cur.copy(f"COPY kpi_stage ({cols}) FROM STDIN (FORMAT binary)") as copy:
            copy.set_types(list(TYPES))
            for r in _staged(rows):
                copy.write_row(r)
        # the earlier values of changed final rows; the asset and bucket range let the join use the key's index
        cur.execute(f"""INSERT INTO kpi_value_revisions ({", ".join(ALL)}, superseded_at)
                        SELECT {", ".join("k." + c for c in ALL)}, now()
                        FROM kpi_values k JOIN kpi_stage s USING ({key})
                        WHERE k.asset_id = ANY(%s) AND k.bucket_start >= %s AND k.bucket_start <= %s
                          AND k.is_final AND s.is_final AND {_CHANGED}""", (assets, min(starts), max(starts)))
        revisions = cur.rowcount
        updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c not in KEY)
        cur.execute(f"""INSERT INTO kpi_values AS k ({cols}) SELECT {cols} FROM kpi_stage s
                        ON CONFLICT ({key}) DO UPDATE SET {updates}, computed_at = now(),
                        revision = CASE WHEN k.is_final AND (k.value IS DISTINCT FROM excluded.value
                                            OR k.null_reason IS DISTINCT FROM excluded.null_reason)
                                   THEN k.revision + 1 ELSE k.revision END
                        WHERE excluded.is_final OR NOT k.is_final""")
    return len(rows), max(revisions, 0)


def read_watermark(conn: psycopg.Connection[Any], asset_id: str) -> tuple[datetime | None, datetime | None]:
    row = conn.execute("SELECT computed_until, computed_at FROM kpi_watermarks WHERE asset_id = %s",
                       (asset_id,)).fetchone()
    return (row[0], row[1]) if row else (None, None)


def write_watermark(conn: psycopg.Connection[Any], asset_id: str, until: datetime, run_started: datetime) -> None:
    """Advance computed_until (never backwards) and remember when the run that read the samples started."""
    conn.execute("""INSERT INTO kpi_watermarks (asset_id, computed_until, computed_at) VALUES (%s, %s, %s)
                    ON CONFLICT (asset_id) DO UPDATE SET
                      computed_until = greatest(kpi_watermarks.computed_until, excluded.computed_until),
                      computed_at = excluded.computed_at""", (asset_id, until, run_started))


def backfill_watermark(conn: psycopg.Connection[Any], asset_id: str, start: datetime, until: datetime,
                       run_started: datetime) -> None:
    """After a backfill of [start, until): a first watermark at `until`; an existing one moves forward only when
    the backfill reached it (start <= computed_until), and keeps its run time (late-sample detection)."""
    conn.execute("""INSERT INTO kpi_watermarks (asset_id, computed_until, computed_at) VALUES (%s, %s, %s)
                    ON CONFLICT (asset_id) DO UPDATE SET
                      computed_until = greatest(kpi_watermarks.computed_until, excluded.computed_until)
                    WHERE kpi_watermarks.computed_until >= %s""", (asset_id, until, run_started, start))


def try_lock(conn: psycopg.Connection[Any], asset_id: str) -> bool:
    """Claim an asset for this worker (session-level advisory lock); False when another worker holds it."""
    row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (asset_id,)).fetchone()
    return bool(row and row[0])


def unlock(conn: psycopg.Connection[Any], asset_id: str) -> None:
    conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (asset_id,))
