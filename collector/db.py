"""Schema migrations (numbered SQL files, plain or TimescaleDB path), the asset register, and database info.

Each stage ships its own migrations (`collector/schema/`, `kpi/schema/`, `api/schema/`); the migrator applies
the directories it is given in stage order, with version numbers unique across them (collector 001-029,
kpi 030-059, api 060-089). A file `NNN_name.sql` applies on both paths; `NNN_name.timescaledb.sql` /
`NNN_name.plain.sql` only on that path. The path is TimescaleDB when the `timescaledb` extension exists in the database, else plain.
Each file runs in its own transaction together with its `schema_migrations` row; one advisory lock
serialises concurrent migrators. See collector/README.md "Schema".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from collector.errors import MigrationError
from core.plant import PlantConfig

SCHEMA_DIR = Path(__file__).with_name("schema")
MIGRATE_LOCK_ID = 0x5F0C_0001  # pg_advisory_lock key shared by every shopfloor migrator
_FILE_RE = re.compile(r"^(\d{3})_([a-z0-9_]+?)(?:\.(plain|timescaledb))?\.sql$")

Log = Callable[[str], object]

# --------------------------------------------------------------------------- time buckets on both paths

# time_bucket() on timestamptz aligns buckets to 2000-01-03 00:00 UTC (a Monday) by default; date_bin() gets the
# same origin, so both paths return identical buckets for every fixed width (minutes, hours, days, weeks).
BUCKET_ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)
_WIDTH_RE = re.compile(r"^\s*(\d+)\s*(microsecond|millisecond|second|minute|min|hour|day|week)s?\s*$", re.IGNORECASE)
_WIDTH_UNIT_S = {"microsecond": 1e-6, "millisecond": 1e-3, "second": 1, "minute": 60, "min": 60, "hour": 3600,
                 "day": 86400, "week": 7 * 86400}
_IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")


def bucket_width(width: str) -> timedelta:
    """'15 minutes', '1 hour', '1 day', '1 week' -> timedelta; months and years are refused (no fixed length,
    and date_bin cannot bin by them)."""
    m = _WIDTH_RE.match(width)
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"bucket width {width!r}: use a positive number of microseconds, milliseconds, seconds, "
                         "minutes, hours, days or weeks (e.g. '15 minutes')")
    return timedelta(seconds=int(m.group(1)) * _WIDTH_UNIT_S[m.group(2).lower()])


def bucket_sql(path: str, width: str, column: str = "ts") -> str:
    """SQL for the start of the `width` bucket containing `column`: time_bucket on TimescaleDB, date_bin on plain.

    Both use the same origin (BUCKET_ORIGIN), so they return the same buckets. `width` is validated and
    inlined as an interval literal, `column` must be a (qualified) column name.
    """
    bucket_width(width)  # validates
    if not _IDENT_RE.match(column):
        raise ValueError(f"bucket column {column!r} is not a column name")
    m = _WIDTH_RE.match(width)
    assert m is not None
    unit = "minute" if m.group(2).lower() == "min" else m.group(2).lower()
    interval = f"interval '{int(m.group(1))} {unit}s'"
    if path == "timescaledb":
        return f"time_bucket({interval}, {column})"
    if path == "plain":
        return f"date_bin({interval}, {column}, timestamptz '{BUCKET_ORIGIN.isoformat()}')"
    raise ValueError(f"unknown database path {path!r} (expected 'timescaledb' or 'plain')")


def bucket_start(ts: datetime, width: str) -> datetime:
    """The bucket containing `ts`, computed in Python exactly as bucket_sql does in the database."""
    delta = bucket_width(width)
    return BUCKET_ORIGIN + ((ts - BUCKET_ORIGIN) // delta) * delta


def detect_path(conn: psycopg.Connection[Any]) -> str:
    """'timescaledb' when the extension exists in this database, else 'plain'."""
    return "timescaledb" if _extension_version(conn) else "plain"


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
    policies: dict[str, Any] | None = None  # apply_licensed_policies' report (TimescaleDB path)


def load_migrations(*schema_dirs: Path) -> list[Migration]:
    """All migration files of the given stage directories (default: the collector's) in version order; a version
    has one shared file or per-path variants, in one directory."""
    found: list[Migration] = []
    for p in sorted(f for d in (schema_dirs or (SCHEMA_DIR,)) for f in d.glob("*.sql")):
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
            raise MigrationError(f"{migs[0].path.parent}: version {version:03d} has clashing files ({names}); "
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
            schema_dirs: Sequence[Path] = (SCHEMA_DIR,), retention_days: int | None = None) -> MigrateReport:
    """Create or upgrade the schema; idempotent and safe to run concurrently.

    timescaledb=None: follow the database (extension present → TimescaleDB path). True: create the extension
    first (converting an existing plain schema to hypertables). False: insist on the plain path.
    On the TimescaleDB path it then calls collector.retention.apply_licensed_policies (compression and policy
    jobs where the Timescale license is present; logs what it skipped and why under the Apache license).
    """
    migrations = load_migrations(*schema_dirs)
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise MigrationError(f"cannot connect to the database: {str(exc).strip().splitlines()[0]}") from exc
    with conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK_ID,))
        try:
            report = _migrate_locked(conn, migrations, timescaledb, log)
            if report.path == "timescaledb":
                from collector.retention import apply_licensed_policies

                try:
                    report.policies = apply_licensed_policies(conn, retention_days, log)
                except psycopg.Error as exc:
                    raise MigrationError(f"licensed policies: {str(exc).strip().splitlines()[0]}") from exc
            return report
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
        for line in _plan_lines(conn, converting):
            log(line)
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


EXACT_COUNT_BELOW = 1_000_000  # tables whose estimate is below this are counted exactly for the plan
_HYPERTABLE_RE = re.compile(r"create_hypertable\(\s*'([a-z_][a-z0-9_]*)'", re.IGNORECASE)


def _hypertable_of(mig: Migration) -> str:
    """The table a TimescaleDB variant turns into a hypertable ('' when it creates none)."""
    m = _HYPERTABLE_RE.search(mig.path.read_text(encoding="utf-8"))
    return m.group(1) if m else ""


def _row_counts(conn: psycopg.Connection[Any], tables: list[str]) -> dict[str, tuple[int, bool, int]]:
    """table -> (rows, exact?, bytes); an exact count(*) for small tables, the planner estimate for big ones."""
    out: dict[str, tuple[int, bool, int]] = {}
    for table in tables:
        row = conn.execute("""SELECT c.reltuples::bigint, pg_total_relation_size(c.oid) FROM pg_class c
                              WHERE c.oid = to_regclass(%s)""", (f"public.{table}",)).fetchone()
        if row is None:
            continue
        estimate, size = int(row[0]), int(row[1])
        if estimate >= EXACT_COUNT_BELOW:
            out[table] = (estimate, False, size)
        else:
            n = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            out[table] = (int(n[0]) if n else 0, True, size)
    return out


def _plan_lines(conn: psycopg.Connection[Any], converting: list[Migration]) -> list[str]:
    """What converting a plain database to TimescaleDB will do, for the operator to read before it happens."""
    tables = [_hypertable_of(m) for m in converting]
    counts = _row_counts(conn, [t for t in tables if t])
    lines = [f"converting this plain database to TimescaleDB: will apply {', '.join(m.filename for m in converting)}"]
    for mig, table in zip(converting, tables, strict=True):
        if not table or table not in counts:
            lines.append(f"  {mig.filename}: runs on the TimescaleDB path")
            continue
        n, exact, size = counts[table]
        lines.append(f"  {table}: {'' if exact else 'about '}{n} rows ({_size(size)}) -> hypertable; "
                     "create_hypertable(migrate_data => true) copies every row into chunks in one transaction")
    lines.append("  each table is locked (ACCESS EXCLUSIVE) while its rows are copied: writers and readers wait; "
                 "stop the collectors or expect them to retry. Needs free disk for about one more copy of the data.")
    return lines


def conversion_plan(url: str, schema_dirs: Sequence[Path] = (SCHEMA_DIR,)) -> list[str]:
    """What `migrate(url, timescaledb=True)` would convert on this database ([] when nothing: new or converted)."""
    migrations = load_migrations(*schema_dirs)
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise MigrationError(f"cannot connect to the database: {str(exc).strip().splitlines()[0]}") from exc
    with conn:
        if not conn.execute("SELECT to_regclass('public.schema_migrations')").fetchone()[0]:  # type: ignore[index]
            return []
        done = {int(v): str(p) for v, p in conn.execute("SELECT version, path FROM schema_migrations")}
        if "plain" not in done.values():
            return []
        converting = [m for m in _pending(migrations, done, "timescaledb") if m.variant == "timescaledb"]
        return _plan_lines(conn, converting) if converting else []


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


def rows_per_day(conn: psycopg.Connection[Any], days: int = 7, now: datetime | None = None,
                 path: str | None = None) -> list[tuple[datetime, int]]:
    """Samples per UTC day for the last `days` days (today included, oldest first, empty days as 0).

    One query with bucket_sql: time_bucket on TimescaleDB (only the chunks of those days are scanned), date_bin
    on plain PostgreSQL (BRIN range scan).
    """
    path = path or detect_path(conn)
    today = bucket_start(now or datetime.now(UTC), "1 day")
    first = today - timedelta(days=days - 1)
    counts = {r[0]: int(r[1]) for r in conn.execute(
        f"""SELECT {bucket_sql(path, '1 day')} AS day, count(*) FROM samples
            WHERE ts >= %s AND ts < %s GROUP BY 1""", (first, today + timedelta(days=1)))}
    return [(d, counts.get(d, 0)) for d in (first + timedelta(days=i) for i in range(days))]


def db_info(url: str, days: int = 7) -> dict[str, Any]:
    """What the database is: path, extension version and license, schema version, per-table rows and chunks,
    and samples per day for the last `days` days (0: skip that query)."""
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
        info["rows_per_day"] = rows_per_day(conn, days, path=info["path"]) if days > 0 and "samples" in info[
            "tables"] else []
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
    per_day = info.get("rows_per_day") or []
    if per_day:
        fn = "time_bucket" if info["path"] == "timescaledb" else "date_bin"
        lines.append(f"samples per UTC day, last {len(per_day)} days ({fn}):")
        lines += [f"  {day:%Y-%m-%d}{n:>14}" for day, n in per_day]
    return "\n".join(lines)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
