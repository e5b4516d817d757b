"""`shopfloor`: the one command line. Each command imports its stage lazily so `--help` stays fast."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from core.errors import ShopfloorError

app = typer.Typer(help="Shop-floor data collector and KPI engine: PLCs -> edge -> collector -> KPIs.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
config_app = typer.Typer(help="Validate plant files.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema and housekeeping.", no_args_is_help=True)
kpi_app = typer.Typer(help="Compute KPIs into kpi_values.", no_args_is_help=True)
edge_app = typer.Typer(help="Run the edge gateway: read PLCs, buffer on disk, forward to the collector. "
                       "With --broker-url it publishes to the uplink; with only --database-url it also runs "
                       "the collector in the same process (single-node mode).", invoke_without_command=True)
collector_app = typer.Typer(help="Run the collector: consume the uplink and write to PostgreSQL/TimescaleDB.",
                            invoke_without_command=True)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.add_typer(kpi_app, name="kpi")
app.add_typer(edge_app, name="edge")
app.add_typer(collector_app, name="collector")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Plant YAML file.", envvar="SHOPFLOOR_CONFIG")]
DbOpt = Annotated[str | None, typer.Option("--database-url", help="postgresql://user@host:5432/db",
                                           envvar="SHOPFLOOR_DATABASE_URL")]
BrokerOpt = Annotated[str | None, typer.Option("--broker-url", help="mqtt://host:1883 (MQTT 5 broker for the uplink)",
                                               envvar="SHOPFLOOR_BROKER_URL")]
LogOpt = Annotated[str, typer.Option("--log-level", help="debug, info, warning, error")]


def setup_logging(level: str = "info") -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    for noisy in ("asyncua", "pymodbus", "amqtt", "transitions", "numba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fail(msg: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(code)


def need(value: Any, flag: str, env: str) -> Any:
    if not value:
        raise fail(f"{flag} is required (or set {env})", 2)
    return value


def load(config: Path | None) -> Any:
    from core.config import load_config

    return load_config(need(config, "--config", "SHOPFLOOR_CONFIG"))


def parse_time(value: str, flag: str) -> datetime:
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise fail(f"{flag}: {value!r} is not an ISO 8601 time (e.g. 2026-11-01T00:00:00+08:00)", 2) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def run_until_signal(main: Any) -> None:
    """Run an async main(stop_event) until SIGINT/SIGTERM."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())


# --------------------------------------------------------------------------- config
@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(help="Plant YAML file to validate.")],
                 show: Annotated[bool, typer.Option("--show", help="Print the resolved config as JSON.")] = False
                 ) -> None:
    """Validate a plant file; every problem is reported as FILE:LINE: FIELD: what is wrong."""
    cfg = load(file)
    machines = cfg.machines()
    tags = sum(len(d.tags) for d in cfg.devices)
    networked = sum(1 for m in machines if m.device)
    typer.echo(f"{file}: OK: plant {cfg.plant.id}, {len(cfg.devices)} devices, {tags} tags, {len(machines)} machines "
               f"({networked} with a device), {len(cfg.shifts)} shifts")
    if show:
        typer.echo(cfg.model_dump_json(indent=2))


# --------------------------------------------------------------------------- db
@db_app.command("migrate")
def db_migrate(database_url: DbOpt = None,
               timescaledb: Annotated[bool, typer.Option("--timescaledb", help="Create the extension and convert "
                                                         "existing tables to hypertables (migrate_data).")] = False,
               yes: Annotated[bool, typer.Option("--yes", "-y", help="Convert without asking (needed when stdin "
                                                 "is not a terminal).")] = False,
               config: ConfigOpt = None) -> None:
    """Create or upgrade the schema (hypertables where TimescaleDB exists, plain tables otherwise)."""
    from collector.db import conversion_plan, migrate, sync_assets
    from shopfloor.stages import schema_dirs

    url = need(database_url, "--database-url", "SHOPFLOOR_DATABASE_URL")
    cfg = load(config) if config is not None else None
    if timescaledb:
        plan = conversion_plan(url, schema_dirs())
        if plan:
            for line in plan:
                typer.echo(line)
            if not yes:
                if not sys.stdin.isatty():
                    raise fail("refusing to convert without confirmation: stdin is not a terminal; "
                               "pass --yes to convert", 2)
                if not typer.confirm("convert now?", default=False):
                    raise fail("conversion cancelled; nothing changed", 1)
    report = migrate(url, timescaledb=True if timescaledb else None, log=typer.echo, schema_dirs=schema_dirs(),
                     retention_days=cfg.plant.retention_days if cfg is not None else None)
    typer.echo(str(report))
    if cfg is not None:
        import psycopg

        with psycopg.connect(url) as conn:
            sync_assets(conn, cfg)
        typer.echo(f"asset register synced from {config}")


