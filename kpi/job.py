"""The KPI job: read windows from the database, run the kernels, write kpi_values (incremental and backfill).

Workers can run side by side: each claims a machine (and each roll-up asset) with
pg_try_advisory_lock(hashtext(asset_id)) and skips assets another worker holds.
"""

from __future__ import annotations

import logging
import threading
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from core.plant import Asset, PlantConfig
from kpi.buckets import BucketSet, bucket_sets, calendar, day_buckets, from_us, to_us, window_start
from kpi.compute import machine_elements
from kpi.fastread import networked, read_chunk
from kpi.rollups import rollup
from kpi.rows import bucket_rows, provenance
from kpi.sources import earliest_late_sample, first_sample, read_machine, read_networked
from kpi.store import backfill_watermark, read_watermark, try_lock, unlock, write_rows, write_watermark

log = logging.getLogger(__name__)
WRITE_BATCH_ROWS = 20_000  # machine rows stored per transaction in a backfill (chunks are buffered up to this)
Progress = Callable[[int, int], None]


@dataclass
class Report:
    """What one run did: per-asset windows, rows and revisions written, assets another worker held."""

    started: datetime
    until: datetime
    rows_written: int = 0
    revisions: int = 0
    windows: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)
    skipped_locked: list[str] = field(default_factory=list)
    chunks: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase: read, kernels, rows, write, rollup
    failures: list[str] = field(default_factory=list)  # one line each: asset, buckets, what went wrong
    widened: tuple[datetime, datetime] | None = None  # backfill: the range widened to whole buckets (if it was)
    flags: dict[str, int] = field(default_factory=dict)  # data-quality flag -> buckets written with it


class _Clock:
    """Adds perf_counter time to timings[phase] (a few calls per chunk: negligible)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings, self.t = timings, _time.perf_counter()

    def lap(self, phase: str) -> None:
        if self.timings is not None:
            now = _time.perf_counter()
            self.timings[phase] = self.timings.get(phase, 0.0) + now - self.t
            self.t = now


def _buckets_starting_in(cfg: PlantConfig, start: datetime, end: datetime) -> tuple[list[BucketSet], datetime]:
    """Bucket sets whose buckets start in [start, end), and the latest end among them (the data window)."""
    out: list[BucketSet] = []
    s_us, e_us = to_us(start), to_us(end)
    data_end = end
    for b in bucket_sets(cfg, start, end):
        keep = (b.starts >= s_us) & (b.starts < e_us)
        sub = BucketSet(b.kind, b.starts[keep], b.ends[keep], b.shift_name)
        if len(sub):
            out.append(sub)
            data_end = max(data_end, from_us(int(sub.ends.max())))
    return out, data_end


def compute_machine(conn: psycopg.Connection[Any], cfg: PlantConfig, machine: Asset, start: datetime,
                    end: datetime, until: datetime, timings: dict[str, float] | None = None,
                    flags: dict[str, int] | None = None, plain: bool = False) -> tuple[int, int]:
    """Compute and store every bucket of `machine` that starts in [start, end), with data up to `until`.

    Each bucket is computed from all its data (up to `until`), however little of it [start, end) covers.
    `flags` (if given) counts the buckets written with each data-quality flag. `plain` reads one query per
    signal and bucket set (kpi.sources) instead of one per chunk (kpi.fastread): same rows, to the last bit.
    """
    rows = machine_rows(conn, cfg, machine, start, end, until, timings, plain)
    clock = _Clock(timings)
    out = write_rows(conn, rows)
    clock.lap("write")
    _count_flags(flags, rows)
    return out


def _count_flags(flags: dict[str, int] | None, rows: list[tuple[Any, ...]]) -> None:
    """Add the buckets written with each data-quality flag to `flags`."""
    if flags is not None:
        for key in {(r[0], r[1], r[15], f) for r in rows for f in (r[17] or ())}:
            flags[key[3]] = flags.get(key[3], 0) + 1


def machine_rows(conn: psycopg.Connection[Any], cfg: PlantConfig, machine: Asset, start: datetime, end: datetime,
                 until: datetime, timings: dict[str, float] | None = None,
                 plain: bool = False) -> list[tuple[Any, ...]]:
    """compute_machine's rows (store.COLUMNS order), not written."""
    clock = _Clock(timings)
    sets, data_end = _buckets_starting_in(cfg, start, end)
    data_end = min(data_end, until)
    if not sets or data_end <= start:
        return []
    cal = calendar(cfg, start, data_end)
    until_us, prov = to_us(until), provenance(cfg, machine)
    clock.lap("glue")
    if plain:
        inp, good = read_machine(conn, machine, start, data_end, cfg), None
    else:
        inp, good = read_chunk(conn, machine, start, data_end, cfg)
    clock.lap("read")
    rows: list[tuple[Any, ...]] = []
    for b in sets:
        if machine.device is not None:
            inp.networked = read_networked(conn, machine.device, b) if good is None else \
                networked(conn, machine.device, b, good)
            clock.lap("read")
        es = machine_elements(inp, b, to_us(data_end), cal)
        clock.lap("kernels")
        rows += bucket_rows(cfg, machine.id, True, b, es.values, es.why, es.input_rows, es.coverage, until_us, prov,
                            es.events, es.why_at)
        clock.lap("glue")
    return rows


