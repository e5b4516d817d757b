"""Shared pieces of the command line: connection options, logging, one-line errors, time parsing."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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


def database_name(url: str | None) -> str:
    """`the database user@host:port/dbname` for a URL (never the password); `the database` without one."""
    if not url:
        return "the database"
    try:
        from psycopg.conninfo import conninfo_to_dict

        p = conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - an unparseable URL is reported by database_problem
        return "the database"
    user = f"{p['user']}@" if p.get("user") else ""
    return (f"the database {user}{p.get('host') or 'localhost'}:{p.get('port') or 5432}/"
            f"{p.get('dbname') or p.get('user') or ''}")


def database_problem(exc: BaseException, url: str | None) -> str | None:
    """One line for a database that cannot be reached, a bad URL or a missing schema; None for anything else."""
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:
        return None
    cause = exc if isinstance(exc, psycopg.Error) else exc.__cause__
    if not isinstance(cause, psycopg.Error):
        return None
    first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    where = database_name(url)
    if url:
        try:
            psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.Error:
            return (f"--database-url is not a PostgreSQL URL ({first}); expected "
                    "postgresql://user@host:5432/dbname")
    if isinstance(cause, psycopg.errors.UndefinedTable):
        return (f"{where} has no Shopfloor schema ({first}): run `shopfloor db migrate --database-url ...` "
                "against it first")
    if isinstance(cause, psycopg.OperationalError):
        return (f"cannot reach {where}: {first}; check that PostgreSQL is running and accepts "
                "connections there, and --database-url (or SHOPFLOOR_DATABASE_URL)")
    return None


@contextmanager
def reaching_database(url: str | None) -> Iterator[None]:
    """Turn an unreachable database, a bad URL or a missing schema into one line that names the database."""
    try:
        yield
    except Exception as exc:
        line = database_problem(exc, url)
        if line is None:
            raise
        raise fail(line) from None


# third-party top-level module -> the extra that installs it
EXTRA_OF_MODULE = {
    "asyncua": "edge", "pymodbus": "edge", "serial": "edge", "google": "edge", "cryptography": "edge",
    "paho": "edge", "psycopg": "collector", "psycopg_binary": "collector",
    "numpy": "kpi", "numba": "kpi", "llvmlite": "kpi",
    "fastapi": "api", "starlette": "api", "uvicorn": "api", "psycopg_pool": "api", "prometheus_client": "api",
    "pyarrow": "api", "jinja2": "api", "multipart": "api", "python_multipart": "api",
    "pandas": "bench", "polars": "bench", "amqtt": "demo", "pgserver": "demo",
}
# commands whose whole dependency set is one extra, whatever module is missing first
EXTRA_OF_COMMAND = {"simulate": "simulate", "demo": "demo", "collector": "collector", "kpi": "kpi", "api": "api"}


def missing_extra(exc: ModuleNotFoundError, command: list[str]) -> str | None:
    """`'shopfloor kpi' needs the kpi extra: pip install 'shopfloor[kpi]'`, or None if not a missing dependency."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return None
    if command and command[0] in EXTRA_OF_COMMAND:
        extra = EXTRA_OF_COMMAND[command[0]]
    name = " ".join(["shopfloor", *command[:1]])
    return f"'{name}' needs the {extra} extra (module {top!r} is missing): pip install 'shopfloor[{extra}]'"
