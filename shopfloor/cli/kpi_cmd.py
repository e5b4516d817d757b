"""`shopfloor kpi run|backfill`."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Annotated, Any

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

@kpi_app.command("run")
def kpi_run(config: ConfigOpt = None, database_url: DbOpt = None,
            interval_s: Annotated[float, typer.Option(help="Seconds between passes.")] = 60.0,
            once: Annotated[bool, typer.Option(help="One pass, then exit.")] = False, log_level: LogOpt = "info") -> None:
    """Keep kpi_values current as data arrives (incremental by watermark)."""
    setup_logging(log_level)
    from kpi.job import run_forever, run_once

    cfg = load(config)
    url = need(database_url, "--database-url", "SHOPFLOOR_DATABASE_URL")
    if once:
        with reaching_database(url):
            typer.echo(report_line("kpi run", run_once(url, cfg)))
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run_forever(url, cfg, interval_s=interval_s, stop_event=stop)


@kpi_app.command("backfill")
def kpi_backfill(config: ConfigOpt = None, database_url: DbOpt = None,
                 since: Annotated[str, typer.Option("--from", help="Start, ISO 8601.")] = "",
                 until: Annotated[str, typer.Option("--to", help="End, ISO 8601.")] = "") -> None:
    """Recompute and store KPIs for a time range, with a progress bar."""
    from kpi.job import backfill

    cfg = load(config)
    url = need(database_url, "--database-url", "SHOPFLOOR_DATABASE_URL")
    start, end = parse_time(need(since, "--from", "-"), "--from"), parse_time(need(until, "--to", "-"), "--to")
    if end <= start:
        raise fail("--to must be after --from", 2)
    with reaching_database(url), typer.progressbar(length=1, label="backfill", file=sys.stderr) as bar:
        report = backfill(url, cfg, start, end, progress=chunk_progress(bar))
    typer.echo(report_line("backfill", report))


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
