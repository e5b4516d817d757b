"""`shopfloor kpi run|backfill`."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer

from shopfloor.cli.common import (
    ConfigOpt,
    DbOpt,
    LogOpt,
    fail,
    load,
    need,
    parse_time,
    reaching_database,
    setup_logging,
)

kpi_app = typer.Typer(help="Compute KPIs into kpi_values.", no_args_is_help=True)
MAX_FAILURE_LINES = 5  # per asset; the rest are counted
AUTO_MIN_MACHINE_DAYS = 8  # --workers 0 starts worker processes only for a backfill at least this large
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging, with the traceback of a failure.")]

@kpi_app.command("run")
def kpi_run(config: ConfigOpt = None, database_url: DbOpt = None,
            interval_s: Annotated[float, typer.Option(help="Seconds between passes.")] = 60.0,
            once: Annotated[bool, typer.Option(help="One pass, then exit (status 1 if an asset failed).")] = False,
            log_level: LogOpt = "info", verbose: VerboseOpt = False) -> None:
    """Keep kpi_values current as data arrives (incremental by watermark).

    A failure in one asset or bucket is logged with the asset and its buckets, and the others go on."""
    setup_logging("debug" if verbose else log_level)
    from kpi.job import run_forever, run_once

    cfg = load(config)
    url = need(database_url, "--database-url", "SHOPFLOOR_DATABASE_URL")
    if once:
        _quiet_failures(verbose)
        with reaching_database(url):
            report = run_once(url, cfg)
        _finish("kpi run", report)
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run_forever(url, cfg, interval_s=interval_s, stop_event=stop)


@kpi_app.command("backfill", help=(
    "Recompute and store KPIs for a time range, with a progress bar.\n\n"
    "Every bucket (hour, shift, day) that starts in the range is recomputed from all of its data, so the range "
    "widens to whole buckets (the output says so). Machines without a watermark get one at the range's end, so "
    "that `kpi run` goes on from there. Exit status 1 if an asset or bucket failed (the others are stored)."))
def kpi_backfill(config: ConfigOpt = None, database_url: DbOpt = None,
                 since: Annotated[str, typer.Option("--from", help=_TIME_HELP % "Start")] = "",
                 until: Annotated[str, typer.Option("--to", help=_TIME_HELP % "End")] = "",
                 workers: Annotated[int, typer.Option(
                     "--workers", min=0, help="Processes sharing the machines (each claims the next free one "
                     "through the database). 0: one per CPU core when the range holds at least "
                     f"{AUTO_MIN_MACHINE_DAYS} machine-days, else 1.")] = 0,
                 log_level: LogOpt = "warning", verbose: VerboseOpt = False) -> None:
    """Recompute and store KPIs for a time range, with a progress bar."""
    setup_logging("debug" if verbose else log_level)
    from kpi.job import backfill

    cfg = load(config)
    url = need(database_url, "--database-url", "SHOPFLOOR_DATABASE_URL")
    start = plant_time(need(since, "--from", "-"), "--from", cfg.plant.timezone)
    end = plant_time(need(until, "--to", "-"), "--to", cfg.plant.timezone)
    if end <= start:
        raise fail("--to must be after --from", 2)
    _quiet_failures(verbose)
    if workers == 0:
        workers = auto_workers(len(cfg.machines()), (end - start).total_seconds() / 86400)
    with reaching_database(url), typer.progressbar(length=1, label="backfill", file=sys.stderr) as bar:
        report = backfill(url, cfg, start, end, progress=chunk_progress(bar), workers=workers)
    if report.widened is not None:
        a, b = (t.astimezone(ZoneInfo(cfg.plant.timezone)).isoformat() for t in report.widened)
        typer.echo(f"backfill: range widened to whole buckets: {a} to {b}")
    _finish("backfill", report)


def auto_workers(machines: int, days: float) -> int:
    """--workers 0: one process per core (at most one per machine) when the work pays for starting them."""
    if machines * days < AUTO_MIN_MACHINE_DAYS:
        return 1
    return max(1, min(os.cpu_count() or 1, machines))


_TIME_HELP = ("%s, ISO 8601 (2026-11-01T08:00). Without an offset it is read on the plant's clock "
              "(plant.timezone); add +08:00 or Z to give one.")


def plant_time(value: str, flag: str, timezone: str) -> datetime:
    """An ISO 8601 time; one without an offset is local time of the plant."""
    t = parse_time(value, flag)
    naive = datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is None
    return t.replace(tzinfo=ZoneInfo(timezone)) if naive else t


def _quiet_failures(verbose: bool) -> None:
    """One-shot commands print each failure as one line themselves: the job's own log line only with -v."""
    if not verbose:
        logging.getLogger("kpi.job").setLevel(logging.CRITICAL)


def _finish(what: str, report: Any) -> None:
    """Print the report line, data-quality flags and failures (one line each); status 1 if anything failed."""
    typer.echo(report_line(what, report))
    if report.flags:
        flags = ", ".join(f"{k} in {n} bucket{'s' if n != 1 else ''}" for k, n in sorted(report.flags.items()))
        typer.echo(f"{what}: data-quality flags: {flags} (kpi_values.quality_flags; causes in "
                   "provenance->'data_quality')")
    shown: dict[str, int] = {}
    for line in report.failures:
        asset = line.split(":", 1)[0]
        shown[asset] = shown.get(asset, 0) + 1
        if shown[asset] <= MAX_FAILURE_LINES:
            typer.echo(f"error: {what}: {line}", err=True)
    for asset, n in shown.items():
        if n > MAX_FAILURE_LINES:
            typer.echo(f"error: {what}: {asset}: {n - MAX_FAILURE_LINES} more failed day(s) not shown "
                       f"({n} in all; --verbose logs each)", err=True)
    if report.failures:
        raise typer.Exit(1)


def chunk_progress(bar: Any) -> Callable[[int, int], None]:
    """The backfill's progress(done, total) callback: moves `bar` to `done` of `total` chunks."""

    def progress(done: int, total: int) -> None:
        if bar.length != total:  # the chunk count is known once the machines' windows are
            bar.length = total
        bar.update(done - bar.pos)

    return progress


def report_line(what: str, report: Any) -> str:
    """One line a person can read: what was written, and where the time went."""
    timings = getattr(report, "timings", None) or {}
    total = sum(timings.values()) or 1.0
    split = ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(timings.items(), key=lambda kv: -kv[1]))
    skipped = getattr(report, "skipped_locked", [])
    return (f"{what}: {report.rows_written} KPI rows written, {report.revisions} earlier values kept as revisions, "
            f"{len(report.windows)} assets, {report.chunks} chunks"
            + (f"; {len(skipped)} assets skipped (another worker holds them)" if skipped else "")
            + (f"; time: {split}" if split else ""))