def _day_chunks(cfg: PlantConfig, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """[start, end) cut at local midnights."""
    days = day_buckets(ZoneInfo(cfg.plant.timezone), start, end)
    cuts = sorted({start, end, *(from_us(int(s)) for s in days.starts if start < from_us(int(s)) < end)})
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def _machine_window(conn: psycopg.Connection[Any], cfg: PlantConfig, m: Asset, until: datetime) -> datetime:
    """Where the incremental run starts for a machine: the open buckets, or earlier when late samples arrived."""
    computed_until, last_run = read_watermark(conn, m.id)
    if computed_until is None:
        first = first_sample(conn, m.device) if m.device else None
        return window_start(cfg, min(first, until) if first else until)
    start = window_start(cfg, min(computed_until, until))
    if last_run is not None and m.device:
        late = earliest_late_sample(conn, m.device, last_run, start)
        if late is not None:
            log.info("event=kpi_late_samples asset=%s earliest=%s", m.id, late.isoformat())
            start = window_start(cfg, late)
    return start


def _local(cfg: PlantConfig, t: datetime) -> str:
    return t.astimezone(ZoneInfo(cfg.plant.timezone)).strftime("%Y-%m-%d %H:%M %Z")


def _failed(cfg: PlantConfig, report: Report, asset: str, start: datetime, end: datetime, exc: Exception) -> None:
    """Record and log one failed chunk: one line (asset, buckets, what); the traceback only at debug level."""
    what = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, psycopg.errors.UndefinedColumn | psycopg.errors.UndefinedTable):
        what += " (the schema is older than this version: run `shopfloor db migrate`)"
    line = f"{asset}: buckets starting {_local(cfg, start)} to {_local(cfg, end)}: {what}"
    report.failures.append(line)
    log.error("event=kpi_failed asset=%s from=%s to=%s error=%r hint='nothing was stored for these buckets; "
              "the other assets went on (run with --verbose for the traceback)'", asset, start.isoformat(),
              end.isoformat(), what, exc_info=log.isEnabledFor(logging.DEBUG))


def _run_machines(conn: psycopg.Connection[Any], cfg: PlantConfig, windows: dict[str, tuple[datetime, datetime]],
                  until: datetime, report: Report, progress: Progress | None, mark: bool,
                  plain: bool = False) -> set[str]:
    """Compute every machine's window chunk by chunk; a failing chunk is logged and skipped. Returns the failed
    machines (their watermark stays where it was)."""
    machines = {m.id: m for m in cfg.machines()}
    chunks = [(mid, s, e) for mid, (ws, we) in windows.items() for s, e in _day_chunks(cfg, ws, we)]
    failed: set[str] = set()
    pending: list[tuple[str, datetime, datetime, list[tuple[Any, ...]]]] = []
    for i, (mid, s, e) in enumerate(chunks):
        try:
            rows = machine_rows(conn, cfg, machines[mid], s, e, until, report.timings, plain)
            pending.append((mid, s, e, rows))
        except psycopg.OperationalError:
            raise  # the database is gone: not one asset's problem
        except Exception as exc:  # noqa: BLE001 - one asset's failure must not stop the others
            failed.add(mid)
            _failed(cfg, report, mid, s, e, exc)
        report.chunks += 1
        if sum(len(p[3]) for p in pending) >= WRITE_BATCH_ROWS:
            _write(conn, cfg, pending, report, failed)
        if progress is not None:
            progress(i + 1, len(chunks))
    _write(conn, cfg, pending, report, failed)
    if mark:
        for mid in windows:
            if mid not in failed:
                write_watermark(conn, mid, until, report.started)
    return failed


