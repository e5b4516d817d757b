"""`shopfloor demo`: a simulated factory feeding edge -> collector -> KPIs, with nothing installed beforehand."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import typer

from shopfloor.embedded import EmbeddedBroker, embedded_postgres, free_port

log = logging.getLogger(__name__)


def _banner(cfg_path: Path, url: str, broker: str, broker_kind: str) -> str:
    return f"""
Shopfloor demo is running: simulated PLCs -> edge -> collector -> KPI job -> API and dashboard.
  plant file      {cfg_path}
  database        {url}
  broker          {broker} ({broker_kind})
Where to look:
  live collector status (another terminal):
    shopfloor collector status --config {cfg_path} --database-url '{url}' --watch 5
  raw data:  psql '{url}' -c 'SELECT * FROM samples ORDER BY ts DESC LIMIT 20'
  KPIs:      psql '{url}' -c "SELECT * FROM kpi_values WHERE kpi='oee' ORDER BY bucket_start DESC LIMIT 20"
Press Ctrl-C to stop.
"""


def _status_line(edge: Any, sink: Any) -> str:
    devs = edge.stats.devices.values()
    up = sum(1 for d in devs if d.connected)
    samples = sum(d.samples for d in devs)
    return (f"[{datetime.now().strftime('%H:%M:%S')}] devices connected {up}/{len(edge.stats.devices)}  "
            f"samples read {samples}  written {sink.stats.samples_written}  buffered "
            f"{edge.buffer.queued_samples}  dropped {edge.buffer.dropped_samples}")


def run_demo(database_url: str | None, broker_url: str | None, workdir: Path, duration_s: float, speed: float) -> None:
    from core.config import load_config
    from edge.runner import Edge
    from kpi.networking import format_status, networking_rate
    from shopfloor.wiring import single_node
    from simulator.factory import Factory, FactoryPlan

    workdir.mkdir(parents=True, exist_ok=True)
    pg = None
    if not database_url:
        typer.echo("starting embedded PostgreSQL ...", err=True)
        database_url, pg = embedded_postgres(workdir / "pg")
    broker = None
    if broker_url:
        from core.mqtt import parse_broker_url

        b = parse_broker_url(broker_url)
        bhost, bport, bkind, mqtt5 = b.host, b.port, "given", True
    else:
        broker = EmbeddedBroker(workdir)
        broker.start()
        bhost, bport, bkind, mqtt5 = "127.0.0.1", broker.port, broker.kind, broker.mqtt5
    plan = FactoryPlan(modbus=2, opcua=1, mqtt=1, sparkplug=1, speed=speed, modbus_port=free_port(),
                       opcua_port=free_port(), broker_host=bhost, broker_port=bport, poll_interval_s=0.5)
    factory = Factory(plan)
    cfg_path = workdir / "plant.yaml"
    doc = factory.plant_config("demo-plant")
    for d in doc["devices"]:
        if d["protocol"] in ("mqtt", "sparkplug") and not mqtt5:
            d["mqtt_version"] = "3.1.1"
    doc["edge"] = {"gateway_id": "demo-gw", "buffer_path": str(workdir / "edge-buffer.sqlite")}
    import yaml

    cfg_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    cfg = load_config(cfg_path)
    stop_threads = threading.Event()
    sink = single_node(database_url, cfg, stop_threads, log_line=lambda m: None)
    kpi_thread = None
    try:
        from kpi.job import run_forever

        kpi_thread = threading.Thread(target=run_forever, args=(database_url, cfg),
                                      kwargs={"interval_s": 15.0, "stop_event": stop_threads}, daemon=True)
    except ImportError:
        typer.echo("the KPI job needs the kpi extra (pip install 'shopfloor[kpi]'); showing raw data only", err=True)
    stop_api = None
    try:
        from shopfloor.demo_api import api_lines, start_api

        api_url, api_token, stop_api = start_api(database_url, cfg_path, cfg, free_port())
    except ImportError:
        typer.echo("the HTTP API needs the api extra (pip install 'shopfloor[api]'); serving no dashboard", err=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await factory.start()
        edge = Edge(cfg, sink)
        edge_task = asyncio.create_task(edge.run(stop))
        if kpi_thread is not None:
            kpi_thread.start()
        typer.echo((f"\nDashboard: open {api_url}/?token={api_token}\n" if stop_api else "") + _banner(cfg_path, database_url, f"mqtt://{bhost}:{bport}", bkind))
        if stop_api is not None:
            typer.echo(api_lines(api_url, api_token) + "\n")
        started = time.monotonic()
        last_table = 0.0
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), timeout=5.0)
                except TimeoutError:
                    pass
                typer.echo(_status_line(edge, sink))
                if time.monotonic() - last_table > 30:
                    last_table = time.monotonic()
                    end = datetime.now(UTC)
                    rate = await asyncio.to_thread(_rate, database_url, cfg, end, networking_rate)
                    typer.echo(format_status(rate))
                if duration_s and time.monotonic() - started >= duration_s:
                    stop.set()
        finally:
            stop.set()
            await edge_task
            await factory.stop()

    demo_started = datetime.now(UTC)
    try:
        asyncio.run(main())
        if kpi_thread is not None:
            stop_threads.set()
            kpi_thread.join(30)
            from shopfloor.demo_evidence import sample_pack

            sample_pack(database_url, cfg_path, cfg, demo_started, workdir)
    finally:
        stop_threads.set()
        if stop_api is not None:
            stop_api()
        if kpi_thread is not None and kpi_thread.is_alive():
            kpi_thread.join(10)
        if broker is not None:
            broker.stop()
        if pg is not None:
            pg.cleanup()
        typer.echo("demo stopped", err=True)


def _rate(url: str, cfg: Any, end: datetime, networking_rate: Any) -> Any:
    with psycopg.connect(url) as conn:
        return networking_rate(conn, cfg, None, end - timedelta(minutes=5), end)
