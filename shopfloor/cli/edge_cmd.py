"""`shopfloor edge` (uplink or single-node mode) and `shopfloor edge browse`."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from shopfloor.cli.common import (
    BrokerOpt,
    ConfigOpt,
    DbOpt,
    LogOpt,
    fail,
    load,
    reaching_database,
    run_until_signal,
    setup_logging,
)

edge_app = typer.Typer(help="Run the edge gateway: read PLCs, buffer on disk, forward to the collector. "
                       "With --broker-url it publishes to the uplink; with only --database-url it also runs "
                       "the collector in the same process (single-node mode).", invoke_without_command=True)

@edge_app.callback()
def edge_run(ctx: typer.Context, config: ConfigOpt = None, broker_url: BrokerOpt = None, database_url: DbOpt = None,
             buffer: Annotated[str | None, typer.Option(help="Store-and-forward file (default edge.buffer_path).")] = None,
             gateway_id: Annotated[str | None, typer.Option(
                 help="Gateway id (default edge.gateway_id or hostname). When the plant file assigns devices to "
                      "gateways (a device's `gateway` key or a `gateways:` section), only this gateway's devices "
                      "run.")] = None,
             log_level: LogOpt = "info") -> None:
    """Run the edge gateway for every device in the plant file."""
    if ctx.invoked_subcommand is not None:
        return
    setup_logging(log_level)
    cfg = load(config)
    if gateway_id:
        from core.plant import topic_safe_id

        try:
            topic_safe_id(gateway_id, "--gateway-id")
        except ValueError as exc:
            raise fail(str(exc), 2) from None
    from edge.runner import Edge
    from edge.uplink import MqttSink

    gateway = gateway_id or cfg.edge.gateway_id or _hostname()
    device_ids = cfg.gateway_devices(gateway)
    if device_ids is not None and not device_ids:
        known = sorted({*cfg.device_owners().values(), *([cfg.edge.gateway_id] if cfg.edge.gateway_id else [])})
        raise fail(f"{config}: gateway {gateway!r} reads no device in this plant file (gateways: {', '.join(known)}); "
                   "pass --gateway-id with one of them", 2)
    if broker_url:
        sink: Any = MqttSink(broker_url, gateway, cfg.edge.uplink_topic_prefix)
    elif database_url:
        from shopfloor.wiring import single_node

        with reaching_database(database_url):
            sink = single_node(database_url, cfg, threading.Event())
    else:
        raise fail("give --broker-url (publish to the uplink) or --database-url (single-node mode)", 2)
    edge = Edge(cfg, sink, buffer_path=buffer, gateway_id=gateway, device_ids=device_ids,
                config_dir=str(Path(str(config)).parent))
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
