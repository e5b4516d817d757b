"""Deployment files in deploy/: each one parses, says what it must, and agrees with the CLI and the schema.

Docker has no engine on the test machines, so compose.yaml, the Dockerfile and the Kubernetes manifests are
checked statically. The most useful static check is drift: every `shopfloor ...` command line in compose,
Kubernetes and systemd is checked against what `shopfloor ... --help` really offers. The broker config is
tested for real: Mosquitto is started with deploy/mosquitto/mosquitto.conf and the ACL file unchanged (only
ports and file paths swapped for temporary ones) and must refuse anonymous clients and keep each gateway on
its own topics. The Grafana queries run against a freshly migrated database.
"""

from __future__ import annotations

import base64
import configparser
import datetime as dt
import fnmatch
import hashlib
import importlib.util
import ipaddress
import json
import os
import queue
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import PG_ADMIN, free_port

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
SHOPFLOOR = str(Path(sys.executable).parent / "shopfloor")
GRAFANA_TABLES = {"samples", "device_status", "kpi_values", "assets", "ingest_ledger", "quarantine"}


# --------------------------------------------------------------------------- the CLI as --help describes it


@dataclass(frozen=True)
class CliHelp:
    """What one `shopfloor ... --help` page offers."""

    options: dict[str, bool]  # "--config" / "-c" -> takes a value
    commands: frozenset[str]
    takes_arguments: bool


# Renders `shopfloor <path> --help` for every command of the real CLI in one interpreter (one subprocess
# instead of one per page: each start costs most of a second). The pages are parsed below exactly as printed.
_HELP_PAGES = r"""
import contextlib, io, json, sys
import typer
from shopfloor.cli import app, main

def walk(cmd, path):
    yield path
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from walk(sub, (*path, name))

pages = {}
for path in walk(typer.main.get_command(app), ()):
    buf = io.StringIO()
    sys.argv = ["shopfloor", *path, "--help"]
    with contextlib.redirect_stdout(buf):
        try:
            main()
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
    pages[" ".join(path)] = buf.getvalue()
sys.stdout.write(json.dumps(pages))
"""


