"""Schema and migrations on both paths (plain PostgreSQL and TimescaleDB)."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from collector.db import db_info, format_db_info, load_migrations, migrate, sync_assets
from collector.errors import MigrationError
from core.config import parse_config
from shopfloor.stages import schema_dirs

pytestmark = pytest.mark.integration


def _hypertables(url: str) -> set[str]:
    with psycopg.connect(url) as c:
        if c.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is None:
            return set()
        return {r[0] for r in c.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")}


def test_migrate_twice_applies_nothing_the_second_time(empty_db: str) -> None:
    first = migrate(empty_db, log=lambda _: None)
    second = migrate(empty_db, log=lambda _: None)
    assert "001_samples.sql" in first.applied
    assert second.applied == [] and second.converted == []
    with psycopg.connect(empty_db) as c:
        versions = [r[0] for r in c.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions[:3] == [1, 2, 3] if first.path == "timescaledb" else versions[:2] == [1, 3]


def test_concurrent_migrators_serialise_on_the_advisory_lock(empty_db: str) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            migrate(empty_db, log=lambda _: None)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with psycopg.connect(empty_db) as c:
        assert c.execute("SELECT count(*) FROM schema_migrations WHERE version = 1").fetchone() == (1,)


@pytest.mark.timescaledb_only
def test_samples_and_device_status_are_hypertables_on_the_timescaledb_path(db: str) -> None:
    assert {"samples", "device_status"} <= _hypertables(db)


@pytest.mark.plain_only
def test_plain_path_has_no_extension_and_a_brin_index(db: str) -> None:
    assert _hypertables(db) == set()
    with psycopg.connect(db) as c:
        idx = {r[0] for r in c.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'samples'")}
    assert {"samples_ts_brin", "samples_device_tag_ts_key"} <= idx


def test_plain_copy_of_four_columns_imports_with_defaults(db: str) -> None:
    with psycopg.connect(db) as c:
        with c.cursor().copy("COPY samples (ts, device_id, tag, value) FROM STDIN") as cp:
            cp.write("2024-03-01 08:00:00+00\tpress-01-plc\tparts_total\t17\n")
            cp.write("2024-03-01 08:00:01+00\tpress-01-plc\tparts_total\t18.5\n")
        rows = c.execute("""SELECT value, quality, status_code, historical, gateway_id, boot_epoch, seq,
                                   ingested_at IS NOT NULL FROM samples ORDER BY ts""").fetchall()
    assert rows == [(17.0, "good", 0, False, "", 0, 0, True), (18.5, "good", 0, False, "", 0, 0, True)]


def test_variant_files_apply_only_on_their_path(empty_db: str, tmp_path: Path) -> None:
    (tmp_path / "001_a.sql").write_text("CREATE TABLE a (x int);")
    (tmp_path / "002_b.plain.sql").write_text("CREATE TABLE b_plain (x int);")
    (tmp_path / "003_c.timescaledb.sql").write_text("CREATE TABLE c_ts (x int);")
    report = migrate(empty_db, log=lambda _: None, schema_dirs=[tmp_path])
    expected = ["001_a.sql", "003_c.timescaledb.sql"] if report.path == "timescaledb" else ["001_a.sql", "002_b.plain.sql"]
    assert report.applied == expected


def test_clashing_files_for_one_version_are_refused(tmp_path: Path) -> None:
    (tmp_path / "001_a.sql").write_text("SELECT 1;")
    (tmp_path / "001_a.timescaledb.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="version 001"):
        load_migrations(tmp_path)


@pytest.mark.plain_only
def test_plain_database_converts_to_hypertables_keeping_rows(db: str) -> None:
    with psycopg.connect(db) as c:
        c.execute("INSERT INTO samples (ts, device_id, tag, value) "
                  "SELECT now() - make_interval(hours => g), 'd', 't', g FROM generate_series(1, 100) g")
    said: list[str] = []
    report = migrate(db, timescaledb=True, log=said.append, schema_dirs=schema_dirs())
    assert report.path == "timescaledb"
    assert "002_samples.timescaledb.sql" in report.converted
    assert any("converting" in line for line in said)
    assert {"samples", "device_status"} <= _hypertables(db)
    with psycopg.connect(db) as c:
        assert c.execute("SELECT count(*) FROM samples").fetchone() == (100,)
    assert migrate(db, log=lambda _: None, schema_dirs=schema_dirs()).converted == []


@pytest.mark.timescaledb_only
def test_plain_only_migration_is_refused_on_a_timescaledb_database(db: str) -> None:
    with pytest.raises(MigrationError, match="timescaledb extension"):
        migrate(db, timescaledb=False, log=lambda _: None)


PLANT = """
plant: {id: p1}
assets:
  - id: area-1
    kind: area
    children:
      - id: line-1
        kind: line
        children:
          - {id: m1, kind: machine, device: d1, ideal_cycle_time_s: 2.0}
          - {id: m2, kind: machine, production: false}
devices:
  - id: d1
    protocol: modbus
    endpoint: tcp://127.0.0.1:5020
    tags: [{name: status, address: 40001}]
"""


def test_sync_assets_upserts_the_register_and_deletes_removed_assets(db: str) -> None:
    cfg = parse_config(PLANT)
    with psycopg.connect(db) as c:
        c.execute("INSERT INTO assets (id, kind) VALUES ('gone', 'machine')")
        assert sync_assets(c, cfg) == 4
        rows = c.execute("SELECT id, kind, parent_id, device_id, production, path FROM assets ORDER BY id").fetchall()
    assert rows == [("area-1", "area", None, None, True, ["area-1"]),
                    ("line-1", "line", "area-1", None, True, ["area-1", "line-1"]),
                    ("m1", "machine", "line-1", "d1", True, ["area-1", "line-1", "m1"]),
                    ("m2", "machine", "line-1", None, False, ["area-1", "line-1", "m2"])]


def test_db_info_names_the_path_and_tables(db: str) -> None:
    info = db_info(db)
    assert info["tables"]["samples"]["hypertable"] == (info["path"] == "timescaledb")
    text = format_db_info(info)
    assert f"path: {info['path']}" in text and "samples" in text
