"""`shopfloor collector` and `shopfloor collector status`."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from shopfloor.cli.common import (
    BrokerOpt,
    ConfigOpt,
    DbOpt,
    LogOpt,
    load,
    need,
    parse_time,
    reaching_database,
    setup_logging,
)

collector_app = typer.Typer(help="Run the collector: consume the uplink and write to PostgreSQL/TimescaleDB.",
                            invoke_without_command=True)

@collector_app.callback()
def collector_run(ctx: typer.Context, config: ConfigOpt = None, database_url: DbOpt = None,
                  broker_url: BrokerOpt = None,
                  client_id: Annotated[str | None, typer.Option(help="MQTT client id (unique per collector).")] = None,
                  mount_point: Annotated[str, typer.Option(
                      envvar="SHOPFLOOR_BROKER_MOUNT_POINT",
                      help="mount_point of the broker listener the gateways use (e.g. gateways/ with "
                           "deploy/mosquitto): prefixed to the samples and ack topics.")] = "",
                  log_level: LogOpt = "info") -> None:
    """Consume the uplink (MQTT 5 shared subscription) and write batches with COPY."""
    if ctx.invoked_subcommand is not None:
        return
    setup_logging(log_level)
    url = need(database_url, "--database-url", "SHOPFLOOR_DATABASE_URL")
    broker = need(broker_url, "--broker-url", "SHOPFLOOR_BROKER_URL")
    from collector.service import run_collector
    from core.mqtt import parse_broker_url

    parse_broker_url(broker)  # a bad URL is one line before anything starts
    from shopfloor.wiring import prepare_database

    cfg = load(config) if config else None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with reaching_database(url):
        prepare_database(url, cfg)
        run_collector(url, broker, cfg, stop, client_id=client_id, mount_point=mount_point)


@collector_app.command("status")
def collector_status(config: ConfigOpt = None, database_url: DbOpt = None,
                     scope: Annotated[str | None, typer.Option(help="Plant, area or line id (default: plant).")] = None,
                     since: Annotated[str, typer.Option("--from", help="Start (ISO 8601); default: 1 hour ago.")] = "",
                     until: Annotated[str, typer.Option("--to", help="End (ISO 8601); default: now.")] = "",
                     watch: Annotated[float, typer.Option(help="Refresh every N seconds (0: once).")] = 0) -> None:
    """Equipment networking rate and per-machine connection state, in the terminal."""
    import time

    import psycopg

    from kpi.networking import format_status, networking_rate

    cfg = load(config)
    url = need(database_url, "--database-url", "SHOPFLOOR_DATABASE_URL")
    while True:
        end = parse_time(until, "--to") if until else datetime.now(UTC)
        start = parse_time(since, "--from") if since else end - timedelta(hours=1)
        with reaching_database(url), psycopg.connect(url, connect_timeout=10) as conn:
            rate = networking_rate(conn, cfg, scope, start, end)
        typer.echo(format_status(rate))
        if not watch:
            return
        time.sleep(watch)
