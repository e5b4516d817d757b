"""Ingest ledger: per device and UTC hour, a row count and SHA-256 over the canonical rows, hash-chained.

The exact canonical form and chain rule are in collector/README.md ("Ingest ledger") so that a certifier
can recompute them from an export without this code. The chain of a device is append-only (`chain_seq`
1, 2, ...): when late data changes an hour that is already sealed, a new revision of that hour is appended
at the end of the chain instead of rewriting later entries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

GENESIS = "0" * 64
LEDGER_LOCK_ID = 0x5F0C_0002  # one sealer at a time (several collectors may run seal_hours)
LATE_MARGIN = timedelta(hours=1)  # rows committed this long after their ingested_at stamp are still found


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "\\n").replace("\r", "\\r")


def iso_us(ts: datetime) -> str:
    """UTC instant as YYYY-MM-DDTHH:MM:SS.ffffffZ (always six fraction digits)."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_line(ts: datetime, tag: str, value: float | None, value_text: str | None, quality: str) -> str:
    """One sample row in the ledger's canonical form: `ts|tag|value|value_text|quality` and a newline."""
    v = "" if value is None else repr(float(value))
    t = "" if value_text is None else _escape(value_text)
    return f"{iso_us(ts)}|{_escape(tag)}|{v}|{t}|{quality}\n"


def rows_digest(rows: Iterable[tuple[datetime, str, float | None, str | None, str]]) -> tuple[int, str]:
    """(row count, SHA-256 hex) over canonical lines of rows already ordered by tag, ts."""
    h = hashlib.sha256()
    n = 0
    for row in rows:
        h.update(canonical_line(*row).encode())
        n += 1
    return n, h.hexdigest()


def entry_hash(prev_hash: str, device_id: str, hour: datetime, revision: int, row_count: int, rows_sha256: str) -> str:
    """SHA-256 hex of `prev_hash|device_id|hour|revision|row_count|rows_sha256` (hour as YYYY-MM-DDTHH:00:00Z)."""
    text = "|".join([prev_hash, device_id, hour_iso(hour), str(revision), str(row_count), rows_sha256])
    return hashlib.sha256(text.encode()).hexdigest()


def hour_iso(hour: datetime) -> str:
    return hour.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class LedgerEntry:
    device_id: str
    hour: datetime
    revision: int
    row_count: int
    rows_sha256: str
    prev_hash: str
    entry_hash: str
    chain_seq: int


_HOUR_ROWS = """SELECT ts, tag, value, value_text, quality FROM samples
                WHERE device_id = %s AND ts >= %s AND ts < %s ORDER BY tag COLLATE "C", ts"""


def hour_digest(conn: psycopg.Connection[Any], device_id: str, hour: datetime) -> tuple[int, str]:
    """Row count and rows_sha256 of one device-hour as stored now."""
    with conn.cursor() as cur:
        cur.execute(_HOUR_ROWS, (device_id, hour, hour + timedelta(hours=1)))
        return rows_digest(cur)


def _last_entries(conn: psycopg.Connection[Any]) -> dict[str, tuple[int, str]]:
    """Per device: (chain_seq, entry_hash) of the chain's last entry."""
    rows = conn.execute("""SELECT DISTINCT ON (device_id) device_id, chain_seq, entry_hash FROM ingest_ledger
                           ORDER BY device_id, chain_seq DESC""").fetchall()
    return {str(r[0]): (int(r[1]), str(r[2])) for r in rows}