@cache
def help_pages() -> dict[str, str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    out = subprocess.run(
        [sys.executable, "-c", _HELP_PAGES], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT
    )
    assert out.returncode == 0, f"rendering `shopfloor ... --help` failed: {out.stderr.strip()}"
    pages: dict[str, str] = json.loads(out.stdout)
    return pages


@cache
def cli_help(path: tuple[str, ...]) -> CliHelp:
    page = help_pages().get(" ".join(path))
    assert page is not None, f"`shopfloor {' '.join(path)}` is not a command"
    options: dict[str, bool] = {}
    commands: set[str] = set()
    takes_arguments = False
    section = ""
    for line in page.splitlines():
        title = re.match(r"^\s*[╭+]─+ (\w+) ", line)
        if title:
            section = title.group(1)
            continue
        row = re.match(r"^\s*│ (.*)$", line)
        if not row:
            continue
        text = row.group(1)
        if section == "Options" and re.match(r"(\*\s+)?-", text):
            tokens = text.lstrip("* ").split()
            names = []
            for tok in tokens:
                if not re.fullmatch(r"--?[\w-]+", tok):
                    break
                names.append(tok)
            kind = tokens[len(names)] if len(tokens) > len(names) else "<bool>"
            for n in names:
                options[n] = kind != "<bool>"
        elif section == "Commands" and re.match(r"\S", text):
            commands.add(text.split()[0])
        elif section == "Arguments" and text.strip():
            takes_arguments = True
    assert "--help" in options, f"could not read the options of `shopfloor {' '.join(path)} --help`"
    return CliHelp(options, frozenset(commands), takes_arguments)


def cli_problems(argv: list[str]) -> list[str]:
    """What is wrong with a `shopfloor ...` command line, judged by the CLI's own --help."""
    if Path(argv[0]).name != "shopfloor":
        return [f"does not start with shopfloor: {argv}"]
    path: list[str] = []
    rest = list(argv[1:])
    while rest and not rest[0].startswith("-") and rest[0] in cli_help(tuple(path)).commands:
        path.append(rest.pop(0))
    h = cli_help(tuple(path))
    where = "shopfloor " + " ".join(path)
    problems = []
    if h.commands and set(h.options) == {"--help"}:
        problems.append(f"`{where}` needs a subcommand ({', '.join(sorted(h.commands))}), got {rest[:1]}")
    i = 0
    while i < len(rest):
        tok = rest[i]
        if tok.startswith("-"):
            name, eq, _ = tok.partition("=")
            if name not in h.options:
                problems.append(f"`{where}` has no option {name} (it has {', '.join(sorted(h.options))})")
            elif h.options[name] and not eq:
                i += 1
                if i >= len(rest):
                    problems.append(f"`{where} {name}` needs a value")
        elif not h.takes_arguments:
            problems.append(f"`{where}` takes no argument {tok!r}")
        i += 1
    return problems


def test_cli_help_parser_reads_options_commands_and_rejects_drift() -> None:
    direct = subprocess.run(
        [SHOPFLOOR, "kpi", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"},
    )
    assert (
        direct.returncode == 0
        and "--interval-s" in direct.stdout
        and "--interval-s" in help_pages()["kpi run"]
    )
    assert "--broker-url" in cli_help(("edge",)).options and "browse" in cli_help(("edge",)).commands
    assert cli_help(("kpi", "run")).options["--once"] is False
    assert cli_help(("kpi", "run")).options["--interval-s"] is True
    assert cli_problems(["shopfloor", "kpi", "run", "--config", "p.yaml", "--once"]) == []
    assert cli_problems(["shopfloor", "kpi", "run", "--colour", "x"])  # unknown option
    assert cli_problems(["shopfloor", "kpi"])  # a group without a subcommand
    assert cli_problems(["shopfloor", "db", "migrate", "stray"])  # takes no argument
    assert cli_problems(["shopfloor", "config", "check", "plant.yaml"]) == []


# --------------------------------------------------------------------------- compose


_INTERP = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:\?|:-|\?|-)(?P<arg>[^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose-style interpolation for the checks: defaults as written, required values as a placeholder."""

    def sub(m: re.Match[str]) -> str:
        if m.group("op") in (":-", "-"):
            return m.group("arg")
        return f"<{m.group('name')}>"

    return _INTERP.sub(sub, value.replace("$$", "\0")).replace("\0", "$")


@cache
def compose() -> dict[str, Any]:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict)
    return doc


def shopfloor_services() -> dict[str, dict[str, Any]]:
    """Services that run the shopfloor image (its ENTRYPOINT is `shopfloor`)."""
    return {
        n: s
        for n, s in compose()["services"].items()
        if "build" in s or "SHOPFLOOR_IMAGE" in s.get("image", "")
    }


def volume_targets(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (named volume or host path) for every short-syntax mount."""
    out = {}
    for v in service.get("volumes", []):
        parts = interpolate(v).split(":")
        out[parts[1]] = parts[0]
    for t in service.get("tmpfs", []):
        out[t] = "tmpfs"
    return out


def test_compose_has_the_services_with_healthchecks_restart_policies_and_images() -> None:
    services = compose()["services"]
    for name in ("timescaledb", "mosquitto", "migrate", "collector", "edge", "kpi", "api", "simulate"):
        assert name in services, f"compose.yaml lacks service {name}"
    assert re.fullmatch(r"timescale/timescaledb:2\.\d+\.\d+-pg16", services["timescaledb"]["image"])
    assert services["mosquitto"]["image"] == "eclipse-mosquitto:2"
    for name in ("timescaledb", "mosquitto", "collector", "edge", "kpi", "api"):
        assert services[name]["restart"] in ("always", "unless-stopped"), name
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    assert services["migrate"]["restart"] == "no"
    assert "simulate" in services["simulate"]["profiles"]
    for name, s in shopfloor_services().items():
        assert (
            s["build"]["dockerfile"] == "deploy/Dockerfile"
            and (DEPLOY / s["build"]["context"]).resolve() == ROOT
        )
        assert isinstance(s["command"], list), f"{name}: command as a list (no shell in between)"


def test_compose_collectors_scale_and_start_after_migration() -> None:
    c = compose()["services"]["collector"]
    assert c["deploy"]["replicas"] == 2
    assert "container_name" not in c and "hostname" not in c, "replicas need distinct names (MQTT client ids)"
    assert c["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert (
        compose()["services"]["kpi"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    )
    assert "depends_on" not in compose()["services"]["edge"], (
        "the edge must buffer even while the broker is down"
    )


def test_compose_keeps_the_database_and_the_edge_buffer_on_named_volumes() -> None:
    services, named = compose()["services"], set(compose()["volumes"])
    assert volume_targets(services["timescaledb"])["/var/lib/postgresql/data"] in named
    edge = services["edge"]
    buffer = edge["command"][edge["command"].index("--buffer") + 1]
    mounts = {t: s for t, s in volume_targets(edge).items() if s in named}
    assert any(buffer.startswith(t.rstrip("/") + "/") for t in mounts), (
        f"edge buffer {buffer} is not on a volume"
    )
    assert int(str(edge["stop_grace_period"]).rstrip("s")) >= 20, "give the edge time to flush on SIGTERM"


def test_compose_bind_mounts_exist_and_cover_the_broker_config_paths() -> None:
    for name, s in compose()["services"].items():
        for source in volume_targets(s).values():
            if source.startswith((".", "/")) and "<" not in source:
                assert (DEPLOY / source).exists(), f"{name}: bind mount source {source} does not exist"
    mounts = volume_targets(compose()["services"]["mosquitto"])
    for key in ("cafile", "certfile", "keyfile", "password_file", "acl_file", "persistence_location"):
        for value in mosquitto_values(key):
            assert any(value.startswith(t.rstrip("/") + "/") or value == t for t in mounts), (
                f"mosquitto.conf {key} {value} is not mounted in the mosquitto service"
            )


def url_passwords(value: str) -> list[str]:
    """The password part of every user:password@ URL in value, with ${...} interpolations kept whole."""
    tokens = [m.group(0) for m in _INTERP.finditer(value)]
    masked = _INTERP.sub(lambda m: f"\0{tokens.index(m.group(0))}\0", value)
    found = re.findall(r"://[^:/@\s]+:([^@\s]+)@", masked)
    return [re.sub(r"\0(\d+)\0", lambda m: tokens[int(m.group(1))], pw) for pw in found]


def test_url_passwords_sees_through_interpolation() -> None:
    url = "mqtts://${GW:-gw-1}:${PW:?set PW in deploy/.env}@mosquitto:8883"
    assert url_passwords(url) == ["${PW:?set PW in deploy/.env}"]
    assert url_passwords("postgresql://u:hunter2@db/x") == ["hunter2"]


def test_compose_secrets_come_from_required_environment_variables() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    for name, s in compose()["services"].items():
        env = s.get("environment", {})
        assert isinstance(env, dict), f"{name}: environment as a mapping"
        for key, value in env.items():
            value = str(value)
            if re.search(r"PASSWORD|SECRET|TOKEN", key):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+(:\?[^}]+|:-)\}", value), (
                    f"{name}.{key} must be ${{VAR:?...}}"
                )
            for pw in url_passwords(value):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]+\}", pw), (
                    f"{name}.{key}: URL password must be ${{VAR:?}}"
                )
        for arg in s.get("command", []) if isinstance(s.get("command"), list) and name != "mosquitto" else []:
            assert not re.search(r"://[^/\s]*@", arg), f"{name}: credentials on the command line ({arg})"
    assert not re.search(r"(?i)password\s*[:=]\s*[\"']?[A-Za-z0-9]{6,}[\"']?\s*$", text, re.M)


