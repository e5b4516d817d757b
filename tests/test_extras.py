"""Installs by role: a gateway runs `shopfloor edge` without the KPI or web stack, `--help` needs only the core,
and a command whose extra is missing says which one to install.

A missing extra is played by a `sitecustomize` on PYTHONPATH that makes importing the named modules fail and
records every attempt, so a test also sees an import that some code caught and hid.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import venv
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml

from core.record import decode_batch
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
PLANT = str(ROOT / "examples" / "plant.yaml")
KPI_AND_WEB = ("numba", "numpy", "llvmlite", "fastapi", "starlette", "uvicorn", "psycopg_pool", "pyarrow",
               "prometheus_client", "jinja2", "pandas", "polars")
EVERY_EXTRA = (*KPI_AND_WEB, "asyncua", "pymodbus", "paho", "psycopg", "google", "cryptography", "serial")

BLOCKER = '''
import os, sys
BLOCKED = set(os.environ["SHOPFLOOR_TEST_BLOCK"].split(","))
LOG = os.environ["SHOPFLOOR_TEST_BLOCK_LOG"]

class Blocker:
    """As if the module were not installed."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            with open(LOG, "a") as f:
                f.write(name + "\\n")
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Blocker())
'''


class Without:
    """Runs `python -m shopfloor.cli ...` as if the named modules were not installed."""

    def __init__(self, tmp: Path, modules: tuple[str, ...]) -> None:
        (tmp / "blocker").mkdir(exist_ok=True)
        (tmp / "blocker" / "sitecustomize.py").write_text(BLOCKER)
        self.log = tmp / "blocked-imports.txt"
        self.env = {**os.environ, "PYTHONPATH": str(tmp / "blocker"), "SHOPFLOOR_TEST_BLOCK": ",".join(modules),
                    "SHOPFLOOR_TEST_BLOCK_LOG": str(self.log), "SHOPFLOOR_DATABASE_URL": "",
                    "SHOPFLOOR_BROKER_URL": ""}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "shopfloor.cli", *args], capture_output=True, text=True,
                              timeout=60, cwd=ROOT, env=self.env)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "shopfloor.cli", *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT, env=self.env)

    def attempts(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []


def test_the_blocker_blocks(tmp_path: Path) -> None:
    w = Without(tmp_path, ("numba",))
    r = subprocess.run([sys.executable, "-c", "import numba"], capture_output=True, text=True, env=w.env)
    assert r.returncode != 0 and "No module named 'numba'" in r.stderr and w.attempts() == ["numba"]


def test_help_needs_only_the_core(tmp_path: Path) -> None:
    w = Without(tmp_path, EVERY_EXTRA)
    for command in (["--help"], ["edge", "--help"], ["kpi", "run", "--help"], ["config", "check", PLANT]):
        r = w.run(*command)
        assert r.returncode == 0, (command, r.stderr)
    assert w.attempts() == []


@pytest.mark.parametrize(("blocked", "command", "extra"), [
    (("numba",), ["kpi", "run", "--once", "--config", PLANT, "--database-url", "postgresql://h/x"], "kpi"),
    (("psycopg",), ["db", "migrate", "--database-url", "postgresql://h/x"], "collector"),
    (("paho",), ["collector", "--database-url", "postgresql://h/x", "--broker-url", "mqtt://h:1883"], "collector"),
    (("asyncua",), ["edge", "--config", PLANT, "--broker-url", "mqtt://127.0.0.1:1"], "edge"),
    (("psycopg",), ["edge", "--config", PLANT, "--database-url", "postgresql://h/x"], "collector"),
])
def test_command_without_its_extra_names_the_extra(tmp_path: Path, blocked: tuple[str, ...], command: list[str],
                                                   extra: str) -> None:
    r = Without(tmp_path, blocked).run(*command, *(["--buffer", str(tmp_path / "b.sqlite")]
                                                   if command[0] == "edge" else []))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"error: '{'shopfloor ' + command[0]}' needs the {extra} extra (module {blocked[0]!r} is missing): "
        f"pip install 'shopfloor[{extra}]'")


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`shopfloor simulate` with one Modbus TCP and one OPC UA machine on loopback; yields its plant file."""
    plant, mb, ua = tmp_path_factory.mktemp("factory") / "plant.yaml", free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "shopfloor.cli", "simulate", "--modbus", "1", "--opcua", "1",
                             "--mqtt", "0", "--sparkplug", "0", "--modbus-port", str(mb), "--opcua-port", str(ua),
                             "--write-config", str(plant), "--log-level", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.monotonic() + 30
    for p in (mb, ua):
        while True:
            try:
                socket.create_connection(("127.0.0.1", p), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "simulator did not start"
                time.sleep(0.1)
    try:
        yield plant
    finally:
        proc.terminate()
        proc.wait(20)


def stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    assert proc.returncode == 0 and "Traceback" not in err, err
    return err


@pytest.mark.integration
def test_gateway_install_runs_the_edge_in_uplink_mode(factory: Path, broker: tuple[str, int], tmp_path: Path) -> None:
    """`.[edge]`: no numba, no web stack, no psycopg; samples from Modbus and OPC UA reach the broker."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    devices: set[str] = set()
    got = threading.Event()

    expected = {d["id"] for d in yaml.safe_load(factory.read_text())["devices"]}
    assert {d["protocol"] for d in yaml.safe_load(factory.read_text())["devices"]} == {"modbus", "opcua"}

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if not msg.topic.endswith("/gw-extras/samples"):
            return
        _, _, rows, _, _ = decode_batch(msg.payload)
        devices.update(r[0] for r in rows if r[5] == "good")
        if devices >= expected:
            got.set()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTProtocolVersion.MQTTv5)
    sub.on_message = on_message
    sub.connect(*broker)
    sub.subscribe("#", qos=1)
    sub.loop_start()
    w = Without(tmp_path, (*KPI_AND_WEB, "psycopg"))
    edge = w.popen("edge", "--config", str(factory), "--broker-url", f"mqtt://{broker[0]}:{broker[1]}",
                   "--gateway-id", "gw-extras", "--buffer", str(tmp_path / "buf.sqlite"))
    try:
        assert got.wait(45), f"samples seen from {devices} only"
    finally:
        err = stop(edge)
        sub.loop_stop()
        sub.disconnect()
    assert w.attempts() == [], f"the gateway imported {w.attempts()}; stderr:\n{err}"


@pytest.mark.integration
@pytest.mark.plain_only
def test_edge_and_collector_install_runs_single_node_mode(db: str, factory: Path, tmp_path: Path) -> None:
    """`.[edge,collector]`: no numba, no web stack; samples from Modbus and OPC UA reach the database."""
    w = Without(tmp_path, KPI_AND_WEB)
    edge = w.popen("edge", "--config", str(factory), "--database-url", db, "--buffer", str(tmp_path / "buf.sqlite"))
    deadline, devices = time.monotonic() + 45, 0
    try:
        while devices < 2 and time.monotonic() < deadline and edge.poll() is None:
            time.sleep(0.5)
            with psycopg.connect(db) as c:
                row = c.execute("SELECT count(DISTINCT device_id) FROM samples WHERE quality = 'good'").fetchone()
                devices = row[0] if row else 0
    finally:
        err = stop(edge)
    assert devices == 2, err
    assert w.attempts() == [], f"single-node mode imported {w.attempts()}; stderr:\n{err}"


@pytest.mark.slow
def test_fresh_gateway_venv_has_help_and_no_kpi_stack(tmp_path: Path) -> None:
    """`pip install '.[edge]'` into a new venv (from PyPI): --help works, numba and FastAPI are not there."""
    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "var", "build", "*.egg-info",
                                                                "__pycache__", ".mypy_cache", ".ruff_cache"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py, sf = env_dir / "bin" / "python", env_dir / "bin" / "shopfloor"
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-compile", "--disable-pip-version-check", f"{src}[edge]"], capture_output=True, text=True,
                         timeout=600)
    assert pip.returncode == 0, pip.stderr[-2000:]
    for command in (["--help"], ["edge", "--help"], ["config", "check", str(src / "examples" / "plant.yaml")]):
        r = subprocess.run([str(sf), *command], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (command, r.stderr)
    r = subprocess.run([str(sf), "kpi", "run", "--once", "--config", str(src / "examples" / "plant.yaml"),
                        "--database-url", "postgresql://h/x"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "pip install 'shopfloor[kpi]'" in r.stderr, r.stderr
    missing = subprocess.run([str(py), "-c", "import importlib.util as u; print([m for m in ('numba', 'numpy', "
                              "'fastapi', 'psycopg_pool', 'psycopg') if u.find_spec(m)])"],
                             capture_output=True, text=True, check=True)
    assert missing.stdout.strip() == "[]"
