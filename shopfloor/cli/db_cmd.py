"""`shopfloor db migrate|info|retention`."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from shopfloor.cli.common import (
    ConfigOpt,
    DbOpt,
    fail,
    load,
    need,
    reaching_database,
)

db_app = typer.Typer(help="Database schema and housekeeping.", no_args_is_help=True)

@db_app.command("migrate")
def db_migrate(database_url: DbOpt = None,
               timescaledb: Annotated[bool, typer.Option("--timescaledb", help="Create the extension and convert "
                                                         "existing tables to hypertables (migrate_data).")] = False,
               yes: Annotated[bool, typer.Option("--yes", "-y", help="Convert without asking (needed when stdin "
                                                 "is not a terminal).")] = False,
               config: ConfigOpt = None) -> None:
    """Create or upgrade the schema (hypertables where TimescaleDB exists, plain tables otherwise)."""
    url = need(database_url, "--database-url", "SHOPFLOOR_DATABASE_URL")
    cfg = load(config) if config is not None else None
    with reaching_database(url):
        _migrate(url, cfg, config, timescaledb, yes)


def _migrate(url: str, cfg: Any, config: Any, timescaledb: bool, yes: bool) -> None:
    from collector.db import conversion_plan, migrate, sync_assets
    from shopfloor.stages import schema_dirs

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

    url = need(database_url, "--database-url", "SHOPFLOOR_DATABASE_URL")
    with reaching_database(url):
        typer.echo(format_db_info(db_info(url, days)))


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
    with reaching_database(url), psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        typer.echo(str(enforce_retention(conn, keep)))