def test_every_required_compose_variable_is_in_the_env_example() -> None:
    text = "\n".join(
        ln for ln in (DEPLOY / "compose.yaml").read_text().splitlines() if not ln.lstrip().startswith("#")
    )
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    example = (DEPLOY / "compose.env.example").read_text()
    missing = sorted(v for v in required if not re.search(rf"(?m)^#?\s*{v}=", example))
    assert required and not missing, f"compose.env.example does not mention {missing}"


def test_compose_commands_match_the_cli() -> None:
    checked = set()
    for name, s in shopfloor_services().items():
        argv = ["shopfloor", *(interpolate(a) for a in s["command"])]
        assert cli_problems(argv) == [], f"compose service {name}"
        checked.add(" ".join(argv[1:3]))
        test = s.get("healthcheck", {}).get("test", [])
        if "shopfloor-healthcheck" in test:
            assert test[2] in ("tcp", "fresh", "db", "http"), f"{name}: unknown healthcheck mode {test[2]}"
    for expected in ("db migrate", "kpi run", "api --config"):
        assert any(c.startswith(expected) for c in checked), expected
    assert any(c.startswith(("collector", "edge", "simulate")) for c in checked)


def test_mosquitto_healthcheck_reads_what_the_health_listener_allows() -> None:
    test = [interpolate(a) for a in compose()["services"]["mosquitto"]["healthcheck"]["test"]]
    topic = test[test.index("-t") + 1]
    assert test[test.index("-p") + 1] == "1883" and topic == "$SYS/broker/uptime"
    assert f"topic read {topic}" in (DEPLOY / "mosquitto" / "acl.health").read_text()


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_lines() -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_dockerfile_is_slim_non_root_and_copies_every_package() -> None:
    lines = dockerfile_lines()
    assert lines[0] == "FROM python:3.11-slim"
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert 'ENTRYPOINT ["shopfloor"]' in lines
    assert any(re.search(r"pip install '?\.(\[all\])?'?(\s|$)", ln) for ln in lines)
    copied = []
    for ln in lines:
        if ln.startswith("COPY "):
            srcs = [a for a in ln.split()[1:-1] if not a.startswith("--")]
            for src in srcs:
                assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
            copied += srcs
    # every top-level package that pyproject's packages.find picks up is in the image
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"][
        "include"
    ]
    for d in ROOT.iterdir():
        if (d / "__init__.py").exists() and any(fnmatch.fnmatch(d.name, pat) for pat in include):
            assert d.name in copied, f"package {d.name}/ is not copied into the image"
    assert any("/var/lib/shopfloor" in ln and "chown" in ln for ln in lines), "buffer dir owned by the user"


