"""TimescaleDB vs plain PostgreSQL: same buckets (time_bucket / date_bin), licensed policies, CLI conversion."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from collector.db import bucket_sql, bucket_start, db_info, detect_path, format_db_info, migrate, rows_per_day
from collector.retention import apply_licensed_policies
from collector.writer import SampleWriter
from core.config import parse_config
from core.record import Quality, Sample
from core.times import to_us
from kpi.networking import networking_timeline

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2024, 3, 1, 8, tzinfo=UTC)
WIDTHS = ("1 minute", "15 minutes", "1 hour", "6 hours", "1 day", "1 week")


def us(dt: datetime) -> int:
    return to_us(dt)


# --------------------------------------------------------------------------- bucket_sql, no database


def test_bucket_sql_names_the_function_of_each_path() -> None:
    assert bucket_sql("timescaledb", "15 minutes") == "time_bucket(interval '15 minutes', ts)"
    assert bucket_sql("plain", "1 hour", "s.ts") == (
        "date_bin(interval '1 hours', s.ts, timestamptz '2000-01-03T00:00:00+00:00')")
    for bad in ("1 month", "0 minutes", "15 minutes'; DROP TABLE samples; --", "hour"):
        with pytest.raises(ValueError):
            bucket_sql("plain", bad)
    with pytest.raises(ValueError):
        bucket_sql("plain", "1 hour", "ts); DROP TABLE samples; --")
    with pytest.raises(ValueError):
        bucket_sql("mysql", "1 hour")


def test_bucket_start_in_python_matches_the_origin() -> None:
    t = datetime(2024, 3, 7, 13, 37, 12, tzinfo=UTC)  # a Thursday
    assert bucket_start(t, "15 minutes") == datetime(2024, 3, 7, 13, 30, tzinfo=UTC)
    assert bucket_start(t, "1 day") == datetime(2024, 3, 7, tzinfo=UTC)
    assert bucket_start(t, "1 week") == datetime(2024, 3, 4, tzinfo=UTC)  # Monday, as time_bucket


# --------------------------------------------------------------------------- both paths, same results

# Irregular instants over 9 days, including bucket edges and a microsecond before one.
INSTANTS = [T0 + timedelta(seconds=s) for s in
            (0, 1, 59, 60, 899, 900, 3599, 3600, 3601, 21599, 21600, 86399, 86400, 200_000, 500_000, 777_777)]
INSTANTS.append(T0 + timedelta(days=2) - timedelta(microseconds=1))


def _expected(width: str) -> list[tuple[datetime, int]]:
    counts: dict[datetime, int] = {}
    for t in INSTANTS:
        b = bucket_start(t, width)
        counts[b] = counts.get(b, 0) + 1
    return sorted(counts.items())


@pytest.mark.integration
@pytest.mark.parametrize("tz", ["UTC", "Asia/Shanghai", "America/New_York"])
def test_bucketed_counts_are_identical_on_both_paths(db: str, tz: str) -> None:
    with psycopg.connect(db) as c:
        c.execute(f"SET TIME ZONE '{tz}'")
        path = detect_path(c)
        with c.cursor().copy("COPY samples (ts, device_id, tag, value) FROM STDIN") as cp:
            for i, t in enumerate(INSTANTS):
                cp.write_row((t, "d1", "t", float(i)))
        for width in WIDTHS:
            got = c.execute(f"SELECT {bucket_sql(path, width)} AS b, count(*) FROM samples GROUP BY 1 ORDER BY 1"
                            ).fetchall()
            assert [(b.astimezone(UTC), n) for b, n in got] == _expected(width), (path, width)
            if path == "timescaledb":  # date_bin is core PostgreSQL: compare the two functions on one database
                plain = c.execute(f"SELECT {bucket_sql('plain', width)} AS b, count(*) FROM samples "
                                  "GROUP BY 1 ORDER BY 1").fetchall()
                assert plain == got, width


PLANT = """
plant: {id: plant-1}
assets:
  - id: line-1
    kind: line
    children:
      - {id: m1, kind: machine, device: d1}
      - {id: m2, kind: machine}
      - {id: m3, kind: machine, device: d3}
      - {id: crane, kind: machine, device: d5, production: false}
devices:
""" + "".join(f"""  - id: {d}
    protocol: modbus
    endpoint: tcp://127.0.0.1:5020
    tags: [{{name: status, address: 40001}}]
