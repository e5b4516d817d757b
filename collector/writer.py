"""Batch writer: samples by binary COPY, idempotent on replay, one transaction per call.

Fast path: COPY straight into `samples`. A replayed batch (at-least-once uplink) hits the unique key
(device_id, tag, ts) and raises UniqueViolation; we then roll back and take the slow path: COPY into a
temporary staging table and one `INSERT ... SELECT ... ON CONFLICT` that counts what was new and reports keys
stored with another value (conflicting duplicates: the stored row stays, the other goes to quarantine).
Rows the database refuses (bad text, out-of-range time) are isolated by bisection under savepoints and
go to `quarantine`, so one poison row never blocks a batch. Transient failures raise TransientDbError
(nothing committed; retry the same batch) and the connection is reopened on the next call.
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format

from collector.errors import BatchRejectedError, TransientDbError, is_transient
from core.record import SAMPLE_COLUMNS, SAMPLE_TYPES, Sample, StatusEvent
from core.times import EPOCH, from_us
from core.wire_limits import safe_text

log = logging.getLogger(__name__)

COLUMNS = SAMPLE_COLUMNS  # the wire's field order (core.record.FIELDS): rows are COPYed as they were checked
TYPES = list(SAMPLE_TYPES)
_COLS = ", ".join(COLUMNS)
COPY_SAMPLES = f"COPY samples ({_COLS}) FROM STDIN (FORMAT BINARY)"
_COPY_STAGE = f"COPY samples_stage ({_COLS}) FROM STDIN (FORMAT BINARY)"
# One pass over the unique index: new keys are inserted; a key already stored with another value, text or
# quality is "updated" to itself (ingested_at = its own, so nothing changes: the stored row stays) only so
# that RETURNING reports it (xmax <> 0), with the stored values, beside the staged ones. Identical replays
# are neither inserted nor returned. The staged rows hold each key once (deduplicated in Python first).
_MERGE_STAGE = f"""
WITH merged AS (
    INSERT INTO samples AS s ({_COLS}) SELECT {_COLS} FROM samples_stage
    ON CONFLICT (device_id, tag, ts) DO UPDATE SET ingested_at = s.ingested_at
    WHERE (s.value, s.value_text, s.quality) IS DISTINCT FROM (EXCLUDED.value, EXCLUDED.value_text, EXCLUDED.quality)
    RETURNING s.xmax = 0 AS new, s.device_id, s.tag, s.ts, s.value, s.value_text, s.quality)
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, count(*) FROM merged WHERE new
UNION ALL
SELECT m.device_id, m.tag, m.ts, m.value, m.value_text, m.quality, st.value, st.value_text, st.quality, NULL
FROM merged m JOIN samples_stage st USING (device_id, tag, ts) WHERE NOT m.new"""
_INSERT_EVENT = """INSERT INTO device_status (ts, device_id, state, reason, gateway_id)
                   VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"""
_INSERT_QUARANTINE = "INSERT INTO quarantine (source, reason, payload) VALUES (%s, %s, %s)"

Row = tuple[Any, ...]
# Raised while dumping a row (a time beyond int64 microseconds, a wrong type): that row is poison, not the batch.
_CONVERSION_ERRORS = (struct.error, OverflowError, TypeError, ValueError)


@dataclass(frozen=True)
class WriteResult:
    inserted: int
    duplicates: int  # includes the conflicting ones
    rejected: int = 0  # rows the database refused, now in `quarantine`
    conflicts: int = 0  # duplicates whose value differs from the stored row's, each now in `quarantine`


ts_from_us = from_us  # integer epoch microseconds -> aware UTC datetime (core.times)


def sample_rows(samples: list[Sample]) -> list[Row]:
    """Samples → tuples in COLUMNS order, times as integer microseconds (what record.check_row returns)."""
    return [(s.device_id, s.tag, s.ts_us, s.value, s.text, s.quality.value, s.status, s.server_ts_us,
             s.historical, s.gateway_id, s.boot_epoch, s.seq) for s in samples]


_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds: PostgreSQL's binary timestamp origin
_PACK_Q = struct.Struct(">q").pack


class MicrosTimestamptzDumper(Dumper):
    """Binary COPY of timestamptz straight from integer Unix microseconds: no datetime per row.

    Registered by oid only (cls=None), so it applies where COPY's set_types names timestamptz and nowhere else.
    """

    format = Format.BINARY
    oid = postgres.types["timestamptz"].oid

    def dump(self, obj: Any) -> bytes:
        if type(obj) is int:
            return _PACK_Q(obj - _PG_EPOCH_US)
        delta = obj - EPOCH  # a datetime (e.g. a caller passing ts_from_us values)
        return _PACK_Q((delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds - _PG_EPOCH_US)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class SampleWriter:
    """One connection, one transaction per write(); safe to call again after a TransientDbError."""

    def __init__(self, url: str, *, connect_timeout_s: float = 10, source: str = "collector") -> None:
        self.url = url
        self.connect_timeout_s = connect_timeout_s
        self.source = source
        self._conn: psycopg.Connection[Any] | None = None

    # ------------------------------------------------------------------ connection

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        self.close()
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=int(self.connect_timeout_s))
            conn.adapters.register_dumper(None, MicrosTimestamptzDumper)
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS samples_stage (LIKE samples INCLUDING DEFAULTS) "
                         "ON COMMIT DELETE ROWS")
        except psycopg.Error as exc:
            if is_transient(exc):
                raise TransientDbError(f"database unavailable: {_first_line(exc)}") from exc
            raise
        self._conn = conn
        return conn

    def connection(self) -> psycopg.Connection[Any]:
        """The writer's open connection (autocommit), for writes that belong with a batch (gap records)."""
        return self._connection()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:  # closing a broken connection can fail; it is gone either way
                log.debug("event=close_failed")

    def __enter__(self) -> SampleWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _map_error(self, exc: psycopg.Error) -> Exception:
        if is_transient(exc):
            self.close()
            return TransientDbError(f"database unavailable: {_first_line(exc)}")
        return BatchRejectedError(f"database refused the batch: {_first_line(exc)}")

    # ------------------------------------------------------------------ writes

    def write(self, samples: list[Sample], events: list[StatusEvent]) -> WriteResult:
        """Store samples and status events in one transaction; duplicates are counted, not stored twice."""
        return self.write_rows(sample_rows(samples), events)

    def write_rows(self, rows: list[Row], events: list[StatusEvent]) -> WriteResult:
        """Rows in COLUMNS order with integer-microsecond times (record.check_row's output), in one transaction."""
        if not rows and not events:
            return WriteResult(0, 0)
        conn = self._connection()
        try:
            try:
                with conn.transaction():
                    self._copy(conn, COPY_SAMPLES, rows)
                    self._events(conn, events)
                return WriteResult(len(rows), 0)
            except pg_errors.UniqueViolation:
                pass  # a replay (or a duplicate inside the batch): dedupe through the staging table
            except psycopg.Error as exc:
                if is_transient(exc):
                    raise
                log.warning("event=batch_refused rows=%d error=%r action=isolating", len(rows), _first_line(exc))
            except _CONVERSION_ERRORS as exc:
                log.warning("event=batch_refused rows=%d error=%r action=isolating", len(rows), _first_line(exc))
            with conn.transaction():
                inserted, rejected, conflicts = self._careful(conn, rows)
                self._events(conn, events)
            return WriteResult(inserted, len(rows) - inserted - rejected, rejected, conflicts)
        except psycopg.Error as exc:
            raise self._map_error(exc) from exc

    def quarantine(self, source: str, reason: str, payload: bytes) -> None:
        """Keep a payload the collector could not use, with the reason, for a person to look at.

        Source and reason are escaped (NUL bytes, lone surrogates) and capped, and the payload is stored as
        bytes, so this insert cannot be refused for what the payload contains.
        """
        conn = self._connection()
        try:
            conn.execute(_INSERT_QUARANTINE, (safe_text(source, 1000), safe_text(reason), payload))
        except psycopg.Error as exc:
            raise self._map_error(exc) from exc

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _copy(conn: psycopg.Connection[Any], statement: str, rows: list[Row]) -> None:
        with conn.cursor() as cur, cur.copy(statement) as copy:
            copy.set_types(TYPES)
            for row in rows:
                copy.write_row(row)

    @staticmethod
    def _events(conn: psycopg.Connection[Any], events: list[StatusEvent]) -> None:
        if events:
            with conn.cursor() as cur:
                cur.executemany(_INSERT_EVENT, [(ts_from_us(e.ts_us), e.device_id, e.state, e.reason, e.gateway_id)
                                                for e in events])

    def _careful(self, conn: psycopg.Connection[Any], rows: list[Row]) -> tuple[int, int, int]:
        """Staging-table insert with bisection under savepoints; returns (inserted, rejected, conflicts).

        Of several rows with one (device, tag, ts) the first is kept; a later one or a stored one with another
        value, text or quality is a conflicting duplicate and goes to quarantine with both versions.
        """
        bad: list[tuple[Row, str]] = []
        quarantined: list[tuple[str, bytes]] = []
        first: dict[tuple[Any, Any, Any], Row] = {}
        unique: list[Row] = []
        for row in rows:
            kept = first.setdefault((row[0], row[1], row[2]), row)
            if kept is row:
                unique.append(row)
            elif (kept[3], kept[4], kept[5]) != (row[3], row[4], row[5]):
                ts = from_us(row[2]) if type(row[2]) is int else row[2]
                quarantined.append(_conflict(row[0], row[1], ts, kept[3:6], row[3:6], "earlier in the batch"))
        inserted = self._bisect(conn, unique, bad, quarantined)
        for row, reason in bad:
            payload = json.dumps(dict(zip(COLUMNS, row, strict=True)), default=str).encode()
            quarantined.append((reason, payload))
        if quarantined:
            with conn.cursor() as cur:
                cur.executemany(_INSERT_QUARANTINE, [(self.source, safe_text(r), p) for r, p in quarantined])
        if bad:
            log.warning("event=rows_quarantined count=%d first_reason=%r", len(bad), bad[0][1])
        conflicts = len(quarantined) - len(bad)
        if conflicts:
            log.warning("event=conflicting_duplicates count=%d first=%r hint='the first value is kept; check the "
                        "source clock (two values for one time stamp)'", conflicts, quarantined[0][0])
        return inserted, len(bad), conflicts

    def _bisect(self, conn: psycopg.Connection[Any], rows: list[Row], bad: list[tuple[Row, str]],
                conflicts: list[tuple[str, bytes]]) -> int:
        if not rows:
            return 0
        try:
            with conn.transaction():  # a savepoint inside write()'s transaction
                conn.execute("TRUNCATE samples_stage")
                self._copy(conn, _COPY_STAGE, rows)
                with conn.cursor() as cur:
                    result = cur.execute(_MERGE_STAGE).fetchall()
                    inserted = sum(int(r[9]) for r in result if r[0] is None)  # the count row
                    found = [r for r in result if r[0] is not None]
        except (psycopg.Error, *_CONVERSION_ERRORS) as exc:
            if isinstance(exc, psycopg.Error) and is_transient(exc):
                raise
            if len(rows) == 1:
                bad.append((rows[0], _first_line(exc)))
                return 0
            mid = len(rows) // 2
            return self._bisect(conn, rows[:mid], bad, conflicts) + self._bisect(conn, rows[mid:], bad, conflicts)
        conflicts.extend(_conflict(d, t, ts, (v0, x0, q0), (v1, x1, q1), "already stored")
                         for d, t, ts, v0, x0, q0, v1, x1, q1, _ in found)
        return inserted


def _conflict(device: str, tag: str, ts: Any, kept: tuple[Any, ...], other: tuple[Any, ...],
              where: str) -> tuple[str, bytes]:
    """Quarantine entry for a conflicting duplicate: the reason and both versions as JSON."""
    reason = (f"conflicting duplicate {device}/{tag} at {ts}: value {kept[0]!r} {where} is kept, "
              f"{other[0]!r} is not (same device, tag and time stamp, different value)")
    payload = {"device_id": device, "tag": tag, "ts": ts,
               "kept": dict(zip(("value", "value_text", "quality"), kept, strict=True)),
               "refused": dict(zip(("value", "value_text", "quality"), other, strict=True))}
    return reason, json.dumps(payload, default=str).encode()
