"""Parallel backfill: worker processes split one range by machine through a work table (SKIP LOCKED).

The coordinator writes one `kpi_work` row per machine, starts the workers and computes the roll-ups once
every machine is done. A worker claims the next free machine with SELECT ... FOR UPDATE SKIP LOCKED and keeps
the row locked while it computes that machine, so no machine (and no bucket) is computed twice, and a worker
that dies releases its row for another. Each machine is also claimed with the advisory lock `kpi run` uses.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from core.plant import PlantConfig

log = logging.getLogger(__name__)


@dataclass
class WorkerReport:
    """What one worker did (added into the coordinator's Report)."""

    rows_written: int = 0
    revisions: int = 0
    chunks: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    flags: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    skipped_locked: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)  # machines computed without a failure


_CLAIM = """SELECT asset_id FROM kpi_work WHERE job = %s AND state = 'todo'
            ORDER BY asset_id LIMIT 1 FOR UPDATE SKIP LOCKED"""


def work(database_url: str, cfg: PlantConfig, job: str, worker: int, start: datetime, stop: datetime,
         started: datetime, log_level: int | None = None) -> WorkerReport:
    """One worker: claim machines of `job` until none is left, computing each over [start, stop)."""
    from kpi.job import Report, _run_machines
    from kpi.store import try_lock, unlock

    if log_level is not None:  # a spawned process: log like the coordinator (the CLI prints failures itself)
        logging.basicConfig(level=logging.getLogger().getEffectiveLevel())
        logging.getLogger("kpi.job").setLevel(log_level)

    out = WorkerReport()
    with psycopg.connect(database_url) as queue, psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            row = queue.execute(_CLAIM, (job,)).fetchone()
            if row is None:
                queue.rollback()
                return out
            mid = str(row[0])
            if not try_lock(conn, mid):  # a `kpi run` holds it
                out.skipped_locked.append(mid)
                state = "skipped"
            else:
                try:
                    rep = Report(started=started, until=started, timings=out.timings, flags=out.flags)
                    failed = _run_machines(conn, cfg, {mid: (start, stop)}, started, rep, None, mark=False)
                finally:
                    unlock(conn, mid)
                out.rows_written += rep.rows_written
                out.revisions += rep.revisions
                out.chunks += rep.chunks
                out.failures += rep.failures
                state = "failed" if failed else "done"
                if not failed:
                    out.done.append(mid)
            queue.execute("UPDATE kpi_work SET state = %s, worker = %s, finished_at = now() "
                          "WHERE job = %s AND asset_id = %s", (state, worker, job, mid))
            queue.commit()


def run_workers(database_url: str, cfg: PlantConfig, machines: list[str], start: datetime, stop: datetime,
                started: datetime, workers: int, progress: Any = None) -> WorkerReport:
    """Compute `machines` over [start, stop) with `workers` processes; returns the sum of their reports."""
    job = str(uuid.uuid4())
    with psycopg.connect(database_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO kpi_work (job, asset_id) VALUES (%s, %s)", [(job, m) for m in machines])
    # fork (cheap: the modules are loaded) while this process holds no connection and runs no other thread
    ctx = multiprocessing.get_context("fork" if threading.active_count() == 1 and
                                      "fork" in multiprocessing.get_all_start_methods() else "spawn")
    level = logging.getLogger("kpi.job").getEffectiveLevel()
    try:
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = [pool.submit(work, database_url, cfg, job, i, start, stop, started, level)
                       for i in range(workers)]
            with psycopg.connect(database_url, autocommit=True) as conn:
                while not all(f.done() for f in futures):
                    if progress is not None:
                        row = conn.execute("SELECT count(*) FILTER (WHERE state <> 'todo'), count(*) FROM kpi_work "
                                           "WHERE job = %s", (job,)).fetchone()
                        if row:
                            progress(int(row[0]), int(row[1]))
                    time.sleep(0.2)
        parts = []
        for f in futures:
            try:
                parts.append(f.result())
            except Exception as exc:  # noqa: BLE001 - a worker process died: its machine goes back to the queue
                log.error("event=kpi_worker_failed error=%r hint='its unfinished machine is computed here'",
                          str(exc) or type(exc).__name__)
        if any(isinstance(f.exception(), Exception) for f in futures):
            parts.append(work(database_url, cfg, job, workers, start, stop, started))
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DELETE FROM kpi_work WHERE job = %s", (job,))
    total = WorkerReport()
    for p in parts:
        total.rows_written += p.rows_written
        total.revisions += p.revisions
        total.chunks += p.chunks
        total.failures += p.failures
        total.skipped_locked += p.skipped_locked
        total.done += p.done
        for k, v in p.timings.items():
            total.timings[k] = total.timings.get(k, 0.0) + v
        for k, n in p.flags.items():
            total.flags[k] = total.flags.get(k, 0) + n
    if progress is not None:
        progress(len(machines), len(machines))
    return total