@db_app.command("info")
def db_info_cmd(database_url: DbOpt = None,
                days: Annotated[int, typer.Option(help="Samples per day for the last N days (0: skip).")] = 7
                ) -> None:
    """Which path is in use (TimescaleDB or plain), extension version and license, table sizes and chunks."""
    from collector.db import db_info, format_db_info

    typer.echo(format_db_info(db_info(need(database_url, "--database-url", "SHOPFLOOR_DATABASE_URL"), days)))


@db_app.command("retention")
def db_retention(database_url: DbOpt = None, config: ConfigOpt = None,
                 days: Annotated[int | None, typer.Option(help="Override plant.retention_days.")] = None) -> None:
    """Drop raw data older than plant.retention_days (drop_chunks on TimescaleDB, DELETE on plain)."""
    import psycopg

    from collector.retention import enforce_retention

    url = need(database_url, "--database-url", "SHOPFLOOR_DATABASE_URL")
    keep = days if days is not None else (load(config).plant.retention_days if config else None)
    if not keep:
        raise fail("no retention configured: set plant.retention_days or pass --days", 2)
    with psycopg.connect(url, autocommit=True) as conn:
        typer.echo(str(enforce_retention(conn, keep)))


# --------------------------------------------------------------------------- edge
@edge_app.callback()
def edge_run(ctx: typer.Context, config: ConfigOpt = None, broker_url: BrokerOpt = None, database_url: DbOpt = None,
             buffer: Annotated[str | None, typer.Option(help="Store-and-forward file (default edge.buffer_path).")] = None,
             gateway_id: Annotated[str | None, typer.Option(help="Gateway id (default edge.gateway_id or hostname).")] = None,
             log_level: LogOpt = "info") -> None:
    """Run the edge gateway for every device in the plant file."""
    if ctx.invoked_subcommand is not None:
        return
    setup_logging(log_level)
    cfg = load(config)
    from edge.runner import Edge
    from edge.uplink import MqttSink

    if broker_url:
        sink: Any = MqttSink(broker_url, gateway_id or cfg.edge.gateway_id or _hostname(), cfg.edge.uplink_topic_prefix)
    elif database_url:
        from shopfloor.wiring import single_node

        sink = single_node(database_url, cfg, threading.Event())
    else:
        raise fail("give --broker-url (publish to the uplink) or --database-url (single-node mode)", 2)
    edge = Edge(cfg, sink, buffer_path=buffer, gateway_id=gateway_id, config_dir=str(Path(str(config)).parent))
    run_until_signal(edge.run)


def _hostname() -> str:
    import socket

    return socket.gethostname()


@edge_app.command("browse")
def edge_browse(endpoint: Annotated[str, typer.Argument(help="opc.tcp://host:port/path")],
                root: Annotated[str | None, typer.Option(help="Node id of the subtree (default: Objects).")] = None,
                depth: Annotated[int, typer.Option(help="Maximum depth.")] = 10) -> None:
    """Browse an OPC UA server and print a `devices:` entry with one tag per variable, as YAML."""
    from edge.drivers.opcua.browse import browse_yaml

    typer.echo(browse_yaml(endpoint, root, depth))


# --------------------------------------------------------------------------- collector
@collector_app.callback()
def collector_run(ctx: typer.Context, config: ConfigOpt = None, database_url: DbOpt = None,
                  broker_url: BrokerOpt = None,
                  client_id: Annotated[str | None, typer.Option(help="MQTT client id (unique per collector).")] = None,
                  log_level: LogOpt = "info") -> None:
    """Consume the uplink (MQTT 5 shared subscription) and write batches with COPY."""
    if ctx.invoked_subcommand is not None:
        return
    setup_logging(log_level)
    url = need(database_url, "--database-url", "SHOPFLOOR_DATABASE_URL")
    broker = need(broker_url, "--broker-url", "SHOPFLOOR_BROKER_URL")
    from collector.service import run_collector
    from shopfloor.wiring import prepare_database

    cfg = load(config) if config else None
    prepare_database(url, cfg)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run_collector(url, broker, cfg, stop, client_id=client_id)


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
        with psycopg.connect(url) as conn:
            rate = networking_rate(conn, cfg, scope, start, end)
        typer.echo(format_status(rate))
        if not watch:
            return
        time.sleep(watch)


