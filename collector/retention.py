"""Raw-data retention: remove samples and status events older than N days.

TimescaleDB: `drop_chunks` (whole chunks, cheap), then a DELETE of the few older rows left in the chunk that
straddles the cutoff, so both paths keep exactly the rows with ts >= cutoff. Where the Timescale license is
present (`SHOW timescaledb.license` = 'timescale') a background `add_retention_policy` is registered as well;
the Apache edition on Debian lacks policy jobs, so the scheduled `shopfloor db retention` does the work.
Plain PostgreSQL: DELETE in batches (short transactions, no long locks).
Ledger entries, quarantine and KPI values are kept: they are the evidence and are small.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

log = logging.getLogger(__name__)

RAW_TABLES = ("samples", "device_status")
DELETE_BATCH_ROWS = 50_000


def _timescaledb(conn: psycopg.Connection[Any]) -> tuple[bool, str | None]:
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is None:
        return False, None
    row = conn.execute("SHOW timescaledb.license").fetchone()
    return True, str(row[0]) if row else None


def _is_hypertable(conn: psycopg.Connection[Any], table: str) -> bool:
    return conn.execute("""SELECT 1 FROM timescaledb_information.hypertables
                           WHERE hypertable_schema = 'public' AND hypertable_name = %s""", (table,)).fetchone() is not None


def _delete_batches(conn: psycopg.Connection[Any], table: str, cutoff: datetime) -> int:
    total = 0
    while True:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(f"""DELETE FROM {table} WHERE ctid = ANY(ARRAY(
                               SELECT ctid FROM {table} WHERE ts < %s LIMIT %s))""", (cutoff, DELETE_BATCH_ROWS))
            n = max(cur.rowcount, 0)
        total += n
        if n < DELETE_BATCH_ROWS:
            return total


def enforce_retention(conn: psycopg.Connection[Any], days: int, now: datetime | None = None) -> dict[str, Any]:
    """Delete raw rows older than `days`; returns what was done per table."""
    if days < 1:
        raise ValueError(f"retention must be at least 1 day, got {days}")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    has_ts, license_ = _timescaledb(conn)
    report: dict[str, Any] = {"path": "timescaledb" if has_ts else "plain", "cutoff": cutoff.isoformat(),
                              "days": days, "tables": {}}
    for table in RAW_TABLES:
        entry: dict[str, Any] = {}
        if has_ts and _is_hypertable(conn, table):
            if license_ == "timescale":
                with conn.transaction():
                    conn.execute("SELECT add_retention_policy(%s, make_interval(days => %s), if_not_exists => true)",
                                 (table, days))
                entry["policy"] = f"add_retention_policy {days} days"
            with conn.transaction():
                dropped = conn.execute("SELECT drop_chunks(%s::regclass, older_than => %s)", (table, cutoff)).fetchall()
            entry["chunks_dropped"] = len(dropped)
            # Only the chunk straddling the cutoff can still hold older rows (ctid batching is per table,
            # so it is not used across chunks).
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(f"DELETE FROM {table} WHERE ts < %s", (cutoff,))
                entry["rows_deleted"] = max(cur.rowcount, 0)
        else:
            entry["rows_deleted"] = _delete_batches(conn, table, cutoff)
        report["tables"][table] = entry
        log.info("event=retention table=%s cutoff=%s %s", table, cutoff.isoformat(),
                 " ".join(f"{k}={v}" for k, v in entry.items()))
    return report
