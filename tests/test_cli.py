"""The command line as a user meets it: one-line errors for unreachable services, the backfill progress bar,
and nothing but the product in what it prints."""

from __future__ import annotations

import ast
import io
import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import typer

from kpi.job import backfill
from shopfloor.cli.kpi_cmd import chunk_progress
from tests.conftest import free_port
from tests.test_kpi_job import DAY, cfg

ROOT = Path(__file__).resolve().parents[1]
PLANT = str(ROOT / "examples" / "plant.yaml")
SHOPFLOOR = [sys.executable, "-m", "shopfloor.cli"]


def shopfloor(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SHOPFLOOR, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "SHOPFLOOR_DATABASE_URL": "", "SHOPFLOOR_BROKER_URL": ""})


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single `error: ...` line a failed command prints (stderr holds nothing else but a progress label)."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.mark.parametrize("command", [
    ["db", "migrate"],
    ["db", "info"],
    ["collector", "status", "--config", PLANT],
    ["kpi", "run", "--once", "--config", PLANT],
    ["kpi", "backfill", "--config", PLANT, "--from", "2026-01-01T00:00Z", "--to", "2026-01-02T00:00Z"],
    ["collector", "--config", PLANT, "--broker-url", "mqtt://127.0.0.1:1883"],
])
def test_unreachable_database_is_one_line_naming_it(command: list[str]) -> None:
    port = free_port()  # nothing listens there
    result = shopfloor(*command, "--database-url", f"postgresql://postgres:s3cret@127.0.0.1:{port}/plant")
    line = one_error_line(result)
    assert f"cannot reach the database postgres@127.0.0.1:{port}/plant" in line
    assert "check that PostgreSQL is running" in line and "--database-url" in line
    assert "s3cret" not in result.stderr + result.stdout


def test_single_node_edge_with_a_dead_database_is_one_line(tmp_path: Path) -> None:
    port = free_port()
    line = one_error_line(shopfloor("edge", "--config", PLANT, "--buffer", str(tmp_path / "buf.sqlite"),
                                    "--database-url", f"postgresql://postgres@127.0.0.1:{port}/plant"))
    assert f"127.0.0.1:{port}/plant" in line and "check that PostgreSQL is running" in line


def test_database_url_that_is_not_a_url_is_one_line() -> None:
    line = one_error_line(shopfloor("db", "migrate", "--database-url", "plant-db"))
    assert "--database-url is not a PostgreSQL URL" in line and "postgresql://user@host:5432/dbname" in line


@pytest.mark.integration
def test_database_without_schema_says_to_migrate(empty_db: str) -> None:
    line = one_error_line(shopfloor("collector", "status", "--config", PLANT, "--database-url", empty_db))
    assert "has no Shopfloor schema" in line and "shopfloor db migrate" in line


@pytest.mark.parametrize("command", [["edge", "--config", PLANT], ["collector", "--database-url",
                                                                   "postgresql://postgres@127.0.0.1:1/x"]])
def test_bad_broker_url_is_one_line(command: list[str], tmp_path: Path) -> None:
    line = one_error_line(shopfloor(*command, "--broker-url", "http://broker:1883"))
    assert "broker URL must be mqtt://host:1883 or mqtts://host:8883" in line


def wait_for_line(proc: subprocess.Popen[str], pattern: str, timeout: float) -> str:
    """Read the process's stderr until a line matches; the line (or fail with what was read)."""
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + timeout
    os.set_blocking(proc.stderr.fileno(), False)
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
            continue
        seen.append(line)
        if re.search(pattern, line):
            return line
    raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(seen)}")


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.stderr is not None
    os.set_blocking(proc.stderr.fileno(), True)
    rest = proc.stderr.read()
    assert "Traceback" not in rest, rest
    return rest


@pytest.mark.integration
@pytest.mark.plain_only
def test_collector_with_a_dead_broker_says_which_and_keeps_trying(db: str) -> None:
    port = free_port()
    proc = subprocess.Popen([*SHOPFLOOR, "collector", "--database-url", db, "--broker-url",
                             f"mqtt://127.0.0.1:{port}"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, cwd=ROOT)
    try:
        line = wait_for_line(proc, "event=broker_unreachable", 30)
        assert f"mqtt://127.0.0.1:{port}" in line and "--broker-url" in line
        assert proc.poll() is None  # a service keeps retrying: the broker may come up later
    finally:
        stop(proc)


def test_edge_with_a_dead_broker_says_which_and_keeps_buffering(tmp_path: Path) -> None:
    port = free_port()
    plant = tmp_path / "plant.yaml"
    plant.write_text("plant: {id: p1}\n")  # no devices: only the uplink matters here
    proc = subprocess.Popen([*SHOPFLOOR, "edge", "--config", str(plant), "--buffer", str(tmp_path / "buf.sqlite"),
                             "--broker-url", f"mqtt://127.0.0.1:{port}"], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        line = wait_for_line(proc, "event=broker_unreachable", 30)
        assert f"mqtt://127.0.0.1:{port}" in line and "check that the MQTT broker is running" in line
        assert proc.poll() is None
    finally:
        stop(proc)


@pytest.mark.integration
@pytest.mark.plain_only
def test_backfill_progress_bar_moves_by_chunks_done_of_total(db: str) -> None:
    out = io.StringIO()
    seen: list[tuple[int, int | None, int, int]] = []
    with typer.progressbar(length=1, label="backfill", file=out) as bar:
        advance = chunk_progress(bar)

        def progress(done: int, total: int) -> None:
            advance(done, total)
            seen.append((bar.pos, bar.length, done, total))

        backfill(db, cfg(), DAY, DAY + timedelta(days=3), progress=progress)
    total = seen[-1][3]
    assert total >= 6 and len(seen) == total  # 2 networked machines x 3 days, one call per chunk
    positions = [pos for pos, _, _, _ in seen]
    assert positions == sorted(positions) and positions == [done for _, _, done, _ in seen]
    assert all(length == total for _, length, _, _ in seen)
    assert seen[0][0] / total < 0.5 and positions[-1] == total  # no jump to 100 % after the first chunk


PLANNING_WORDS = re.compile(r"\b(issues?|coming|not built|later|todo|tbd|not yet implemented)\b", re.IGNORECASE)


def test_what_the_cli_and_demo_print_speaks_of_the_product_only() -> None:
    hits = []
    for path in sorted((ROOT / "shopfloor").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):  # docstrings too: they are the commands' --help
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                hits += [f"{path.relative_to(ROOT)}:{node.lineno}: {m.group(0)!r}"
                         for m in PLANNING_WORDS.finditer(node.value)]
    assert hits == []


def test_every_command_has_help() -> None:
    for command in (["--help"], ["edge", "--help"], ["collector", "status", "--help"], ["kpi", "backfill", "--help"],
                    ["db", "migrate", "--help"], ["demo", "--help"], ["simulate", "--help"]):
        result = shopfloor(*command)
        assert result.returncode == 0 and "Usage:" in result.stdout, (command, result.stderr)
