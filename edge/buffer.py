"""Disk-backed store-and-forward: SQLite in WAL mode with synchronous=FULL, so it survives `kill -9`.

Every `add()` is one chunk (one row) holding many samples. Chunks leave the buffer only when the collector
confirms the database write (`end(batch)`). The buffer is bounded: when it exceeds `max_bytes` the oldest
chunks that are not in flight are dropped (drop-oldest policy: fresh data is worth more to a running
plant than old data) and the number of dropped samples is counted in `dropped_samples`, which survives
restarts.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ShopfloorError
from core.record import Sample, StatusEvent

log = logging.getLogger(__name__)


@dataclass
class Pending:
    """Chunks handed out by begin() and not yet confirmed or returned.

    The rows stay as the JSON arrays they were stored as: the uplink joins them into a payload without
    decoding and re-encoding every sample (see record.encode_batch).
    """

    chunk_ids: list[int]
    n_samples: int = 0
    sample_parts: list[bytes] = field(default_factory=list)
    event_parts: list[bytes] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def samples(self) -> list[Sample]:
        """Decode the rows (single-node mode and tests; the MQTT uplink never needs to)."""
        return [Sample.from_row(r) for part in self.sample_parts for r in json.loads(part)]

    def events(self) -> list[StatusEvent]:
        return [StatusEvent.from_row(r) for part in self.event_parts for r in json.loads(part)]


class StoreAndForward:
    def __init__(self, path: str | Path, gateway_id: str, max_bytes: int = 512 * 1024 * 1024) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.gateway_id = gateway_id
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        cols = {r[1] for r in self._db.execute("PRAGMA table_info(chunk)")}
        if cols and "samples" not in cols:
            raise ShopfloorError(f"{self.path}: store-and-forward file from an older shopfloor version; stop the "
                                 "edge, let the old version drain it, or move it away")
        self._db.execute("CREATE TABLE IF NOT EXISTS chunk (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                         "n INTEGER NOT NULL, n_samples INTEGER NOT NULL, nbytes INTEGER NOT NULL, "
                         "samples BLOB NOT NULL, events BLOB NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        self.boot_epoch = self._meta("boot_epoch") + 1
        self._set_meta("boot_epoch", self.boot_epoch)
        self.dropped_samples = self._meta("dropped_samples")
        row = self._db.execute("SELECT COALESCE(SUM(nbytes), 0), COALESCE(SUM(n), 0) FROM chunk").fetchone()
        self._bytes, self._count = int(row[0]), int(row[1])
        self._seq = 0
        self._in_flight: set[int] = set()
        if self._count:
            log.info("buffer=%s recovered_samples=%d event=replay_after_restart", self.path, self._count)

    # ------------------------------------------------------------------ meta
    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                         (key, value))

    # ------------------------------------------------------------------ write side
    def add(self, samples: list[Sample], events: list[StatusEvent] | None = None) -> None:
        """Stamp samples with gateway id, boot epoch and sequence number, and store them durably."""
        events = events or []
        if not samples and not events:
            return
        with self._lock:
            for s in samples:
                self._seq += 1
                s.gateway_id = self.gateway_id
                s.boot_epoch = self.boot_epoch
                s.seq = self._seq
            for e in events:
                e.gateway_id = self.gateway_id
            sbody = json.dumps([s.to_row() for s in samples], separators=(",", ":")).encode()
            ebody = json.dumps([e.to_row() for e in events], separators=(",", ":")).encode()
            n = len(samples) + len(events)
            nbytes = len(sbody) + len(ebody)
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT INTO chunk(n, n_samples, nbytes, samples, events) VALUES (?, ?, ?, ?, ?)",
                             (n, len(samples), nbytes, sbody, ebody))
            self._bytes += nbytes
            self._count += n
            if self._bytes > self.max_bytes:
                self._drop_oldest()
            self._db.execute("COMMIT")

    def _drop_oldest(self) -> None:
        dropped = 0
        rows = self._db.execute("SELECT id, n, nbytes FROM chunk ORDER BY id LIMIT ?",
                                (len(self._in_flight) + 10000,)).fetchall()
        for cid, n, nbytes in rows:
            if self._bytes <= self.max_bytes * 0.9:
                break
            if cid in self._in_flight:
                continue
            self._db.execute("DELETE FROM chunk WHERE id=?", (cid,))
            self._bytes -= nbytes
            self._count -= n
            dropped += n
        if dropped:
            self.dropped_samples += dropped
            self._set_meta("dropped_samples", self.dropped_samples)
            log.warning("buffer=%s event=dropped_oldest dropped=%d dropped_total=%d max_mb=%.1f "
                        "hint='uplink or database has been down too long; raise edge.buffer_max_mb'",
                        self.path, dropped, self.dropped_samples, self.max_bytes / 1e6)

    # ------------------------------------------------------------------ read side
    def begin(self, max_samples: int) -> Pending | None:
        """Hand out the oldest chunks not in flight, up to about max_samples; None when there is nothing."""
        with self._lock:
            heads = self._db.execute("SELECT id, n FROM chunk ORDER BY id LIMIT ?",
                                     (max_samples + len(self._in_flight),)).fetchall()
            ids: list[int] = []
            total = 0
            for cid, n in heads:
                if cid in self._in_flight:
                    continue
                if ids and total + n > max_samples:
                    break
                ids.append(cid)
                total += n
            if not ids:
                return None
            pending = Pending(ids)
            for cid in ids:
                n_samples, sbody, ebody = self._db.execute("SELECT n_samples, samples, events FROM chunk WHERE id=?",
                                                           (cid,)).fetchone()
                pending.n_samples += int(n_samples)
                pending.sample_parts.append(bytes(sbody))
                pending.event_parts.append(bytes(ebody))
            self._in_flight.update(ids)
            return pending

    def end(self, pending: Pending) -> None:
        """The collector confirmed the write: delete the chunks for good."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for cid in pending.chunk_ids:
                row = self._db.execute("DELETE FROM chunk WHERE id=? RETURNING n, nbytes", (cid,)).fetchone()
                if row:
                    self._count -= int(row[0])
                    self._bytes -= int(row[1])
            self._db.execute("COMMIT")
            self._in_flight.difference_update(pending.chunk_ids)

    def give_back(self, pending: Pending) -> None:
        """Not confirmed (timeout, uplink lost): the chunks will be handed out again."""
        with self._lock:
            self._in_flight.difference_update(pending.chunk_ids)

    # ------------------------------------------------------------------ status
    @property
    def queued_samples(self) -> int:
        return self._count

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def close(self) -> None:
        with self._lock:
            self._db.close()