""" for d in ("d1", "d3", "d5"))


@pytest.mark.integration
def test_networking_timeline_per_bucket(db: str) -> None:
    cfg = parse_config(PLANT)
    with SampleWriter(db) as w:
        w.write([Sample("d1", "status", us(T0 + timedelta(minutes=5)), 1.0),
                 Sample("d1", "status", us(T0 + timedelta(minutes=70)), 1.0),
                 Sample("d3", "status", us(T0 + timedelta(minutes=75)), 1.0),
                 Sample("d3", "status", us(T0 + timedelta(minutes=150)), None, quality=Quality.BAD),
                 Sample("d5", "status", us(T0 + timedelta(minutes=10)), 1.0),
                 Sample("d1", "status", us(T0 + timedelta(hours=5)), 1.0)],  # outside the period
                [])
    with psycopg.connect(db) as c:
        hourly = networking_timeline(c, cfg, None, T0, T0 + timedelta(hours=3), "1 hour")
        quarter = networking_timeline(c, cfg, "m3", T0 + timedelta(minutes=50), T0 + timedelta(minutes=80),
                                      "15 minutes")
        # The other path's SQL gives the same answer where both functions exist (always date_bin).
        as_plain = networking_timeline(c, cfg, None, T0, T0 + timedelta(hours=3), "1 hour", path="plain")
        with pytest.raises(ValueError):
            networking_timeline(c, cfg, None, T0, T0, "1 hour")
    # 3 production machines (m1, m2 without device, m3); crane is not production.
    assert [(b.start, b.machines_total, b.machines_reporting) for b in hourly] == [
        (T0, 3, 1), (T0 + timedelta(hours=1), 3, 2), (T0 + timedelta(hours=2), 3, 0)]
    assert hourly[1].rate == pytest.approx(2 / 3)
    assert as_plain == hourly
    assert [(b.start, b.machines_reporting) for b in quarter] == [
        (T0 + timedelta(minutes=45), 0), (T0 + timedelta(minutes=60), 0), (T0 + timedelta(minutes=75), 1)]


@pytest.mark.integration
def test_db_info_shows_rows_per_day_for_the_last_week(db: str) -> None:
    now = datetime.now(UTC)
    today = bucket_start(now, "1 day")
    with psycopg.connect(db) as c:
        c.execute("""INSERT INTO samples (ts, device_id, tag, value)
                     SELECT %s - make_interval(days => g), 'd', 't', g FROM generate_series(0, 9) g""",
                  (today + timedelta(hours=1),))
        c.commit()
        per_day = rows_per_day(c, 7, now=now)
    assert [d for d, _ in per_day] == [today - timedelta(days=6 - i) for i in range(7)]
    assert [n for _, n in per_day] == [1] * 7
    info = db_info(db)
    assert info["rows_per_day"] == per_day
    text = format_db_info(info)
    assert ("time_bucket" if info["path"] == "timescaledb" else "date_bin") in text
    assert f"{today:%Y-%m-%d}" in text


# --------------------------------------------------------------------------- licensed policies


@pytest.mark.integration
@pytest.mark.timescaledb_only
def test_apache_license_skips_compression_and_policies_with_a_logged_reason(
        db: str, caplog: pytest.LogCaptureFixture) -> None:
    said: list[str] = []
    with psycopg.connect(db, autocommit=True) as c:
        assert c.execute("SHOW timescaledb.license").fetchone() == ("apache",)
        with caplog.at_level(logging.INFO, logger="collector.retention"):
            report = apply_licensed_policies(c, 30, said.append)
        compressed = c.execute("SELECT compression_enabled FROM timescaledb_information.hypertables "
                               "WHERE hypertable_name = 'samples'").fetchone()
        jobs = c.execute("SELECT count(*) FROM timescaledb_information.jobs WHERE proc_name IN "
                         "('policy_retention', 'policy_compression')").fetchone()
    assert report["license"] == "apache" and report["applied"] == []
    skipped = dict(report["skipped"])
    assert set(skipped) == {"compression of samples (segmentby device_id, tag)", "add_compression_policy samples 7 days",
                            "add_retention_policy samples", "add_retention_policy device_status"}
    assert all("'apache'" in why and "drop_chunks" in why for why in skipped.values())
    assert compressed == (False,) and jobs == (0,)
    assert len(said) == 4 and all(line.startswith("skipped ") for line in said)
    assert sum("skipped" in r.getMessage() and "apache" in r.getMessage() for r in caplog.records) == 4
    # migrate() calls it on the TimescaleDB path and reports the skips.
    out: list[str] = []
    report2 = migrate(db, log=out.append, retention_days=30)
    assert report2.policies is not None and report2.policies["applied"] == []
    assert any("skipped add_retention_policy samples" in line for line in out)


@pytest.mark.integration
@pytest.mark.plain_only
def test_plain_database_skips_policies(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as c:
        report = apply_licensed_policies(c, 30)
    assert report["applied"] == [] and all("plain PostgreSQL" in why for _, why in report["skipped"])
    assert migrate(db, log=lambda _: None, retention_days=30).policies is None


class _Result:
    def __init__(self, row: Any) -> None:
        self.row = row

    def fetchone(self) -> Any:
        return self.row


class _FakeTimescaleConn:
    """Answers the catalog queries as a Timescale-licensed server would; records every statement."""

    def __init__(self, retention_interval_matches: bool | None = None) -> None:
        self.sql: list[str] = []
        self.job = retention_interval_matches

    def execute(self, sql: str, params: Any = None) -> _Result:
        self.sql.append(" ".join(sql.split()))
        if "FROM pg_extension" in sql:
            return _Result((1,))
        if "SHOW timescaledb.license" in sql:
            return _Result(("timescale",))
        if "compression_enabled" in sql:
            return _Result((False,))
        if "timescaledb_information.hypertables" in sql:
            return _Result((1,))
        if "timescaledb_information.jobs" in sql:
            return _Result(None if self.job is None else (self.job,))
        return _Result(None)

    @contextmanager
    def transaction(self) -> Any:
        yield


def test_timescale_license_enables_compression_and_policies() -> None:
    conn = _FakeTimescaleConn()
    report = apply_licensed_policies(conn, 30)  # type: ignore[arg-type]
    text = "\n".join(conn.sql)
    assert "timescaledb.compress_segmentby = 'device_id, tag'" in text
    assert "add_compression_policy('samples'" in text
    assert text.count("add_retention_policy") == 2 and "remove_retention_policy" not in text
    assert report["skipped"] == [] and len(report["applied"]) == 4
    # A registered policy with another interval is replaced; short retention skips the compression policy.
    conn = _FakeTimescaleConn(retention_interval_matches=False)
    report = apply_licensed_policies(conn, 3)  # type: ignore[arg-type]
    text = "\n".join(conn.sql)
    assert text.count("remove_retention_policy") == 2 and "add_compression_policy" not in text
    assert [w for w, _ in report["skipped"]] == ["add_compression_policy samples 7 days"]


# --------------------------------------------------------------------------- CLI conversion


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SHOPFLOOR_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "shopfloor.cli", "db", "migrate", *args], cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


def _state(url: str) -> tuple[int, int, set[str]]:
    with psycopg.connect(url) as c:
        samples = c.execute("SELECT count(*) FROM samples").fetchone()[0]  # type: ignore[index]
        status = c.execute("SELECT count(*) FROM device_status").fetchone()[0]  # type: ignore[index]
        hyper: set[str] = set()
        if c.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone():
            hyper = {r[0] for r in c.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")}
    return samples, status, hyper


@pytest.mark.integration
@pytest.mark.plain_only
def test_cli_conversion_refuses_without_yes_then_converts_with_yes(db: str) -> None:
    with psycopg.connect(db) as c:
        c.execute("""INSERT INTO samples (ts, device_id, tag, value)
                     SELECT now() - make_interval(mins => 10 * g), 'd' || (g % 3), 't', g
                     FROM generate_series(1, 500) g""")
        c.execute("""INSERT INTO device_status (ts, device_id, state)
                     SELECT now() - make_interval(hours => g), 'd1', 'connected' FROM generate_series(1, 20) g""")
    refused = _cli("--timescaledb", "--database-url", db)
    assert refused.returncode == 2
    assert "samples: 500 rows" in refused.stdout and "locked" in refused.stdout and "migrate_data" in refused.stdout
    err = refused.stderr.strip().splitlines()
    assert len(err) == 1 and "pass --yes" in err[0]
    assert _state(db) == (500, 20, set())  # nothing changed

    done = _cli("--timescaledb", "--yes", "--database-url", db)
    assert done.returncode == 0, done.stderr
    assert done.stdout.index("samples: 500 rows") < done.stdout.index("converted with 002_samples.timescaledb.sql")
    samples, status, hyper = _state(db)
    assert (samples, status) == (500, 20)
    assert {"samples", "device_status", "kpi_values"} <= hyper
    again = _cli("--timescaledb", "--database-url", db)  # nothing left to convert: no question asked
    assert again.returncode == 0 and "schema up to date" in again.stdout
