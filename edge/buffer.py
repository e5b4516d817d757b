"""Disk-backed store-and-forward: SQLite in WAL mode with synchronous=FULL, so it survives `kill -9`.

Every `add()` stores one or more chunks (rows), each holding many samples and at most `chunk_max_bytes` of
encoded rows, so any batch of chunks can be cut below the broker's message limit. Chunks leave the buffer
only when the collector confirms the database write (`end(batch)`).

Footprint: `max_bytes` bounds the whole buffer on disk: the database pages in use, the write-ahead log (kept
to `wal_bytes` by checkpointing and `journal_size_limit`) and a small reserve file (`<path>.reserve`).
When the pages in use exceed their share, the oldest chunks not in flight are dropped (drop-oldest: fresh
data is worth more to a running plant than old data); the count survives restarts in `dropped_samples` and
every drop becomes a gap record per device and time range, forwarded to the collector like any sample.

Full disk: a failed write leaves the buffer as it was and raises sqlite3.Error (the edge keeps the samples
in a bounded memory queue and retries). The reserve file is given up when a write that frees space (an
acknowledged delete, the boot record) hits a full disk, so the buffer always drains, and it is taken back
once there is room again.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from core.errors import ShopfloorError
from core.record import Gap, Sample, StatusEvent
from edge.chunks import Pending, device_spans, dumps_rows

__all__ = ["Pending", "StoreAndForward", "device_spans", "is_disk_full"]

log = logging.getLogger(__name__)

RESERVE_SUFFIX = ".reserve"


def is_disk_full(exc: BaseException) -> bool:
    """True for SQLite's 'database or disk is full' (and the I/O errors a full filesystem gives)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_FULL", "SQLITE_IOERR")) or "disk is full" in str(exc)


