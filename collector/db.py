"""Schema migrations (numbered SQL files, plain or TimescaleDB path), the asset register, and database info.

A file `NNN_name.sql` applies on both paths; `NNN_name.timescaledb.sql` / `NNN_name.plain.sql` only on that
path. The path is TimescaleDB when the `timescaledb` extension exists in the database, else plain.
Each file runs in its own transaction together with its `schema_migrations` row; one advisory lock
serialises concurrent migrators. See collector/README.md "Schema".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from collector.errors import MigrationError
from edge.config import PlantConfig

SCHEMA_DIR = Path(__file__).with_name("schema")
MIGRATE_LOCK_ID = 0x5F0C_0001  # pg_advisory_lock key shared by every shopfloor migrator
_FILE_RE = re.compile(r"^(\d{3})_([a-z0-9_]+?)(?:\.(plain|timescaledb))?\.sql$")

Log = Callable[[str], object]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    variant: str  # "" (both paths), "plain" or "timescaledb"
    path: Path

    @property
    def filename(self) -> str:
        return self.path.name


@dataclass
class MigrateReport:
    path: str  # "plain" | "timescaledb"
    extension_version: str | None
    applied: list[str] = field(default_factory=list)
    converted: list[str] = field(default_factory=list)  # timescaledb variants applied over a plain schema


def load_migrations(schema_dir: Path = SCHEMA_DIR) -> list[Migration]:
    """All migration files in version order; a version has one shared file or per-path variants."""
    found: list[Migration] = []
    for p in sorted(schema_dir.glob("*.sql")):
        m = _FILE_RE.match(p.name)
        if not m:
            raise MigrationError(f"{p}: migration files are named NNN_name.sql, NNN_name.plain.sql "
                                 "or NNN_name.timescaledb.sql")
        found.append(Migration(int(m.group(1)), m.group(2), m.group(3) or "", p))
    by_version: dict[int, list[Migration]] = {}
    for mig in found:
        by_version.setdefault(mig.version, []).append(mig)
    for version, migs in by_version.items():
        variants = [m.variant for m in migs]
        if len(set(variants)) != len(variants) or ("" in variants and len(variants) > 1):
            names = ", ".join(m.filename for m in migs)
            raise MigrationError(f"{schema_dir}: version {version:03d} has clashing files ({names}); "
                                 "use one shared file or one file per path")
    return sorted(found, key=lambda m: (m.version, m.variant))


def _extension_version(conn: psycopg.Connection[Any]) -> str | None:
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return None if row is None else str(row[0])


def _create_timescaledb(conn: psycopg.Connection[Any]) -> None:
    if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone() is None:
        raise MigrationError("TimescaleDB is not installed on this PostgreSQL server "
                             "(run `make timescaledb` as root, or migrate without --timescaledb)")
    try:
        conn.execute("SET client_min_messages = warning")
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:
        raise MigrationError(f"cannot create extension timescaledb: {str(exc).strip().splitlines()[0]} "
                             "(is it in shared_preload_libraries? see deploy/timescaledb.sh)") from exc


def _pending(migrations: list[Migration], done: dict[int, str], path: str) -> list[Migration]:
    """Files still to run: unseen versions, plus timescaledb variants of versions applied on the plain path."""
    out = []
    for mig in migrations:
        if mig.variant and mig.variant != path:
            continue
        recorded = done.get(mig.version)
        if recorded is None or (path == "timescaledb" and mig.variant == "timescaledb" and recorded != "timescaledb"):
            out.append(mig)
    return out


def migrate(url: str, timescaledb: bool | None = None, log: Log = print, *,
            schema_dir: Path = SCHEMA_DIR) -> MigrateReport:
    """Create or upgrade the schema; idempotent and safe to run concurrently.

    timescaledb=None: follow the database (extension present → TimescaleDB path). True: create the extension
    first (converting an existing plain schema to hypertables). False: insist on the plain path.
    """
    migrations = load_migrations(schema_dir)
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise MigrationError(f"cannot connect to the database: {str(exc).strip().splitlines()[0]}") from exc
    with conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK_ID,))
        try:
            return _migrate_locked(conn, migrations, timescaledb, log)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK_ID,))


def _migrate_locked(conn: psycopg.Connection[Any], migrations: list[Migration], timescaledb: bool | None,
                    log: Log) -> MigrateReport:
    if timescaledb:
        _create_timescaledb(conn)
    ext = _extension_version(conn)
    if timescaledb is False and ext is not None:
        raise MigrationError("this database has the timescaledb extension; it cannot be migrated on the plain path")
    path = "timescaledb" if ext else "plain"
    conn.execute("SET client_min_messages = warning")
    conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
        version int PRIMARY KEY, name text, applied_at timestamptz NOT NULL DEFAULT now(),
        variant text NOT NULL DEFAULT '', path text NOT NULL DEFAULT 'plain')""")
    done = {int(v): str(p) for v, p in conn.execute("SELECT version, path FROM schema_migrations")}
    pending = _pending(migrations, done, path)
    was_plain = path == "timescaledb" and "plain" in done.values()
    converting = [m for m in pending if was_plain and m.variant == "timescaledb"]
    report = MigrateReport(path=path, extension_version=ext)
    if converting:
        log(f"converting this plain database to TimescaleDB: will apply {', '.join(m.filename for m in converting)}")
        for table, rows in _row_estimates(conn).items():
            log(f"  {table}: about {rows} rows will move into hypertable chunks (tables are locked meanwhile)")
    for mig in pending:
        sql = mig.path.read_text(encoding="utf-8")
        try:
            with conn.transaction():
                conn.execute(sql)  # no parameters: several statements per file are allowed
                conn.execute(
                    """INSERT INTO schema_migrations (version, name, applied_at, variant, path)
                       VALUES (%s, %s, now(), %s, %s)
                       ON CONFLICT (version) DO UPDATE SET name = excluded.name, applied_at = excluded.applied_at,
                           variant = excluded.variant, path = excluded.path""",
                    (mig.version, mig.name, mig.variant, path))
        except psycopg.Error as exc:
            raise MigrationError(f"{mig.filename}: {str(exc).strip().splitlines()[0]}") from exc
        conversion = mig in converting
        (report.converted if conversion else report.applied).append(mig.filename)
        log(f"{'converted with' if conversion else 'applied'} {mig.filename}")
    if not pending:
        log(f"schema up to date ({path})")
    return report