def _write(conn: psycopg.Connection[Any], cfg: PlantConfig, pending: list[tuple[str, datetime, datetime,
           list[tuple[Any, ...]]]], report: Report, failed: set[str]) -> None:
    """Store the pending chunks' rows in one transaction; if that fails, chunk by chunk (a failing chunk is
    logged like a failed computation, the others are stored)."""
    clock = _Clock(report.timings)
    parts = [pending] if len(pending) > 1 else []
    parts += [[p] for p in pending]
    for part in parts:
        rows = [r for p in part for r in p[3]]
        try:
            w, r = write_rows(conn, rows)
        except psycopg.OperationalError:
            raise
        except Exception as exc:  # noqa: BLE001 - isolate the failing chunk below
            if len(part) == 1:
                failed.add(part[0][0])
                _failed(cfg, report, part[0][0], part[0][1], part[0][2], exc)
            continue
        report.rows_written, report.revisions = report.rows_written + w, report.revisions + r
        _count_flags(report.flags, rows)
        if len(part) > 1:
            break  # all stored at once
    pending.clear()
    clock.lap("write")


def _claim(conn: psycopg.Connection[Any], cfg: PlantConfig, report: Report) -> list[Asset]:
    claimed = []
    for m in cfg.machines():
        if try_lock(conn, m.id):
            claimed.append(m)
        else:
            report.skipped_locked.append(m.id)
    return claimed


def _finish(conn: psycopg.Connection[Any], cfg: PlantConfig, report: Report, claimed: list[Asset],
            start: datetime | None, end: datetime) -> Report:
    try:
        if start is not None and start < end:
            clock = _Clock(report.timings)
            try:
                w, r, skipped = rollup(conn, cfg, start, end, report.until)
            except psycopg.OperationalError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported like a machine's failure
                _failed(cfg, report, "roll-ups", start, end, exc)
                w, r, skipped = 0, 0, []
            clock.lap("rollup")
            report.rows_written, report.revisions = report.rows_written + w, report.revisions + r
            report.skipped_locked += skipped
    finally:
        for m in claimed:
            unlock(conn, m.id)
    log.info("event=kpi_run_done rows=%d revisions=%d chunks=%d skipped=%d failed=%d", report.rows_written,
             report.revisions, report.chunks, len(report.skipped_locked), len(report.failures))
    return report


def run_once(database_url: str, cfg: PlantConfig, until: datetime | None = None) -> Report:
    """Incremental run: per machine from its watermark (re-opening the open buckets) up to `until` (now)."""
    started = datetime.now(UTC)
    until = (until or started).astimezone(UTC)
    report = Report(started=started, until=until)
    with psycopg.connect(database_url, autocommit=True) as conn:
        claimed = _claim(conn, cfg, report)
        try:
            for m in claimed:
                report.windows[m.id] = (_machine_window(conn, cfg, m, until), until)
            _run_machines(conn, cfg, report.windows, until, report, None, mark=True)
        except BaseException:
            for m in claimed:
                unlock(conn, m.id)
            raise
        start = min((s for s, _ in report.windows.values()), default=None)
        return _finish(conn, cfg, report, claimed, start, until)


