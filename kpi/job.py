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
from kpi.rollups import rollup
from kpi.rows import bucket_rows, provenance
from kpi.sources import earliest_late_sample, first_sample, read_machine, read_networked
from kpi.store import read_watermark, try_lock, unlock, write_rows, write_watermark

log = logging.getLogger(__name__)
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
                    end: datetime, until: datetime, timings: dict[str, float] | None = None) -> tuple[int, int]:
    """Compute and store every bucket of `machine` that starts in [start, end), with data up to `until`."""
    clock = _Clock(timings)
    sets, data_end = _buckets_starting_in(cfg, start, end)
    data_end = min(data_end, until)
    if not sets or data_end <= start:
        return 0, 0
    cal = calendar(cfg, start, data_end)
    until_us, prov = to_us(until), provenance(cfg, machine)
    clock.lap("glue")
    inp = read_machine(conn, machine, start, data_end, cfg)
    clock.lap("read")
    rows: list[tuple[Any, ...]] = []
    for b in sets:
        if machine.device is not None:
            inp.networked = read_networked(conn, machine.device, b)
            clock.lap("read")
        es = machine_elements(inp, b, to_us(data_end), cal)
        clock.lap("kernels")
        rows += bucket_rows(cfg, machine.id, True, b, es.values, es.why, es.input_rows, es.coverage, until_us, prov,
                            es.events, es.why_at)
        clock.lap("glue")
    out = write_rows(conn, rows)
    clock.lap("write")
    return out


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


def _run_machines(conn: psycopg.Connection[Any], cfg: PlantConfig, windows: dict[str, tuple[datetime, datetime]],
                  until: datetime, report: Report, progress: Progress | None, mark: bool) -> None:
    machines = {m.id: m for m in cfg.machines()}
    chunks = [(mid, s, e) for mid, (ws, we) in windows.items() for s, e in _day_chunks(cfg, ws, we)]
    for i, (mid, s, e) in enumerate(chunks):
        w, r = compute_machine(conn, cfg, machines[mid], s, e, until, report.timings)
        report.rows_written, report.revisions, report.chunks = report.rows_written + w, report.revisions + r, \
            report.chunks + 1
        if progress is not None:
            progress(i + 1, len(chunks))
    if mark:
        for mid in windows:
            write_watermark(conn, mid, until, report.started)


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
            w, r, skipped = rollup(conn, cfg, start, end, report.until)
            clock.lap("rollup")
            report.rows_written, report.revisions = report.rows_written + w, report.revisions + r
            report.skipped_locked += skipped
    finally:
        for m in claimed:
            unlock(conn, m.id)
    log.info("event=kpi_run_done rows=%d revisions=%d chunks=%d skipped=%d", report.rows_written,
             report.revisions, report.chunks, len(report.skipped_locked))
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


def backfill(database_url: str, cfg: PlantConfig, start: datetime, end: datetime,
             progress: Progress | None = None) -> Report:
    """Recompute every bucket that starts in [start, end) (widened to whole buckets), chunked per day and machine.

    progress(done, total) is called after each chunk (for a progress bar). Watermarks are not moved.
    """
    started = datetime.now(UTC)
    until = min(end, started).astimezone(UTC)
    s = window_start(cfg, start.astimezone(UTC))
    report = Report(started=started, until=max(until, s))
    with psycopg.connect(database_url, autocommit=True) as conn:
        claimed = _claim(conn, cfg, report)
        try:
            # buckets that have not started yet are not written: the future has no KPIs, not "zero" ones
            windows = {m.id: (s, max(until, s)) for m in claimed}
            report.windows = windows
            _run_machines(conn, cfg, windows, max(until, s), report, progress, mark=False)
        except BaseException:
            for m in claimed:
                unlock(conn, m.id)
            raise
        return _finish(conn, cfg, report, claimed, s, max(until, s))


def run_forever(database_url: str, cfg: PlantConfig, interval_s: float = 60,
                stop_event: threading.Event | None = None) -> None:
    """run_once every interval_s until stop_event is set; a database outage is logged and retried."""
    stop = stop_event or threading.Event()
    while not stop.is_set():
        t0 = _time.monotonic()
        try:
            run_once(database_url, cfg)
        except psycopg.OperationalError as exc:
            log.warning("event=kpi_db_unavailable error=%r hint='retrying next interval'", str(exc).strip())
        stop.wait(max(0.0, interval_s - (_time.monotonic() - t0)))


__all__ = ["Report", "backfill", "compute_machine", "run_forever", "run_once"]