def seal_hours(conn: psycopg.Connection[Any], before: datetime) -> int:
    """Seal every complete UTC hour ending at or before `before` that is new or changed; returns entries written.

    Candidates are device-hours with rows ingested since the last seal (minus LATE_MARGIN); each candidate's
    count and hash are recomputed and a new revision is appended only when they differ from the last one.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LEDGER_LOCK_ID,))
        row = conn.execute("SELECT max(sealed_at) FROM ingest_ledger").fetchone()
        watermark = row[0] - LATE_MARGIN if row and row[0] else None
        limit = before.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        if watermark is None:
            cands = conn.execute(
                """SELECT device_id, date_trunc('hour', ts, 'UTC') AS hour FROM samples WHERE ts < %s
                   GROUP BY 1, 2 ORDER BY 1, 2""", (limit,)).fetchall()
        else:
            cands = conn.execute(
                """SELECT device_id, date_trunc('hour', ts, 'UTC') AS hour FROM samples
                   WHERE ts < %s AND ingested_at >= %s GROUP BY 1, 2 ORDER BY 1, 2""", (limit, watermark)).fetchall()
        latest = {(str(r[0]), r[1]): (int(r[2]), int(r[3]), str(r[4])) for r in conn.execute(
            """SELECT DISTINCT ON (device_id, hour) device_id, hour, revision, row_count, rows_sha256
               FROM ingest_ledger ORDER BY device_id, hour, revision DESC""")}
        tips = _last_entries(conn)
        written = 0
        for device_id, hour in cands:
            count, digest = hour_digest(conn, device_id, hour)
            prev = latest.get((device_id, hour))
            if prev is not None and prev[1] == count and prev[2] == digest:
                continue
            revision = 1 if prev is None else prev[0] + 1
            seq, prev_hash = tips.get(device_id, (0, GENESIS))
            h = entry_hash(prev_hash, device_id, hour, revision, count, digest)
            conn.execute(
                """INSERT INTO ingest_ledger (device_id, hour, revision, row_count, rows_sha256, prev_hash,
                                              entry_hash, sealed_at, chain_seq)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, now(), %s)""",
                (device_id, hour, revision, count, digest, prev_hash, h, seq + 1))
            tips[device_id] = (seq + 1, h)
            written += 1
        return written


def ledger_entries(conn: psycopg.Connection[Any], device_id: str | None = None) -> list[LedgerEntry]:
    """Ledger entries in chain order (device, chain_seq)."""
    rows = conn.execute(
        """SELECT device_id, hour, revision, row_count, rows_sha256, prev_hash, entry_hash, chain_seq
           FROM ingest_ledger WHERE %s::text IS NULL OR device_id = %s ORDER BY device_id, chain_seq""",
        (device_id, device_id)).fetchall()
    return [LedgerEntry(str(r[0]), r[1], int(r[2]), int(r[3]), str(r[4]), str(r[5]), str(r[6]), int(r[7]))
            for r in rows]


def verify_entries(entries: list[LedgerEntry]) -> list[str]:
    """Check the hash chain alone (no database): links, entry hashes, sequence and revision order."""
    problems: list[str] = []
    prev: dict[str, LedgerEntry] = {}
    revisions: dict[tuple[str, datetime], int] = {}
    for e in entries:
        where = f"{e.device_id} {hour_iso(e.hour)} rev {e.revision}"
        before = prev.get(e.device_id)
        want_prev = before.entry_hash if before else GENESIS
        want_seq = before.chain_seq + 1 if before else 1
        if e.chain_seq != want_seq:
            problems.append(f"{where}: chain position {e.chain_seq}, expected {want_seq} (entry missing?)")
        if e.prev_hash != want_prev:
            problems.append(f"{where}: prev_hash does not match the previous entry's hash (chain broken)")
        if entry_hash(e.prev_hash, e.device_id, e.hour, e.revision, e.row_count, e.rows_sha256) != e.entry_hash:
            problems.append(f"{where}: entry_hash does not match its contents (entry altered)")
        want_rev = revisions.get((e.device_id, e.hour), 0) + 1
        if e.revision != want_rev:
            problems.append(f"{where}: revision {e.revision}, expected {want_rev}")
        revisions[(e.device_id, e.hour)] = e.revision
        prev[e.device_id] = e
    return problems


def verify_chain(conn: psycopg.Connection[Any], device_id: str | None = None,
                 since: datetime | None = None) -> list[str]:
    """Problems found (empty = OK): the chain, and each hour's latest revision against the samples stored now.

    `since` skips the row check for hours before it (raw data removed by retention); the chain is always checked.
    """
    entries = ledger_entries(conn, device_id)
    problems = verify_entries(entries)
    latest: dict[tuple[str, datetime], LedgerEntry] = {}
    for e in entries:
        latest[(e.device_id, e.hour)] = e
    for (dev, hour), e in sorted(latest.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if since is not None and hour < since:
            continue
        count, digest = hour_digest(conn, dev, hour)
        if count != e.row_count:
            problems.append(f"{dev} {hour_iso(hour)}: {count} rows stored, ledger rev {e.revision} sealed {e.row_count}")
        elif digest != e.rows_sha256:
            problems.append(f"{dev} {hour_iso(hour)}: rows differ from what ledger rev {e.revision} sealed "
                            "(a value, tag, time or quality was changed)")
    return problems