class StoreAndForward:
    def __init__(self, path: str | Path, gateway_id: str, max_bytes: int = 512 * 1024 * 1024,
                 chunk_max_bytes: int = 1024 * 1024) -> None:
        self.path = str(path)
        self.gateway_id = gateway_id
        self.max_bytes = max_bytes
        self.chunk_max_bytes = chunk_max_bytes
        self.wal_bytes = min(4 * 1024 * 1024, max(max_bytes // 8, 64 * 1024))
        self.reserve_bytes = min(1024 * 1024, max(max_bytes // 16, 128 * 1024))
        # one write transaction may overshoot both the database file and the log before a drop or checkpoint
        headroom = min(chunk_max_bytes, max_bytes // 8)
        self.data_bytes = max(max_bytes - self.wal_bytes - self.reserve_bytes - 2 * headroom, 64 * 1024)
        self._lock = threading.Lock()
        self._reserve_path = self.path + RESERVE_SUFFIX
        self._freed: set[int] = set()  # confirmed chunks a full disk kept us from deleting yet
        self._in_flight: set[int] = set()
        self._seq = 0
        self.full = False  # the last write hit a full disk
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._critical(self._open)
        except (sqlite3.Error, OSError) as exc:
            raise ShopfloorError(f"edge.buffer_path {self.path}: cannot open the store-and-forward file ({exc}); "
                                 "check the path, its permissions and free space, or move a foreign file away") from exc
        self._take_reserve()
        if self._count:
            log.info("buffer=%s recovered_samples=%d event=replay_after_restart", self.path, self._count)

    def _open(self) -> None:
        db = self._db
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        page = int(db.execute("PRAGMA page_size").fetchone()[0])
        db.execute(f"PRAGMA wal_autocheckpoint={max(self.wal_bytes // page // 2, 16)}")
        db.execute(f"PRAGMA journal_size_limit={self.wal_bytes}")
        cols = {r[1] for r in db.execute("PRAGMA table_info(chunk)")}
        if cols and "samples" not in cols:
            raise ShopfloorError(f"{self.path}: store-and-forward file from an older shopfloor version; stop the "
                                 "edge, let the old version drain it, or move it away")
        db.execute("CREATE TABLE IF NOT EXISTS chunk (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                   "n INTEGER NOT NULL, n_samples INTEGER NOT NULL, nbytes INTEGER NOT NULL, "
                   "samples BLOB NOT NULL, events BLOB NOT NULL, gaps BLOB NOT NULL DEFAULT x'5b5d', "
                   "spans TEXT NOT NULL DEFAULT '{}')")
        if cols and "gaps" not in cols:  # a file from before gap records: same rows, two more columns
            db.execute("ALTER TABLE chunk ADD COLUMN gaps BLOB NOT NULL DEFAULT x'5b5d'")
            db.execute("ALTER TABLE chunk ADD COLUMN spans TEXT NOT NULL DEFAULT '{}'")
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        self.boot_epoch = self._meta("boot_epoch") + 1
        try:
            self._set_meta("boot_epoch", self.boot_epoch)
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc) or os.path.exists(self._reserve_path) and os.path.getsize(self._reserve_path):
                raise  # with a reserve left, _critical frees some and tries again
            log.error("buffer=%s event=boot_epoch_unsaved boot_epoch=%d hint='the disk is full; free space on it'",
                      self.path, self.boot_epoch)
        self.dropped_samples = self._meta("dropped_samples")
        row = db.execute("SELECT COALESCE(SUM(nbytes), 0), COALESCE(SUM(n), 0) FROM chunk").fetchone()
        self._bytes, self._count = int(row[0]), int(row[1])

    # ------------------------------------------------------------------ disk space
    def _take_reserve(self) -> None:
        """Hold `reserve_bytes` of disk in a file, so that a full disk can still be drained (as much as fits)."""
        try:
            have = os.path.getsize(self._reserve_path)
        except OSError:
            have = 0
        if have >= self.reserve_bytes:
            return
        try:
            with open(self._reserve_path, "ab", buffering=0) as f:
                for _ in range((self.reserve_bytes - have) // 4096):
                    f.write(b"\0" * 4096)
                os.fsync(f.fileno())
        except OSError:
            pass  # what was written is held; the rest is taken when there is room

    def _critical(self, write: Any) -> Any:
        """Run a write that must not fail for lack of space: on a full disk, give up half the reserve and retry."""
        while True:
            try:
                return write()
            except sqlite3.OperationalError as exc:
                try:
                    left = os.path.getsize(self._reserve_path)
                except OSError:
                    left = 0
                if not is_disk_full(exc) or not left:
                    raise
                self._rollback()
                os.truncate(self._reserve_path, left // 2 if left > 16384 else 0)
                log.warning("buffer=%s event=reserve_released reserve_left=%d hint='the disk is full; free space "
                            "on it'", self.path, left // 2 if left > 16384 else 0)

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def footprint(self) -> int:
        """Bytes the buffer holds on disk: the database file, its write-ahead log and the reserve."""
        size = 0
        for part in (self.path, self.path + "-wal", self._reserve_path):
            try:
                size += os.path.getsize(part)
            except OSError:
                pass
        return size

    # ------------------------------------------------------------------ meta
    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                         (key, value))

    # ------------------------------------------------------------------ write side
    def stamp(self, samples: list[Sample], events: list[StatusEvent]) -> None:
        """Stamp gateway id, boot epoch and sequence number once, before the first attempt to store."""
        for s in samples:
            if not s.seq:
                self._seq += 1
                s.gateway_id, s.boot_epoch, s.seq = self.gateway_id, self.boot_epoch, self._seq
        for e in events:
            e.gateway_id = self.gateway_id

    def split(self, samples: list[Sample]) -> tuple[list[list[Any]], list[list[Sample]], list[Sample]]:
        """Encoded rows cut into chunks of at most chunk_max_bytes; samples too large for any batch apart."""
        rows: list[list[Any]] = [[]]
        groups: list[list[Sample]] = [[]]
        oversize: list[Sample] = []
        size = 2
        for s in samples:
            row = s.to_row()
            n = len(dumps_rows(row)) + 1
            if n > self.chunk_max_bytes - 2:
                oversize.append(s)
                continue
            if size + n > self.chunk_max_bytes and rows[-1]:
                rows.append([])
                groups.append([])
                size = 2
            rows[-1].append(row)
            groups[-1].append(s)
            size += n
        return rows, groups, oversize

    def add(self, samples: list[Sample], events: list[StatusEvent] | None = None,
            gaps: list[Gap] | None = None) -> list[Sample]:
        """Stamp and store samples durably; return the samples too large for any batch (not stored).

        Raises sqlite3.Error with nothing stored when the disk refuses the write.
        """
        events, gaps = events or [], gaps or []
        if not samples and not events and not gaps:
            return []
        with self._lock:
            self.stamp(samples, events)
            for g in gaps:
                g.gateway_id = self.gateway_id
            rows, groups, oversize = self.split(samples)
            chunks = [(dumps_rows(r), dumps_rows([e.to_row() for e in events]) if i == 0 else b"[]",
                       dumps_rows([g.to_row() for g in gaps]) if i == 0 else b"[]", device_spans(grp))
                      for i, (r, grp) in enumerate(zip(rows, groups, strict=True))]
            try:
                self._db.execute("BEGIN IMMEDIATE")
                added_bytes = added = 0
                for i, (sbody, ebody, gbody, spans) in enumerate(chunks):
                    n = len(groups[i]) + (len(events) + len(gaps) if i == 0 else 0)
                    if n == 0:
                        continue
                    nbytes = len(sbody) + len(ebody) + len(gbody)
                    self._db.execute("INSERT INTO chunk(n, n_samples, nbytes, samples, events, gaps, spans) "
                                     "VALUES (?, ?, ?, ?, ?, ?, ?)",
                                     (n, len(groups[i]), nbytes, sbody, ebody, gbody, json.dumps(spans)))
                    added_bytes += nbytes
                    added += n
                self._bytes += added_bytes
                self._count += added
                if self._pages_bytes() > self.data_bytes:
                    self._drop_oldest()
                self._db.execute("COMMIT")
            except sqlite3.Error:
                self._rollback()
                self._recount()
                self.full = True
                raise
            if self.full:
                self.full = False
                self._take_reserve()
            self._retry_freed()
            return oversize

    def count_dropped(self, n: int) -> None:
        """Samples dropped before they reached the buffer (memory queue, oversize): add to the persisted count."""
        with self._lock:
            self.dropped_samples += n
            try:
                self._set_meta("dropped_samples", self.dropped_samples)
            except sqlite3.Error:
                self._rollback()  # written with the next successful drop

    def _pages_bytes(self) -> int:
        row = self._db.execute("SELECT (SELECT page_count FROM pragma_page_count()) - "
                               "(SELECT freelist_count FROM pragma_freelist_count()), "
                               "(SELECT page_size FROM pragma_page_size())").fetchone()
        return int(row[0]) * int(row[1])

    def _recount(self) -> None:
        row = self._db.execute("SELECT COALESCE(SUM(nbytes), 0), COALESCE(SUM(n), 0) FROM chunk").fetchone()
        self._bytes, self._count = int(row[0]), int(row[1])

    def _drop_oldest(self) -> None:
        """Inside add()'s transaction: delete the oldest chunks until the pages in use are back under 90 %."""
        excess = self._pages_bytes() - int(self.data_bytes * 0.9)
        dropped = freed = 0
        spans: dict[str, list[int]] = {}
        kept_events: list[Any] = []  # a dropped chunk's status events and gap records move to the new chunk
        kept_gaps: list[Any] = []
        rows = self._db.execute("SELECT id, n, n_samples, nbytes, spans, events, gaps FROM chunk WHERE n_samples > 0 "
                                "ORDER BY id LIMIT ?", (len(self._in_flight) + 10000,)).fetchall()
        for cid, n, n_samples, nbytes, chunk_spans, events, old_gaps in rows:
            if freed >= excess:
                break
            if cid in self._in_flight or cid in self._freed:
                continue
            self._db.execute("DELETE FROM chunk WHERE id=?", (cid,))
            freed += nbytes
            self._bytes -= nbytes
            self._count -= n
            dropped += n_samples
            kept_events += json.loads(events)
            kept_gaps += json.loads(old_gaps)
            for dev, (lo, hi, k) in json.loads(chunk_spans).items():
                span = spans.setdefault(dev, [lo, hi, 0])
                span[0], span[1], span[2] = min(span[0], lo), max(span[1], hi), span[2] + k
        if not dropped:
            return
        self.dropped_samples += dropped
        self._set_meta("dropped_samples", self.dropped_samples)
        gaps = [Gap(dev, lo, hi, k, "buffer_full", self.gateway_id) for dev, (lo, hi, k) in spans.items()]
        body, ebody = dumps_rows([g.to_row() for g in gaps] + kept_gaps), dumps_rows(kept_events)
        n = len(gaps) + len(kept_gaps) + len(kept_events)
        self._db.execute("INSERT INTO chunk(n, n_samples, nbytes, samples, events, gaps) VALUES (?, 0, ?, x'5b5d', ?, ?)",
                         (n, len(body) + len(ebody), ebody, body))
        self._bytes += len(body) + len(ebody)
        self._count += n
        log.warning("buffer=%s event=dropped_oldest dropped=%d dropped_total=%d devices=%d max_mb=%.1f "
                    "hint='uplink or database has been down too long; raise edge.buffer_max_mb'",
                    self.path, dropped, self.dropped_samples, len(gaps), self.max_bytes / 1e6)

    # ------------------------------------------------------------------ read side
    def begin(self, max_samples: int, max_bytes: int | None = None) -> Pending | None:
        """Hand out the oldest chunks not in flight, up to about max_samples and at most max_bytes of rows
        (a single chunk is never larger than chunk_max_bytes); None when there is nothing."""
        max_bytes = max_bytes or self.chunk_max_bytes
        with self._lock:
            skip = self._in_flight | self._freed
            heads = self._db.execute("SELECT id, n, nbytes FROM chunk ORDER BY id LIMIT ?",
                                     (max_samples + len(skip),)).fetchall()
            ids: list[int] = []
            total = size = 0
            for cid, n, nbytes in heads:
                if cid in skip:
                    continue
                if ids and (total + n > max_samples or size + nbytes > max_bytes):
                    break
                ids.append(cid)
                total += n
                size += nbytes
            if not ids:
                return None
            pending = Pending(ids, nbytes=size)
            for cid in ids:
                n_samples, sbody, ebody, gbody = self._db.execute(
                    "SELECT n_samples, samples, events, gaps FROM chunk WHERE id=?", (cid,)).fetchone()
                pending.n_samples += int(n_samples)
                pending.sample_parts.append(bytes(sbody))
                pending.event_parts.append(bytes(ebody))
                pending.gap_parts.append(bytes(gbody))
            self._in_flight.update(ids)
            return pending

    def end(self, pending: Pending) -> None:
        """The collector confirmed the write: delete the chunks for good (later, if the disk is full now)."""
        with self._lock:
            self._in_flight.difference_update(pending.chunk_ids)
            self._freed.update(pending.chunk_ids)
            self._retry_freed()

    def _retry_freed(self) -> None:
        if not self._freed:
            return
        ids = sorted(self._freed)

        def delete() -> None:
            self._db.execute("BEGIN IMMEDIATE")
            gone = [self._db.execute("DELETE FROM chunk WHERE id=? RETURNING n, nbytes", (cid,)).fetchone()
                    for cid in ids]
            self._db.execute("COMMIT")
            for row in gone:
                if row:
                    self._count -= int(row[0])
                    self._bytes -= int(row[1])

        try:
            self._critical(delete)
        except sqlite3.Error as exc:
            self._rollback()
            self._recount()
            if not self.full:
                log.error("buffer=%s event=delete_failed error=%r confirmed=%d hint='free disk space; confirmed "
                          "chunks are deleted as soon as it can be written'", self.path, str(exc), len(ids))
            self.full = True
            return
        self._freed.difference_update(ids)

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
