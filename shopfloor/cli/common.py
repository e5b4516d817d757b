"""Shared pieces of the command line: connection options, logging, one-line errors, time parsing."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

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