def widened_range(cfg: PlantConfig, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """[start, end) widened to whole buckets: from the earliest start of a bucket holding `start` to the latest
    end of a bucket starting before `end`."""
    s = window_start(cfg, start)
    e = end
    for b in bucket_sets(cfg, s, end):
        keep = (b.starts >= to_us(s)) & (b.starts < to_us(end))
        if keep.any():
            e = max(e, from_us(int(b.ends[keep].max())))
    return s, e


def backfill(database_url: str, cfg: PlantConfig, start: datetime, end: datetime,
             progress: Progress | None = None, plain: bool = False, workers: int = 1) -> Report:
    """Recompute every bucket that starts in [start, end) (widened to whole buckets), chunked per day and machine.

    Every bucket it touches is computed from all of that bucket's data up to now (never from the part inside
    [start, end)), so a final bucket stays final. progress(done, total) is called after each chunk. A machine
    without a watermark gets one at the end of the range (capped at now), so that `run_once` goes on from there;
    an existing watermark only moves forward, and only when the range reaches it. `plain`: read one query per
    signal (the reference path the fast reader is checked against). `workers` > 1: that many processes share
    the machines (kpi.parallel); the roll-ups follow once all machines are done.
    """
    started = datetime.now(UTC)
    s, e = widened_range(cfg, start.astimezone(UTC), end.astimezone(UTC))
    report = Report(started=started, until=started)
    if (s, e) != (start, end):
        report.widened = (s, e)
    stop = max(min(end.astimezone(UTC), started), s)  # buckets that have not started yet have no KPIs
    machines = [m.id for m in cfg.machines()]
    if workers > 1 and len(machines) > 1 and not plain:
        return _backfill_parallel(database_url, cfg, report, machines, s, e, stop, min(workers, len(machines)),
                                  progress)
    with psycopg.connect(database_url, autocommit=True) as conn:
        claimed = _claim(conn, cfg, report)
        try:
            report.windows = {m.id: (s, stop) for m in claimed}
            failed = _run_machines(conn, cfg, report.windows, started, report, progress, mark=False, plain=plain)
            for m in claimed:
                if m.id not in failed and stop > s:
                    backfill_watermark(conn, m.id, s, min(e, started), started)
        except BaseException:
            for m in claimed:
                unlock(conn, m.id)
            raise
        return _finish(conn, cfg, report, claimed, s, stop)


def _backfill_parallel(database_url: str, cfg: PlantConfig, report: Report, machines: list[str], s: datetime,
                       e: datetime, stop: datetime, workers: int, progress: Progress | None) -> Report:
    """backfill() with worker processes (kpi.parallel), then watermarks and roll-ups here."""
    from kpi.parallel import run_workers

    wr = run_workers(database_url, cfg, machines, s, stop, report.started, workers, progress)
    report.rows_written, report.revisions, report.chunks = wr.rows_written, wr.revisions, wr.chunks
    report.timings, report.flags, report.failures = wr.timings, wr.flags, wr.failures
    report.skipped_locked = wr.skipped_locked
    report.windows = {m: (s, stop) for m in machines if m not in wr.skipped_locked}
    with psycopg.connect(database_url, autocommit=True) as conn:
        for mid in wr.done:
            if stop > s:
                backfill_watermark(conn, mid, s, min(e, report.started), report.started)
        return _finish(conn, cfg, report, [], s, stop)


def run_forever(database_url: str, cfg: PlantConfig, interval_s: float = 60,
                stop_event: threading.Event | None = None) -> None:
    """run_once every interval_s until stop_event is set; a database outage or a failed pass is logged and
    retried (a failing asset or bucket never stops the others: see run_once)."""
    stop = stop_event or threading.Event()
    while not stop.is_set():
        t0 = _time.monotonic()
        try:
            run_once(database_url, cfg)
        except psycopg.OperationalError as exc:
            log.warning("event=kpi_db_unavailable error=%r hint='retrying next interval'", str(exc).strip())
        except Exception as exc:  # noqa: BLE001 - the service keeps running; the next pass retries
            log.error("event=kpi_pass_failed error=%r hint='retrying next interval; --verbose for the traceback'",
                      str(exc).strip(), exc_info=log.isEnabledFor(logging.DEBUG))
        stop.wait(max(0.0, interval_s - (_time.monotonic() - t0)))


__all__ = ["Report", "backfill", "compute_machine", "run_forever", "run_once", "widened_range"]
