"""Real services on loopback: PostgreSQL (plain and TimescaleDB databases on one server), Mosquitto, free ports.

Environment:
  SHOPFLOOR_TEST_PG      admin URL of the test server (default postgresql://postgres@127.0.0.1:5432/postgres)
  SHOPFLOOR_TEST_BROKER  host:port of an MQTT 5 broker (default: a private mosquitto started on a free port,
                         else 127.0.0.1:1883)
  SHOPFLOOR_NO_TIMESCALEDB=1  run only the plain path (the TimescaleDB params then fail with a clear message
                         unless this is set; CI installs the extension with `make timescaledb`)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

PG_ADMIN = os.environ.get("SHOPFLOOR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def port() -> int:
    return free_port()


def _timescaledb_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as c:
            row = c.execute("SELECT 1 FROM pg_available_extensions WHERE name='timescaledb'").fetchone()
            preload = c.execute("SHOW shared_preload_libraries").fetchone()
            return row is not None and preload is not None and "timescaledb" in preload[0]
    except psycopg.Error:
        return False


def _make_db(flavor: str) -> str:
    name = f"sf_test_{flavor[:2]}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    if flavor == "timescaledb":
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("SET client_min_messages = warning")
            c.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    return url


def drop_db(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["plain", "timescaledb"])
def db_flavor(request: pytest.FixtureRequest) -> str:
    flavor = str(request.param)
    marks = {m.name for m in request.node.iter_markers()}
    if flavor == "timescaledb" and "plain_only" in marks:
        pytest.skip("marked plain_only: behaviour specific to plain PostgreSQL")
    if flavor == "plain" and "timescaledb_only" in marks:
        pytest.skip("marked timescaledb_only: behaviour specific to TimescaleDB")
    if flavor == "timescaledb" and not _timescaledb_available():
        if os.environ.get("SHOPFLOOR_NO_TIMESCALEDB") == "1":
            pytest.skip("SHOPFLOOR_NO_TIMESCALEDB=1: TimescaleDB path not requested")
        pytest.fail("TimescaleDB is not installed on the test server: run `make timescaledb` "
                    "(or set SHOPFLOOR_NO_TIMESCALEDB=1 to test only plain PostgreSQL)")
    return flavor


@pytest.fixture
def empty_db(db_flavor: str) -> Iterator[str]:
    """A fresh, empty database (TimescaleDB extension created on that path); dropped afterwards."""
    url = _make_db(db_flavor)
    try:
        yield url
    finally:
        drop_db(url)


@pytest.fixture
def db(empty_db: str) -> str:
    """A fresh database with the shopfloor schema migrated."""
    from collector.db import migrate
    from shopfloor.stages import schema_dirs

    migrate(empty_db, log=lambda _: None, schema_dirs=schema_dirs())
    return empty_db


@pytest.fixture(scope="session")
def broker() -> Iterator[tuple[str, int]]:
    """An MQTT 5 broker on loopback: a private mosquitto if the binary exists, else the machine's on 1883."""
    env = os.environ.get("SHOPFLOOR_TEST_BROKER")
    if env:
        host, _, p = env.rpartition(":")
        yield host, int(p)
        return
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if exe is None:
        yield "127.0.0.1", 1883
        return
    p = free_port()
    conf = f"/tmp/sf-mosq-{p}.conf"
    with open(conf, "w") as f:
        f.write(f"listener {p} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n"
                "max_inflight_messages 0\npersistence false\n")
    proc = subprocess.Popen([exe, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", p), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield "127.0.0.1", p
    finally:
        proc.terminate()
        proc.wait(5)
        os.unlink(conf)
