"""One plant file for many gateways: which gateway reads which device, checked on load and obeyed by the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.config import parse_config
from core.errors import ConfigError

PLANT = """\
plant: {{id: p}}
devices:
  - {{id: press-1, protocol: modbus, endpoint: "tcp://127.0.0.1:1", tags: [{{name: t, address: 40001}}]{press1}}}
  - {{id: press-2, protocol: modbus, endpoint: "tcp://127.0.0.1:1", tags: [{{name: t, address: 40001}}]}}
  - {{id: press-3, protocol: modbus, endpoint: "tcp://127.0.0.1:1", tags: [{{name: t, address: 40001}}]}}
{gateways}edge: {{gateway_id: gw-main, buffer_path: {buffer}}}
"""


def plant(press1: str = "", gateways: str = "", buffer: str = "b.sqlite") -> str:
    return PLANT.format(press1=press1, gateways=gateways, buffer=buffer)


def test_a_file_without_gateway_keys_is_one_gateway_reading_every_device() -> None:
    cfg = parse_config(plant(), "p.yaml")
    assert cfg.device_owners() == {}
    assert cfg.gateway_devices("gw-main") is None and cfg.gateway_devices("anything") is None


def test_devices_are_assigned_by_key_or_section_and_the_rest_stay_with_edge_gateway_id() -> None:
    cfg = parse_config(plant(", gateway: gw-1", "gateways:\n  - {id: gw-2, devices: [press-2]}\n"), "p.yaml")
    assert cfg.device_owners() == {"press-1": "gw-1", "press-2": "gw-2"}
    assert cfg.gateway_devices("gw-1") == ["press-1"]
    assert cfg.gateway_devices("gw-2") == ["press-2"]
    assert cfg.gateway_devices("gw-main") == ["press-3"]
    assert cfg.gateway_devices("gw-9") == []


@pytest.mark.parametrize(("press1", "gateways", "line", "text"), [
    ("", "gateways:\n  - {id: gw-2, devices: [press-9]}\n", 7,
     "gateways[0].devices[0]: gateway 'gw-2' lists device 'press-9', which is not under 'devices'"),
    ("", "gateways:\n  - {id: gw-2, devices: [press-2]}\n  - {id: gw-3, devices: [press-2]}\n", 8,
     "gateways[1].devices[0]: device 'press-2' is listed under gateways 'gw-2' and 'gw-3'"),
    (", gateway: gw-1", "gateways:\n  - {id: gw-2, devices: [press-1]}\n", 7,
     "device 'press-1' says gateway: 'gw-1' but is listed under gateway 'gw-2'"),
    ("", "gateways:\n  - {id: gw-2}\n  - {id: gw-2}\n", 8, "gateways[1].id: duplicate gateway id 'gw-2'"),
    ("", "gateways:\n  - {id: 'gw/+/#'}\n", 7, "not allowed in an MQTT topic level"),
    (", gateway: 'gw#1'", "", 3, "devices[0].gateway: gateway id 'gw#1' contains a character"),
])
def test_gateway_mistakes_name_file_line_and_field(press1: str, gateways: str, line: int, text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(plant(press1, gateways), "p.yaml")
    assert str(err.value).startswith(f"p.yaml:{line}: "), str(err.value)
    assert text in str(err.value)


def _edge(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "shopfloor.cli", "edge", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_edge_with_gateway_id_runs_only_that_gateways_devices(tmp_path: Path, broker: tuple[str, int]) -> None:
    f = tmp_path / "plant.yaml"
    f.write_text(plant(", gateway: gw-1", "gateways:\n  - {id: gw-2, devices: [press-2, press-3]}\n",
                       str(tmp_path / "b.sqlite")))
    url = f"mqtt://{broker[0]}:{broker[1]}"
    refused = _edge(["--config", str(f), "--broker-url", url, "--gateway-id", "gw-9"], tmp_path)
    out, _ = refused.communicate(timeout=60)
    assert refused.returncode == 2, out
    assert out.strip().splitlines()[-1] == (f"error: {f}: gateway 'gw-9' reads no device in this plant file "
                                            "(gateways: gw-1, gw-2, gw-main); pass --gateway-id with one of them")
    proc = _edge(["--config", str(f), "--broker-url", url, "--gateway-id", "gw-2"], tmp_path)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "event=edge_started" in line or not line:
                break
        started = next(ln for ln in lines if "event=edge_started" in ln)
        assert "gateway=gw-2 " in started and " devices=2 " in started, started
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def test_config_check_lists_each_gateway_with_its_device_count(tmp_path: Path) -> None:
    f = tmp_path / "plant.yaml"
    f.write_text(plant(", gateway: gw-1", "gateways:\n  - {id: gw-2, devices: [press-2]}\n"))
    r = subprocess.run([sys.executable, "-m", "shopfloor.cli", "config", "check", str(f)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("gateways gw-1 (1), gw-2 (1), gw-main (1)"), r.stdout
