"""`shopfloor simulate` and `shopfloor demo`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from shopfloor.cli.common import (
    BrokerOpt,
    DbOpt,
    LogOpt,
    run_until_signal,
    setup_logging,
)


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
    app.command("demo")(demo)



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
    from core.mqtt import parse_broker_url
    from simulator.factory import Factory, FactoryPlan

    b = parse_broker_url(broker_url or "mqtt://127.0.0.1:1883")
    plan = FactoryPlan(modbus=modbus, opcua=opcua, mqtt=mqtt, sparkplug=sparkplug, seed=seed, speed=speed,
                       modbus_port=modbus_port, opcua_port=opcua_port, broker_host=b.host,
                       broker_port=b.port, counter_bits=counter_bits, duration_scale=state_scale)
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


def demo(database_url: DbOpt = None, broker_url: BrokerOpt = None,
         workdir: Annotated[Path, typer.Option(help="Where the demo keeps its files.")] = Path("var/demo"),
         duration_s: Annotated[float, typer.Option(help="Stop after N seconds (0: until Ctrl-C).")] = 0,
         speed: Annotated[float, typer.Option(help="Simulated seconds per wall second.")] = 10.0) -> None:
    """Simulated PLCs -> edge -> collector -> KPIs on an embedded database and broker (or the ones you give)."""
    setup_logging("warning")
    from shopfloor.demo import run_demo

    run_demo(database_url, broker_url, workdir, duration_s, speed)