def _row_estimates(conn: psycopg.Connection[Any]) -> dict[str, int]:
    rows = conn.execute("""SELECT c.relname, greatest(c.reltuples, 0)::bigint FROM pg_class c
                           JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE n.nspname = 'public' AND c.relname IN ('samples', 'device_status', 'kpi_values')
                           ORDER BY 1""").fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


# --------------------------------------------------------------------------- asset register


def sync_assets(conn: psycopg.Connection[Any], cfg: PlantConfig) -> int:
    """Make table `assets` equal to the config's asset tree (upsert, delete the rest); returns the asset count."""
    rows = []
    for asset, ancestors in cfg.iter_assets():
        rows.append((asset.id, asset.kind, ancestors[-1] if ancestors else None, asset.name or asset.id,
                     asset.device, asset.ideal_cycle_time_s, asset.production, [*ancestors, asset.id]))
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO assets (id, kind, parent_id, name, device_id, ideal_cycle_time_s, production, path)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, parent_id = excluded.parent_id,
                   name = excluded.name, device_id = excluded.device_id,
                   ideal_cycle_time_s = excluded.ideal_cycle_time_s, production = excluded.production,
                   path = excluded.path""", rows)
        cur.execute("DELETE FROM assets WHERE NOT (id = ANY(%s))", ([r[0] for r in rows],))
    return len(rows)


# --------------------------------------------------------------------------- info


def db_info(url: str) -> dict[str, Any]:
    """What the database is: path, extension version and license, schema version, per-table rows and chunks."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        ext = _extension_version(conn)
        info: dict[str, Any] = {
            "path": "timescaledb" if ext else "plain",
            "server_version": conn.execute("SHOW server_version").fetchone()[0],  # type: ignore[index]
            "extension_version": ext,
            "license": conn.execute("SHOW timescaledb.license").fetchone()[0] if ext else None,  # type: ignore[index]
            "schema_version": None,
            "tables": {},
        }
        if conn.execute("SELECT to_regclass('public.schema_migrations')").fetchone()[0]:  # type: ignore[index]
            info["schema_version"] = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]  # type: ignore[index]
        hyper: set[str] = set()
        if ext:
            hyper = {str(r[0]) for r in conn.execute(
                "SELECT hypertable_name FROM timescaledb_information.hypertables WHERE hypertable_schema = 'public'")}
        for name in ("samples", "device_status", "assets", "ingest_ledger", "quarantine", "kpi_values"):
            if not conn.execute("SELECT to_regclass(%s)", (f"public.{name}",)).fetchone()[0]:  # type: ignore[index]
                continue
            t: dict[str, Any] = {"hypertable": name in hyper}
            if name in hyper:
                row = conn.execute(
                    """SELECT (SELECT count(*) FROM timescaledb_information.chunks
                               WHERE hypertable_schema = 'public' AND hypertable_name = %s),
                              hypertable_size(%s::regclass),
                              (SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint
                               FROM timescaledb_information.chunks k
                               JOIN pg_class c ON c.oid = format('%%I.%%I', k.chunk_schema, k.chunk_name)::regclass
                               WHERE k.hypertable_schema = 'public' AND k.hypertable_name = %s)""",
                    (name, name, name)).fetchone()
                assert row is not None
                t.update(chunks=int(row[0]), size_bytes=int(row[1] or 0), rows_estimate=int(row[2]))
            else:
                row = conn.execute("SELECT greatest(reltuples, 0)::bigint, pg_total_relation_size(oid) "
                                   "FROM pg_class WHERE oid = %s::regclass", (name,)).fetchone()
                assert row is not None
                t.update(chunks=None, size_bytes=int(row[1]), rows_estimate=int(row[0]))
            info["tables"][name] = t
        return info


def format_db_info(info: dict[str, Any]) -> str:
    """db_info as a few lines for the terminal."""
    lines = [f"path: {info['path']}  (PostgreSQL {info['server_version']})"]
    if info["extension_version"]:
        lines.append(f"timescaledb: {info['extension_version']}  license: {info['license']}")
    lines.append(f"schema version: {info['schema_version'] if info['schema_version'] is not None else 'none'}")
    lines.append(f"{'table':<16}{'rows (est.)':>14}{'chunks':>8}{'size':>12}")
    for name, t in info["tables"].items():
        chunks = "-" if t["chunks"] is None else str(t["chunks"])
        lines.append(f"{name:<16}{t['rows_estimate']:>14}{chunks:>8}{_size(t['size_bytes']):>12}")
    return "\n".join(lines)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