# --------------------------------------------------------------------------- kpi
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
    with typer.progressbar(length=1000, label="backfill", file=sys.stderr) as bar:
        done = [0]

        def progress(fraction: float, *_: Any) -> None:
            n = int(fraction * 1000)
            bar.update(n - done[0])
            done[0] = n

        report = backfill(url, cfg, start, end, progress=progress)
    typer.echo(report_line("backfill", report))


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


# --------------------------------------------------------------------------- simulate / demo
@app.command("simulate")
def simulate(modbus: Annotated[int, typer.Option(help="Machines behind the Modbus TCP server.")] = 2,
             opcua: Annotated[int, typer.Option(help="Machines behind the OPC UA server.")] = 1,
             mqtt: Annotated[int, typer.Option(help="Machines publishing JSON over MQTT.")] = 1,
             sparkplug: Annotated[int, typer.Option(help="Machines publishing Sparkplug B.")] = 1,
             seed: Annotated[int, typer.Option(help="Seed: same seed, same factory.")] = 42,
             speed: Annotated[float, typer.Option(help="Simulated seconds per wall second.")] = 1.0,
             modbus_port: Annotated[int, typer.Option()] = 5020, opcua_port: Annotated[int, typer.Option()] = 4840,
             broker_url: BrokerOpt = "mqtt://127.0.0.1:1883",
             write_config: Annotated[Path | None, typer.Option(help="Write a plant file reading these endpoints.")] = None,
             ground_truth: Annotated[Path | None, typer.Option(help="Write exact state intervals and counts here "
                                                               "on exit (JSON lines, one per machine).")] = None,
             duration_s: Annotated[float, typer.Option(help="Stop after N seconds (0: until Ctrl-C).")] = 0,
             counter_bits: Annotated[int, typer.Option(help="Part counters roll over at 2**N (16 shows rollover "
                                                       "within hours).")] = 32,
             state_scale: Annotated[float, typer.Option(help="Multiply mean state durations (0.1: ten times "
                                                      "more state changes).")] = 1.0,
             log_level: LogOpt = "info") -> None:
    """Play a simulated factory on real OPC UA, Modbus TCP and MQTT/Sparkplug endpoints on loopback."""
    setup_logging(log_level)
    from urllib.parse import urlparse

    from simulator.factory import Factory, FactoryPlan

    b = urlparse(broker_url or "mqtt://127.0.0.1:1883")
    plan = FactoryPlan(modbus=modbus, opcua=opcua, mqtt=mqtt, sparkplug=sparkplug, seed=seed, speed=speed,
                       modbus_port=modbus_port, opcua_port=opcua_port, broker_host=b.hostname or "127.0.0.1",
                       broker_port=b.port or 1883, counter_bits=counter_bits, duration_scale=state_scale)
    factory = Factory(plan)
    if write_config:
        factory.write_config(write_config)
        typer.echo(f"plant file written: {write_config}", err=True)

    async def main(stop: asyncio.Event) -> None:
        await factory.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + duration_s if duration_s else float("inf")
        try:
            while not stop.is_set() and loop.time() < deadline:
                try:
                    await asyncio.wait_for(stop.wait(), min(10.0, max(0.0, deadline - loop.time())))
                except TimeoutError:
                    if ground_truth:  # kept current, so a killed simulator still leaves its truth behind
                        factory.write_ground_truth(ground_truth)
        finally:
            await factory.stop()
            if ground_truth:
                factory.write_ground_truth(ground_truth)
                typer.echo(f"ground truth written: {ground_truth}", err=True)

    run_until_signal(main)


@app.command("demo")
def demo(database_url: DbOpt = None, broker_url: BrokerOpt = None,
         workdir: Annotated[Path, typer.Option(help="Where the demo keeps its files.")] = Path("var/demo"),
         duration_s: Annotated[float, typer.Option(help="Stop after N seconds (0: until Ctrl-C).")] = 0,
         speed: Annotated[float, typer.Option(help="Simulated seconds per wall second.")] = 10.0) -> None:
    """Simulated PLCs -> edge -> collector -> KPIs on an embedded database and broker (or the ones you give)."""
    setup_logging("warning")
    from shopfloor.demo import run_demo

    run_demo(database_url, broker_url, workdir, duration_s, speed)


def main() -> None:
    try:
        app()
    except ShopfloorError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
