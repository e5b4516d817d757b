"""`shopfloor api` (serve, --no-auth banner), `shopfloor api token create|list|revoke`, `shopfloor export`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import psycopg
import pytest

from collector.writer import SampleWriter
from tests.api_data import DAY, END, PLANT, events, samples
from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.plain_only]
SHOPFLOOR = [sys.executable, "-m", "shopfloor.cli"]


def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([*SHOPFLOOR, *args], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "SHOPFLOOR_DATABASE_URL": ""})
    assert (p.returncode == 0) == ok, (args, p.returncode, p.stdout, p.stderr)
    return p


def test_tokens_are_printed_once_stored_as_hashes_and_revocable(db: str, tmp_path: Path) -> None:
    cfg = tmp_path / "plant.yaml"
    cfg.write_text(PLANT)
    p = run("api", "token", "create", "--database-url", db, "--role", "certifier", "--scope", "line-1",
            "--expires", "30d", "--config", str(cfg), "--name", "auditor")
    token = p.stdout.strip()
    assert token.startswith("sf_") and len(token) > 40 and "shown once" in p.stderr
    with psycopg.connect(db) as conn:
        rows = conn.execute("SELECT token_sha256, prefix, role, scope FROM api_tokens").fetchall()
    assert len(rows) == 1 and token not in str(rows) and rows[0][1:] == (token[:8], "certifier", "line-1")
    listing = run("api", "token", "list", "--database-url", db).stdout
    assert "certifier" in listing and "auditor" in listing and token not in listing
    assert "revoked" in run("api", "token", "revoke", token, "--database-url", db).stdout
    again = run("api", "token", "revoke", token, "--database-url", db, ok=False)
    assert again.stderr.strip().count("\n") == 0 and "no active token" in again.stderr


@pytest.mark.parametrize("args, words", [
    (["--role", "boss"], "unknown role 'boss'"),
    (["--role", "certifier"], "needs --scope"),
    (["--role", "viewer", "--expires", "soon"], "neither a duration"),
    (["--role", "viewer", "--expires", "2001-01-01"], "in the past"),
])
def test_bad_token_requests_get_one_line_errors(db: str, args: list[str], words: str) -> None:
    p = run("api", "token", "create", "--database-url", db, *args, ok=False)
    assert words in p.stderr and p.stderr.strip().count("\n") == 0 and "Traceback" not in p.stderr


def test_token_scope_is_checked_against_the_plant_file_when_given(db: str, tmp_path: Path) -> None:
    cfg = tmp_path / "plant.yaml"
    cfg.write_text(PLANT)
    args = ("api", "token", "create", "--database-url", db, "--role", "viewer", "--scope", "line-9")
    p = run(*args, "--config", str(cfg), ok=False)
    assert "--scope 'line-9' is not the plant id or an asset id" in p.stderr and "line-1" in p.stderr
    assert p.stderr.strip().count("\n") == 0 and "Traceback" not in p.stderr
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM api_tokens").fetchone() == (0,)
    p = run(*args)
    assert "not checked" in p.stderr and p.stdout.strip().startswith("sf_")


def test_no_auth_server_prints_the_banner_and_serves_without_tokens(db: str, tmp_path: Path) -> None:
    cfg = tmp_path / "plant.yaml"
    cfg.write_text(PLANT)
    port = free_port()
    proc = subprocess.Popen([*SHOPFLOOR, "api", "--config", str(cfg), "--database-url", db, "--port", str(port),
                             "--no-auth"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/assets", timeout=2)
                break
            except httpx.TransportError:
                assert time.time() < deadline and proc.poll() is None, "server did not start"
                time.sleep(0.2)
        assert r.status_code == 200 and r.json()["plant_id"] == "plant-1"
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["database"] == "reachable"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert "AUTHENTICATION IS OFF" in err


def test_export_command_writes_parquet_and_a_manifest(db: str, tmp_path: Path) -> None:
    import json

    import pyarrow.parquet as pq

    cfg = tmp_path / "plant.yaml"
    cfg.write_text(PLANT)
    with SampleWriter(db) as w:
        w.write(samples(), events())
    out = tmp_path / "export"
    run("export", "--config", str(cfg), "--database-url", db, "--scope", "line-1", "--from", DAY.isoformat(),
        "--to", END.isoformat(), "--out", str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["devices"] == ["d1"] and manifest["files"][0]["rows"] == 288
    assert pq.read_table(out / "samples.parquet").num_rows == 288
    bad = run("export", "--config", str(cfg), "--database-url", db, "--scope", "nowhere", "--from",
              DAY.isoformat(), "--to", END.isoformat(), "--out", str(out), ok=False)
    assert "unknown scope 'nowhere'" in bad.stderr and "Traceback" not in bad.stderr
