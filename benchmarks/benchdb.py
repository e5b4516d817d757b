"""Throw-away databases for the benchmarks: each run creates its own, migrated, and drops it afterwards."""

from __future__ import annotations

import uuid

import psycopg

from collector.db import migrate
from shopfloor.stages import schema_dirs


def create_db(admin: str, timescaledb: bool, prefix: str = "sf_bench") -> str:
    """A new database on the server of `admin`, migrated on the TimescaleDB or the plain path; returns its URL."""
    name = f"{prefix}_{'ts' if timescaledb else 'pl'}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + "/" + name
    migrate(url, timescaledb=True if timescaledb else None, log=lambda _: None, schema_dirs=schema_dirs())
    return url


def drop_db(admin: str, url: str) -> None:
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def timescaledb_available(admin: str) -> bool:
    with psycopg.connect(admin, autocommit=True) as c:
        ok = c.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
        preload = c.execute("SHOW shared_preload_libraries").fetchone()
    return ok is not None and preload is not None and "timescaledb" in str(preload[0])
