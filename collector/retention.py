"""Raw-data retention: remove samples and status events older than N days.

TimescaleDB: `drop_chunks` (whole chunks, cheap), then a DELETE of the few older rows left in the chunk that
straddles the cutoff, so both paths keep exactly the rows with ts >= cutoff. Where the Timescale license is
present (`SHOW timescaledb.license` = 'timescale') a background `add_retention_policy` is registered as well;
the Apache edition on Debian lacks policy jobs, so the scheduled `shopfloor db retention` does the work.
Plain PostgreSQL: DELETE in batches (short transactions, no long locks).
Ledger entries, quarantine and KPI values are kept: they are the evidence and are small.

`apply_licensed_policies` (called by `collector.db.migrate` on the TimescaleDB path) turns on what only the
Timescale license offers: native compression of `samples` (segmented by device_id, tag) with a compression
policy, and retention policies. Under the Apache license it changes nothing and logs what it skipped and why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

log = logging.getLogger(__name__)

RAW_TABLES = ("samples", "device_status")
DELETE_BATCH_ROWS = 50_000
COMPRESS_AFTER_DAYS = 7  # chunks older than this are compressed (Timescale license only)


def _timescaledb(conn: psycopg.Connection[Any]) -> tuple[bool, str | None]:
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is None:
        return False, None
    row = conn.execute("SHOW timescaledb.license").fetchone()
    return True, str(row[0]) if row else None


def _is_hypertable(conn: psycopg.Connection[Any], table: str) -> bool:
    return conn.execute("""SELECT 1 FROM timescaledb_information.hypertables
                           WHERE hypertable_schema = 'public' AND hypertable_name = %s""", (table,)).fetchone() is not None


def _ensure_retention_policy(conn: psycopg.Connection[Any], table: str, days: int) -> str:
    """Register add_retention_policy(table, days), replacing a policy with another interval (Timescale license)."""
    row = conn.execute("""SELECT (config->>'drop_after')::interval = make_interval(days => %s)
                          FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention'
                          AND hypertable_schema = 'public' AND hypertable_name = %s""", (days, table)).fetchone()
    if row is not None and row[0]:
        return f"retention policy {days} days (already registered)"
    if row is not None:
        conn.execute("SELECT remove_retention_policy(%s::regclass, if_exists => true)", (table,))
    conn.execute("SELECT add_retention_policy(%s::regclass, drop_after => make_interval(days => %s), "
                 "if_not_exists => true)", (table, days))
    return f"add_retention_policy {days} days"


def apply_licensed_policies(conn: psycopg.Connection[Any], retention_days: int | None,
                            log_fn: Callable[[str], object] | None = None,
                            compress_after_days: int = COMPRESS_AFTER_DAYS) -> dict[str, Any]:
    """Compression and policy jobs where `SHOW timescaledb.license` is 'timescale'; otherwise skip and say why.

    Returns {"license", "applied": [what], "skipped": [(what, why)]}. Every line is logged (logger
    collector.retention, level INFO) and passed to `log_fn` when given (migrate's output).
    """
    has_ts, license_ = _timescaledb(conn)
    report: dict[str, Any] = {"license": license_, "applied": [], "skipped": []}

    def say(line: str) -> None:
        log.info("event=licensed_policies %s", line)
        if log_fn is not None:
            log_fn(line)

    def skip(what: str, why: str) -> None:
        report["skipped"].append((what, why))
        say(f"skipped {what}: {why}")

    wanted = ["compression of samples (segmentby device_id, tag)", f"add_compression_policy samples "
              f"{compress_after_days} days"]
    wanted += [f"add_retention_policy {t}" for t in RAW_TABLES] if retention_days else []
    if not has_ts:
        for what in wanted:
            skip(what, "plain PostgreSQL (no timescaledb extension); retention runs as batched DELETE from "
                       "enforce_retention (collector housekeeping hourly, or `shopfloor db retention`)")
        return report
    if license_ != "timescale":
        for what in wanted:
            skip(what, f"timescaledb.license is {license_!r}: compression and policy jobs need the Timescale "
                       "license (this build fails with 'functionality not supported under the current "
                       "apache license'); retention runs as drop_chunks from enforce_retention (collector "
                       "housekeeping hourly, or `shopfloor db retention` on a timer)")
        if not retention_days:
            skip("add_retention_policy", "no retention configured (plant.retention_days)")
        return report
    hyper = {t for t in (*RAW_TABLES,) if _is_hypertable(conn, t)}
    if "samples" in hyper:
        with conn.transaction():
            enabled = conn.execute("""SELECT compression_enabled FROM timescaledb_information.hypertables
                                      WHERE hypertable_schema = 'public' AND hypertable_name = 'samples'""").fetchone()
            if not (enabled and enabled[0]):
                conn.execute("""ALTER TABLE samples SET (timescaledb.compress,
                                    timescaledb.compress_segmentby = 'device_id, tag',
                                    timescaledb.compress_orderby = 'ts')""")
                report["applied"].append("compression of samples (segmentby device_id, tag)")
                say("enabled compression of samples (segmentby device_id, tag, orderby ts)")
            if retention_days and retention_days <= compress_after_days:
                skip(f"add_compression_policy samples {compress_after_days} days",
                     f"retention ({retention_days} days) drops chunks before they would be compressed")
            else:
                conn.execute("SELECT add_compression_policy('samples', compress_after => make_interval(days => %s), "
                             "if_not_exists => true)", (compress_after_days,))
                report["applied"].append(f"add_compression_policy samples {compress_after_days} days")
                say(f"compression policy: samples chunks older than {compress_after_days} days")
    else:
        skip("compression of samples", "samples is not a hypertable")
    if not retention_days:
        skip("add_retention_policy", "no retention configured (plant.retention_days)")
        return report
    for table in RAW_TABLES:
        if table not in hyper:
            skip(f"add_retention_policy {table}", f"{table} is not a hypertable")
            continue
        with conn.transaction():
            what = _ensure_retention_policy(conn, table, retention_days)
        report["applied"].append(f"{what} on {table}")
        say(f"{what} on {table}")
    return report


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
                    entry["policy"] = _ensure_retention_policy(conn, table, days)
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