def test_the_files_the_dockerfile_copies_build_a_complete_wheel(tmp_path: Path) -> None:
    """`pip install .` inside the image sees only what the Dockerfile copies: build a wheel from just that."""
    stage = tmp_path / "src"
    stage.mkdir()
    for ln in dockerfile_lines():
        if ln.startswith("COPY ") and ln.split()[-1].startswith("./"):
            for src in ln.split()[1:-1]:
                s = ROOT / src
                if s.is_dir():
                    shutil.copytree(s, stage / src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    shutil.copy(s, stage / src)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(stage),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if out.returncode != 0 and "No module named" in out.stderr:
        pytest.skip(f"no offline wheel build in this venv: {out.stderr.strip().splitlines()[-1]}")
    assert out.returncode == 0, out.stderr
    names = zipfile.ZipFile(next((tmp_path / "dist").glob("shopfloor-*.whl"))).namelist()
    schema = sorted(p.name for p in (ROOT / "collector" / "schema").glob("*.sql"))
    assert schema and all(f"collector/schema/{n}" in names for n in schema), (
        "migrations missing from the image"
    )
    assert any(n.endswith("entry_points.txt") for n in names)


# --------------------------------------------------------------------------- healthcheck script


@cache
def healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("shopfloor_healthcheck", DEPLOY / "healthcheck.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_healthcheck_tcp_sees_an_established_connection() -> None:
    hc = healthcheck()
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            conn, _ = srv.accept()
            with conn:
                assert hc.main(["tcp", str(port)]) == 0
    assert hc.main(["tcp", str(free_port())]) == 1
    assert hc.main(["tcp"]) == 2


def test_healthcheck_fresh_follows_the_buffer_and_its_wal(tmp_path: Path) -> None:
    hc = healthcheck()
    buf = tmp_path / "buffer.sqlite"
    assert hc.main(["fresh", "60", str(buf)]) == 1
    buf.write_bytes(b"x")
    old = time.time() - 3600
    os.utime(buf, (old, old))
    assert hc.main(["fresh", "60", str(buf)]) == 1
    (tmp_path / "buffer.sqlite-wal").write_bytes(b"x")
    assert hc.main(["fresh", "60", str(buf)]) == 0


def test_healthcheck_http_wants_a_200_from_the_path() -> None:
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200 if self.path == "/healthz" else 503)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    hc = healthcheck()
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as srv:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        port = str(srv.server_address[1])
        try:
            assert hc.main(["http", port, "/healthz"]) == 0
            assert hc.main(["http", port, "/down"]) == 1
        finally:
            srv.shutdown()
    assert hc.main(["http", str(free_port()), "/healthz"]) == 1
    assert hc.main(["http", port]) == 2


@pytest.mark.integration
def test_healthcheck_db_connects_with_the_environment_url(monkeypatch: pytest.MonkeyPatch) -> None:
    hc = healthcheck()
    monkeypatch.setenv("SHOPFLOOR_DATABASE_URL", PG_ADMIN)
    assert hc.main(["db"]) == 0
    monkeypatch.setenv("SHOPFLOOR_DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    assert hc.main(["db"]) == 1
    monkeypatch.delenv("SHOPFLOOR_DATABASE_URL")
    assert hc.main(["db"]) == 1


# --------------------------------------------------------------------------- systemd


UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def read_unit(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(path.read_text())
    return cp


def test_systemd_units_exist() -> None:
    assert sorted(u.name for u in UNITS) == [
        "shopfloor-api.service",
        "shopfloor-collector.service",
        "shopfloor-edge.service",
        "shopfloor-kpi.service",
    ]


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_unit_is_hardened_restarts_and_reads_secrets_from_the_env_file(unit: Path) -> None:
    s = read_unit(unit)["Service"]
    expect = {
        "EnvironmentFile": "/etc/shopfloor/shopfloor.env",
        "Restart": "always",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/shopfloor",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "KillSignal": "SIGTERM",
    }
    for key, value in expect.items():
        assert s.get(key) == value, f"{unit.name}: {key}={s.get(key)!r}, want {value!r}"
    assert int(s["RestartSec"]) > 0 and int(s["TimeoutStopSec"]) >= 20
    assert s.get("User") not in (None, "root")
    assert not re.search(r"://|PASSWORD", s["ExecStart"]), "secrets belong in the environment file"
    assert "Environment" not in s or "PASSWORD" not in s["Environment"]
    assert read_unit(unit)["Install"]["WantedBy"] == "multi-user.target"
    argv = shlex.split(s["ExecStart"])
    assert cli_problems(argv) == [], unit.name


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed here; the INI and key checks above still ran")
    for unit in UNITS:  # verify wants ExecStart to exist: point it at this venv's shopfloor
        (tmp_path / unit.name).write_text(unit.read_text().replace("/opt/shopfloor/bin/shopfloor", SHOPFLOOR))
    out = subprocess.run(
        [exe, "verify", "--man=no", *sorted(str(p) for p in tmp_path.glob("*.service"))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0 and "Failed to" in out.stderr and "bus" in out.stderr.lower():
        pytest.skip(f"systemd-analyze cannot run here: {out.stderr.strip().splitlines()[0]}")
    # unknown keys and bad values are only warnings (exit 0): any output about our files is a failure
    ours = [ln for ln in (out.stdout + out.stderr).splitlines() if "shopfloor-" in ln]
    assert out.returncode == 0 and not ours, out.stdout + out.stderr


# --------------------------------------------------------------------------- Kubernetes


@cache
def k8s_docs() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path, doc))
    return docs


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for path, doc in k8s_docs():
        if doc["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            yield f"{path.name}:{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def test_k8s_documents_parse_with_valid_kinds_and_api_versions() -> None:
    kinds: set[tuple[str, str]] = set()
    for path, doc in k8s_docs():
        assert isinstance(doc.get("apiVersion"), str) and re.fullmatch(
            r"([a-z0-9.-]+/)?v\d+(beta\d+|alpha\d+)?", doc["apiVersion"]
        ), path.name
        assert isinstance(doc.get("kind"), str) and re.fullmatch(r"[A-Z][A-Za-z]+", doc["kind"]), path.name
        if doc["kind"] != "Kustomization":
            assert doc["metadata"]["name"], path.name
            kinds.add((doc["kind"], doc["metadata"]["name"]))
    assert {
        ("Namespace", "shopfloor"),
        ("ConfigMap", "shopfloor-plant"),
        ("Secret", "shopfloor"),
        ("Job", "shopfloor-db-migrate"),
        ("Deployment", "shopfloor-collector"),
        ("Deployment", "shopfloor-kpi"),
        ("Deployment", "shopfloor-api"),
        ("Service", "shopfloor-api"),
        ("NetworkPolicy", "shopfloor-api-ingress"),
    } <= kinds
    assert [n for k, n in kinds if k == "Service"] == ["shopfloor-api"], "only the API listens"
    api = {d["kind"]: d for _, d in k8s_docs() if d.get("metadata", {}).get("name", "").startswith("shopfloor-api")}
    labels = api["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert api["Service"]["spec"]["selector"].items() <= labels.items()
    assert api["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    (c,) = api["Deployment"]["spec"]["template"]["spec"]["containers"]
    port = int(c["command"][c["command"].index("--port") + 1])
    assert c["ports"] == [{"name": "http", "containerPort": port}]
    assert api["NetworkPolicy"]["spec"]["ingress"][0]["ports"][0]["port"] == port
    assert c["readinessProbe"]["httpGet"]["path"] == c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    collector = next(d for _, d in k8s_docs() if d["metadata"].get("name") == "shopfloor-collector")
    assert collector["spec"]["replicas"] == 2
    sel = collector["spec"]["selector"]["matchLabels"]
    assert sel.items() <= collector["spec"]["template"]["metadata"]["labels"].items()


def test_k8s_kustomization_lists_existing_files_but_not_the_secret_template() -> None:
    kust = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    for res in kust["resources"]:
        assert (DEPLOY / "k8s" / res).exists(), res
    assert "secret.example.yaml" not in kust["resources"]


def test_k8s_secret_template_holds_no_secret_and_pods_read_secrets_by_reference() -> None:
    for _, doc in k8s_docs():
        if doc["kind"] == "Secret":
            assert "data" not in doc, "template: stringData placeholders only"
            for key, value in doc["stringData"].items():
                assert "REPLACE_ME" in value, f"Secret {doc['metadata']['name']}.{key} looks real"
    for where, spec in pod_specs():
        assert (
            spec["securityContext"]["runAsNonRoot"] is True
            and spec.get("automountServiceAccountToken") is False
        )
        for c in spec["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, where
            for e in c.get("env", []):
                if re.search(r"URL|PASSWORD|SECRET|TOKEN", e["name"]):
                    assert "secretKeyRef" in e.get("valueFrom", {}), f"{where}: {e['name']} from a Secret"


def test_k8s_commands_match_the_cli_and_mounts_exist() -> None:
    checked = []
    for where, spec in pod_specs():
        volumes = {v["name"] for v in spec.get("volumes", [])}
        for c in spec["containers"]:
            argv = [*c.get("command", []), *c.get("args", [])]
            assert argv and argv[0] == "shopfloor", f"{where}: command must start with shopfloor"
            assert cli_problems(argv) == [], where
            checked.append(" ".join(argv[1:3]))
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert set(mounts.values()) <= volumes, where
            config = argv[argv.index("--config") + 1] if "--config" in argv else None
            if config:
                assert any(config.startswith(m.rstrip("/") + "/") for m in mounts), (
                    f"{where}: {config} not mounted"
                )
            probe = c.get("livenessProbe", {}).get("exec", {}).get("command", [])
            if probe:
                assert probe[0] == "shopfloor-healthcheck" and probe[1] in ("tcp", "fresh", "db")
    assert any(c.startswith("db migrate") for c in checked) and any(c.startswith("kpi run") for c in checked)
    assert any(c.startswith("collector") for c in checked) and any(c.startswith("api --config") for c in checked)


def test_k8s_plant_configmap_passes_config_check(tmp_path: Path) -> None:
    cm = next(
        d for _, d in k8s_docs() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "shopfloor-plant"
    )
    plant = tmp_path / "plant.yaml"
    plant.write_text(cm["data"]["plant.yaml"])
    out = subprocess.run(
        [SHOPFLOOR, "config", "check", str(plant)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


# --------------------------------------------------------------------------- Grafana


@cache
def dashboard() -> dict[str, Any]:
    return json.loads((DEPLOY / "grafana" / "dashboards" / "shopfloor.json").read_text())


def dashboard_queries() -> list[tuple[str, str]]:
    out = [
        (p["title"], t["rawSql"])
        for p in dashboard()["panels"]
        for t in p.get("targets", [])
        if "rawSql" in t
    ]
    out += [
        (f"variable {v['name']}", v["query"])
        for v in dashboard()["templating"]["list"]
        if v["type"] == "query"
    ]
    return out


def test_grafana_provisioning_points_at_the_dashboard_and_keeps_the_password_in_the_environment() -> None:
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/shopfloor.yaml").read_text())[
        "datasources"
    ][0]
    assert ds["type"] in ("grafana-postgresql-datasource", "postgres")
    assert re.fullmatch(r"\$\{?[A-Z_]+\}?", ds["secureJsonData"]["password"]), "password from the environment"
    assert "password" not in ds and "password" not in ds.get("jsonData", {})
    prov = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/shopfloor.yaml").read_text())[
        "providers"
    ][0]
    grafana = compose()["services"]["grafana"]
    mounted = volume_targets(grafana)
    assert (DEPLOY / mounted[prov["options"]["path"]] / "shopfloor.json").exists()
    uids = {t["datasource"]["uid"] for p in dashboard()["panels"] for t in p["targets"]}
    assert uids == {ds["uid"]}
    for key in re.findall(r"\$\{?([A-Z_]+)\}?", json.dumps(ds)):
        assert key in grafana["environment"], f"compose's grafana service does not set {key}"


def test_grafana_queries_use_only_the_shopfloor_tables() -> None:
    queries = dashboard_queries()
    tables_used = set()
    for title, sql in queries:
        tables = set(re.findall(r"(?i)\b(?:from|join)\s+([a-z_][a-z0-9_.]*)", sql))
        assert tables and tables <= GRAFANA_TABLES, f"{title}: {tables - GRAFANA_TABLES}"
        tables_used |= tables
    assert {"samples", "device_status", "kpi_values"} <= tables_used
    kpis = {k for _, sql in queries for k in re.findall(r"kpi = '(\w+)'", sql)}
    assert {"oee", "availability", "performance", "quality"} <= kpis


def grafana_to_sql(sql: str) -> str:
    """Expand the Grafana macros and variables the dashboard uses into plain SQL."""
    sql = re.sub(
        r"\$__timeGroupAlias\((\w+),\s*\$__interval\)",
        r'to_timestamp(floor(extract(epoch FROM \1) / 60) * 60) AS "time"',
        sql,
    )
    sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 BETWEEN now() - interval '1 day' AND now()", sql)
    sql = sql.replace("$__interval_ms", "60000")
    sql = (
        sql.replace("$machine", "'press-01'").replace("$device", "'press-01-plc'").replace("$bucket", "hour")
    )
    assert "$" not in sql, f"unexpanded Grafana macro in {sql}"
    return sql


@pytest.mark.integration
def test_grafana_queries_run_on_a_migrated_database(db: str) -> None:
    with psycopg.connect(db) as conn:
        for title, sql in dashboard_queries():
            try:
                conn.execute(grafana_to_sql(sql)).fetchall()  # type: ignore[arg-type]
            except psycopg.Error as exc:
                pytest.fail(f"dashboard query {title!r} fails on the real schema: {exc}")


# --------------------------------------------------------------------------- Mosquitto: static


def mosquitto_directives() -> list[tuple[str, str, str]]:
    """(listener port or 'global', key, value) for every directive of deploy/mosquitto/mosquitto.conf."""
    out, where = [], "global"
    for ln in (DEPLOY / "mosquitto" / "mosquitto.conf").read_text().splitlines():
        ln = ln.strip()
        if not ln or ln.startswith("#"):
            continue
        key, _, value = ln.partition(" ")
        if key == "listener":
            where = value.split()[0]
        out.append((where, key, value.strip()))
    return out


def mosquitto_values(key: str) -> list[str]:
    return [v for _, k, v in mosquitto_directives() if k == key]


def test_mosquitto_conf_is_tls_authenticated_persistent_and_health_listener_is_loopback() -> None:
    d = mosquitto_directives()
    glob = {k: v for w, k, v in d if w == "global"}
    assert glob["per_listener_settings"] == "true"
    assert glob["persistence"] == "true" and int(glob["autosave_interval"]) <= 60  # default 1800 s loses data
    assert int(glob["max_queued_messages"]) > 1000
    listeners = {v.split()[0]: v.split()[1:] for w, k, v in d if k == "listener"}
    assert set(listeners) == {"8883", "8884", "1883"} and listeners["1883"] == ["127.0.0.1"]
    for port in ("8883", "8884"):
        tls = {k: v for w, k, v in d if w == port}
        for key in ("cafile", "certfile", "keyfile", "require_certificate", "password_file", "acl_file"):
            assert key in tls, f"listener {port} lacks {key}"
        assert tls["allow_anonymous"] == "false"
    gateways = {k: v for w, k, v in d if w == "8883"}
    collectors = {k: v for w, k, v in d if w == "8884"}
    assert gateways["mount_point"] == "gateways/" and "mount_point" not in collectors
    assert gateways["password_file"] != collectors["password_file"], "collectors' listener: collector users only"
    acl = (DEPLOY / "mosquitto" / "acl").read_text()
    assert "pattern write gateways/shopfloor/v1/%u/samples" in acl
    assert "pattern read gateways/shopfloor/v1/%u/ack" in acl
    for name in ("acl", "acl.collectors"):
        text = (DEPLOY / "mosquitto" / name).read_text()
        assert not re.search(r"(?m)^\s*(topic|pattern)\s+(readwrite\s+|write\s+|read\s+)?#\s*$", text), name


# --------------------------------------------------------------------------- Mosquitto: for real

USERS = {
    "collector": "pw-collector",
    "gw-a": "pw-a",
    "gw-b": "pw-b",
    "gw-line-1": "pw-line",
    "sim-node": "pw-node",
}
SHARE = "$share/shopfloor-collectors/gateways/shopfloor/v1/+/samples"  # collectors, on their own listener


def mosquitto_hash(password: str) -> str:
    """Mosquitto 2's password file hash ($7$: PBKDF2-SHA512, 101 iterations, 12-byte salt)."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
    return f"$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def write_certs(d: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def cert(subject: str, key: Any, issuer: x509.Name | None, signer: Any, ca: bool) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        b = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            b = b.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return b.sign(signer, hashes.SHA256())

    ca_key, srv_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert("shopfloor test CA", ca_key, None, ca_key, True)
    srv = cert("localhost", srv_key, ca.subject, ca_key, False)
    (d / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.crt").write_bytes(srv.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(
        srv_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def write_passwords(d: Path) -> str:
    """passwd: gateways and Sparkplug nodes (listener 8883); passwd.collectors: the collector (8884)."""
    files = {
        d / "passwd": {u: p for u, p in USERS.items() if u != "collector"},
        d / "passwd.collectors": {"collector": USERS["collector"]},
    }
    exe = shutil.which("mosquitto_passwd")
    if exe is None:
        for path, users in files.items():
            path.write_text("".join(f"{u}:{mosquitto_hash(p)}\n" for u, p in users.items()))
        return "own $7$ hashes (mosquitto_passwd not installed)"
    for path, users in files.items():
        for i, (user, pw) in enumerate(users.items()):
            subprocess.run(
                [exe, *(["-c"] if i == 0 else []), "-b", str(path), user, pw],
                check=True,
                timeout=30,
                capture_output=True,
            )
    return "mosquitto_passwd"


def adapt_conf(text: str, d: Path, tls_port: int, health_port: int, collector_port: int) -> str:
    """deploy/mosquitto/mosquitto.conf with its ports and file paths swapped for temporary ones."""
    swaps = {
        "cafile": str(d / "ca.crt"),
        "certfile": str(d / "server.crt"),
        "keyfile": str(d / "server.key"),
        "persistence_location": str(d / "data") + "/",
    }
    seen: set[str] = set()
    out = []
    for ln in text.splitlines():
        key, _, value = ln.strip().partition(" ")
        if key == "listener" and value.split()[0] == "8883":
            ln = f"listener {tls_port} 127.0.0.1"
            seen.add("tls")
        elif key == "listener" and value.split()[0] == "8884":
            ln = f"listener {collector_port} 127.0.0.1"
            seen.add("collectors")
        elif key == "password_file":
            name = Path(value.strip()).name
            ln = f"password_file {d / name}"
            seen.add(f"passwd:{name}")
        elif key == "listener" and value.split() == ["1883", "127.0.0.1"]:
            ln = f"listener {health_port} 127.0.0.1"
            seen.add("health")
        elif key in swaps:
            ln = f"{key} {swaps[key]}"
            seen.add(key)
        elif key == "acl_file":
            name = Path(value.strip()).name
            shutil.copy(DEPLOY / "mosquitto" / name, d / name)
            ln = f"acl_file {d / name}"
            seen.add(f"acl:{name}")
        out.append(ln)
    expected = {"tls", "collectors", "health", "acl:acl", "acl:acl.collectors", "acl:acl.health",
                "passwd:passwd", "passwd:passwd.collectors", *swaps}
    assert expected <= seen, f"not adapted: {seen}"
    return "\n".join(out) + "\n"


@dataclass
class Broker:
    host: str
    tls_port: int
    health_port: int
    collector_port: int
    ca: str
    passwords: str
    log: Path


@pytest.fixture(scope="module")
def secured_broker() -> Iterator[Broker]:
    exe = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )
    if exe is None:
        pytest.skip("the mosquitto binary is not installed: the broker config cannot be started")
    # Not under pytest's tmp tree (mode 0700): mosquitto started as root drops to its own user before it
    # reads the password and ACL files, so that user must be able to reach them.
    d = Path(tempfile.mkdtemp(prefix="sf-deploy-mosquitto-"))
    try:
        (d / "data").mkdir()
        write_certs(d)
        how = write_passwords(d)
        tls_port, health_port, collector_port = free_port(), free_port(), free_port()
        conf = d / "mosquitto.conf"
        conf.write_text(
            adapt_conf(
                (DEPLOY / "mosquitto" / "mosquitto.conf").read_text(), d, tls_port, health_port, collector_port
            )
        )
        if os.geteuid() == 0:
            for p in [d, *d.iterdir()]:
                p.chmod(0o777 if p.is_dir() else 0o644)
        log = d / "mosquitto.log"
        with open(log, "w") as f:
            proc = subprocess.Popen([exe, "-c", str(conf)], stdout=f, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 10
            while not all(_port_open(p) for p in (tls_port, health_port, collector_port)):
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail(
                        f"mosquitto did not start with deploy/mosquitto/mosquitto.conf:\n{log.read_text()}"
                    )
                time.sleep(0.05)
            yield Broker("127.0.0.1", tls_port, health_port, collector_port, str(d / "ca.crt"), how, log)
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


@dataclass
class Peer:
    """One MQTT 5 client with its connack, subacks, pubacks and messages as queues."""

    broker: Broker
    username: str | None = None
    password: str | None = None
    tls: bool = True
    port: int | None = None
    events: queue.Queue[tuple[str, Any]] = field(default_factory=queue.Queue)
    messages: queue.Queue[tuple[str, bytes]] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"t-{self.username}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        if self.username:
            self.client.username_pw_set(
                self.username, self.password if self.password is not None else USERS[self.username]
            )
        if self.tls:
            self.client.tls_set(ca_certs=self.broker.ca)
        self.client.on_connect = lambda c, u, f, rc, p: self.events.put(("connect", rc))
        self.client.on_disconnect = lambda c, u, f, rc, p: self.events.put(("disconnect", rc))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.events.put(("suback", rcs))
        self.client.on_publish = lambda c, u, mid, rc, p: self.events.put(("puback", rc))
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload)))

    def _wait(self, kinds: tuple[str, ...], timeout: float = 5.0) -> tuple[str, Any]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                kind, value = self.events.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                break
            if kind in kinds:
                return kind, value
        return "timeout", None

    def connect(self) -> bool:
        """True when the broker accepted the connection."""
        try:
            self.client.connect(self.broker.host, self.port or self.broker.tls_port, keepalive=10)
        except (OSError, ValueError):
            return False
        self.client.loop_start()
        kind, rc = self._wait(("connect", "disconnect"))
        return kind == "connect" and not rc.is_failure

    def subscribe(self, topic: str) -> bool:
        self.client.subscribe(topic, qos=1)
        kind, rcs = self._wait(("suback",))
        return kind == "suback" and not rcs[0].is_failure

    def publish(self, topic: str, payload: bytes) -> bool:
        """True when the broker acknowledged the QoS 1 publish with a success code."""
        self.client.publish(topic, payload, qos=1)
        kind, rc = self._wait(("puback",))
        return kind == "puback" and not rc.is_failure

    def received(self, payload: bytes, timeout: float) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                _, got = self.messages.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                return False
            if got == payload:
                return True
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def peers(secured_broker: Broker) -> Iterator[Any]:
    made: list[Peer] = []

    def make(username: str | None = None, **kw: Any) -> Peer:
        if username == "collector" and "port" not in kw:
            kw["port"] = secured_broker.collector_port  # collectors have their own listener
        p = Peer(secured_broker, username, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def _connected(p: Peer) -> Peer:
    assert p.connect(), f"{p.username} could not connect; broker log:\n{p.broker.log.read_text()[-2000:]}"
    return p


@pytest.mark.integration
def test_broker_refuses_anonymous_wrong_passwords_and_plaintext_on_the_tls_port(peers: Any) -> None:
    assert not peers().connect(), "anonymous client accepted on the TLS listener"
    assert not peers("gw-a", password="not-the-password").connect()
    assert not peers("gw-a", tls=False).connect(), "plain MQTT accepted on the TLS listener"
    assert peers("gw-a").connect()


@pytest.mark.integration
def test_gateway_publishes_only_to_its_own_samples_topic(peers: Any) -> None:
    collector = _connected(peers("collector"))
    assert collector.subscribe(SHARE), "collectors must be allowed the shared subscription"
    gw_a = _connected(peers("gw-a"))
    mine, forged, ack = b"gw-a own batch", b"gw-a pretending to be gw-b", b"gw-a forging an ack"
    assert gw_a.publish("shopfloor/v1/gw-a/samples", mine)
    assert collector.received(mine, 5), "the collector did not get gw-a's own batch"
    assert not gw_a.publish("shopfloor/v1/gw-b/samples", forged), "gw-a may publish as gw-b"
    assert not gw_a.publish("shopfloor/v1/gw-a/ack", ack), "a gateway may forge acks"
    assert not collector.received(forged, 1.0)


@pytest.mark.integration
def test_collector_acks_reach_only_their_gateway(peers: Any) -> None:
    gw_a, gw_b = _connected(peers("gw-a")), _connected(peers("gw-b"))
    assert gw_a.subscribe("shopfloor/v1/gw-a/ack")
    gw_b.subscribe("shopfloor/v1/+/ack")  # may be granted; delivery is still checked per message
    gw_b.subscribe("shopfloor/v1/gw-a/samples")
    collector = _connected(peers("collector"))
    assert collector.publish("gateways/shopfloor/v1/gw-a/ack", b'{"batch_ids": [1]}')
    assert gw_a.received(b'{"batch_ids": [1]}', 5)
    assert _connected(peers("gw-a")).publish("shopfloor/v1/gw-a/samples", b"secret batch")
    assert not gw_b.received(b'{"batch_ids": [1]}', 1.0) and not gw_b.received(b"secret batch", 0.5)


@pytest.mark.integration
def test_only_collector_credentials_reach_the_collectors_listener(peers: Any, secured_broker: Broker) -> None:
    for user in ("gw-a", "gw-line-1", "sim-node"):
        assert not peers(user, port=secured_broker.collector_port).connect(), f"{user} on the collectors' port"
    assert not peers("collector", port=secured_broker.tls_port).connect(), "collector user on the gateways' port"
    assert peers("collector").connect()


@pytest.mark.integration
def test_a_gateway_cannot_join_the_collectors_shared_subscription(peers: Any) -> None:
    """Mosquitto 2.0's ACL grants every SUBSCRIBE; were the gateway in the share group, the broker would hand
    it about half the batches, which it may not read, and they would vanish until re-sent."""
    collector = _connected(peers("collector"))
    assert collector.subscribe(SHARE)
    intruder = _connected(peers("gw-b"))
    for topic in ("$share/shopfloor-collectors/shopfloor/v1/+/samples", SHARE, "shopfloor/v1/+/samples", "#"):
        intruder.subscribe(topic)  # the SUBACK may say granted: what matters is what is delivered to whom
    gw_a = _connected(peers("gw-a"))
    sent = [f"batch {i}".encode() for i in range(20)]
    for body in sent:
        assert gw_a.publish("shopfloor/v1/gw-a/samples", body)
    got = set()
    deadline = time.time() + 10
    while len(got) < len(sent) and time.time() < deadline:
        try:
            got.add(collector.messages.get(timeout=0.5)[1])
        except queue.Empty:
            continue
    assert got == set(sent), f"the collector got {len(got)} of {len(sent)} batches"
    assert intruder.messages.empty(), "a gateway received samples"


@pytest.mark.integration
def test_sparkplug_nodes_publish_as_themselves_and_the_gateway_reads_and_commands_them(peers: Any) -> None:
    gw = _connected(peers("gw-line-1"))
    assert gw.subscribe("spBv1.0/plant1/+/sim-node/#")  # what edge/drivers/sparkplug subscribes
    node = _connected(peers("sim-node"))
    assert node.subscribe("spBv1.0/plant1/NCMD/sim-node")
    assert node.publish("spBv1.0/plant1/NDATA/sim-node", b"ndata")
    assert gw.received(b"ndata", 5)
    assert not node.publish("spBv1.0/plant1/NDATA/other-node", b"forged"), "a node may publish as another"
    assert gw.publish("spBv1.0/plant1/NCMD/sim-node", b"rebirth")
    assert node.received(b"rebirth", 5)
    assert not _connected(peers("gw-a")).publish("spBv1.0/plant1/NCMD/sim-node", b"x"), (
        "only its reader commands it"
    )


@pytest.mark.integration
def test_health_listener_lets_anonymous_read_uptime_and_nothing_else(
    peers: Any, secured_broker: Broker
) -> None:
    health = _connected(peers(tls=False, port=secured_broker.health_port))
    assert health.subscribe("$SYS/broker/uptime")
    topic, _ = health.messages.get(timeout=15)
    assert topic == "$SYS/broker/uptime"
    collector = _connected(peers("collector"))
    assert collector.subscribe(SHARE)
    assert not health.publish("shopfloor/v1/gw-a/samples", b"anonymous batch")
    assert not collector.received(b"anonymous batch", 1.0)


@pytest.mark.integration
def test_the_uplink_client_connects_over_tls_with_ssl_cert_file(
    secured_broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """compose/k8s/systemd point SSL_CERT_FILE at the broker's CA; the product's client must honour it."""
    from edge.uplink import mqtt_client

    monkeypatch.setenv("SSL_CERT_FILE", secured_broker.ca)
    client, host, port = mqtt_client(
        f"mqtts://gw-a:{USERS['gw-a']}@localhost:{secured_broker.tls_port}",
        f"t-uplink-{uuid.uuid4().hex[:6]}",
    )
    got: queue.Queue[Any] = queue.Queue()
    client.on_connect = lambda c, u, f, rc, p: got.put(rc)
    client.connect(host, port, keepalive=10)
    client.loop_start()
    try:
        rc = got.get(timeout=5)
        assert not rc.is_failure, rc
    finally:
        client.disconnect()
        client.loop_stop()
