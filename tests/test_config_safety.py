"""Configuration that cannot leak or escape: credentials stay out of the plant file and its URLs, the buffer
stays next to the plant file, ids are topic-safe, and OPC UA without security is an explicit, logged choice.
Every refusal is one line naming file, line and field, through `shopfloor config check` itself."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import load_config
from core.errors import ConfigError
from edge.driver import DriverContext
from edge.drivers.opcua.driver import OpcUaDriver

HEAD = "plant: {id: p}\n"
MODBUS = """devices:
  - id: d1
    protocol: modbus
    endpoint: {endpoint}
    tags: [{{name: t, address: 40001}}]
"""
OPCUA = """devices:
  - id: u1
    protocol: opcua
    endpoint: opc.tcp://127.0.0.1:4840/x/
{security}    tags: [{{name: t, node: "ns=2;i=1"}}]
"""


def check(tmp_path: Path, text: str, name: str = "plant.yaml") -> subprocess.CompletedProcess[str]:
    f = tmp_path / name
    f.write_text(text)
    return subprocess.run([sys.executable, "-m", "shopfloor.cli", "config", "check", str(f)],
                          capture_output=True, text=True, timeout=60)


def refused(tmp_path: Path, text: str) -> str:
    r = check(tmp_path, text)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.mark.parametrize("endpoint", ["mqtt://gw:s3cret@127.0.0.1:1883", "tcp://gw:s3cret@127.0.0.1:502"])
def test_credentials_in_an_endpoint_are_refused_without_echoing_them(tmp_path: Path, endpoint: str) -> None:
    text = HEAD + MODBUS.format(endpoint=endpoint)
    if endpoint.startswith("mqtt"):
        text = HEAD + f"""devices:
  - id: d1
    protocol: mqtt
    endpoint: {endpoint}
    tags: [{{name: t, topic: a/b}}]
"""
    line = refused(tmp_path, text)
    assert "plant.yaml:5: devices[0].endpoint: the endpoint carries credentials" in line
    assert "password_env" in line and "s3cret" not in line


def test_opcua_credentials_in_the_url_are_refused(tmp_path: Path) -> None:
    text = HEAD + OPCUA.replace("opc.tcp://127.0.0.1", "opc.tcp://op:s3cret@127.0.0.1").format(
        security="    security: {policy: None}\n")
    line = refused(tmp_path, text)
    assert "credentials" in line and "s3cret" not in line


def test_an_inline_password_says_to_use_password_env(tmp_path: Path) -> None:
    text = HEAD + """devices:
  - id: d1
    protocol: mqtt
    endpoint: mqtt://127.0.0.1:1883
    username: gw
    password: s3cret
    tags: [{name: t, topic: a/b}]
"""
    line = refused(tmp_path, text)
    assert line.startswith("error: ") and "plant.yaml:7: devices[0].password: passwords never go in the plant file" in line
    assert "password_env" in line and "s3cret" not in line


@pytest.mark.parametrize(("edge", "field"), [("{gateway_id: gw/+/#}", "edge.gateway_id"),
                                             ("{uplink_topic_prefix: '#'}", "edge.uplink_topic_prefix"),
                                             ("{uplink_topic_prefix: 'a//b'}", "edge.uplink_topic_prefix"),
                                             ("{gateway_id: '$SYS'}", "edge.gateway_id")])
def test_ids_that_become_topic_levels_must_be_topic_safe(tmp_path: Path, edge: str, field: str) -> None:
    line = refused(tmp_path, HEAD + f"edge: {edge}\n")
    assert f"plant.yaml:2: {field}:" in line and "topic" in line


def test_the_collectors_share_group_must_be_topic_safe(tmp_path: Path) -> None:
    line = refused(tmp_path, HEAD + "collector: {share_group: 'a/#'}\n")
    assert "plant.yaml:2: collector.share_group:" in line and "topic-safe" in line


def test_buffer_path_is_read_from_the_plant_files_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "site").mkdir()
    f = tmp_path / "site" / "plant.yaml"
    f.write_text(HEAD + "edge: {buffer_path: data/buffer.sqlite}\n")
    monkeypatch.chdir("/")
    assert load_config(f).edge.buffer_path == str(tmp_path / "site" / "data" / "buffer.sqlite")
    f.write_text(HEAD + f"edge: {{buffer_path: {tmp_path / 'elsewhere.sqlite'}}}\n")  # absolute: as given
    assert load_config(f).edge.buffer_path == str(tmp_path / "elsewhere.sqlite")


@pytest.mark.parametrize(("path", "says"), [("../../../etc/buffer.sqlite", "leads outside the plant file's folder"),
                                            ("plant.yaml", "is the plant file itself"),
                                            ("./sub/../plant.yaml", "is the plant file itself"),
                                            (".", "is a folder")])
def test_buffer_path_may_not_escape_or_be_the_plant_file(tmp_path: Path, path: str, says: str) -> None:
    line = refused(tmp_path, HEAD + f"edge:\n  buffer_path: '{path}'\n")
    assert "plant.yaml:3: edge.buffer_path:" in line and says in line


def test_opcua_security_is_an_explicit_choice(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    line = refused(tmp_path, HEAD + OPCUA.format(security=""))
    assert "opcua device needs 'security'" in line and "{policy: None}" in line
    line = refused(tmp_path, HEAD + OPCUA.format(
        security="    security: {policy: Basic256Sha256, mode: Sign, certificate: c.der, private_key: k.pem}\n"))
    assert "needs 'trust_dir'" in line
    f = tmp_path / "ok.yaml"
    f.write_text(HEAD + OPCUA.format(security="    security: {policy: None}\n"))
    cfg = load_config(f)
    with caplog.at_level(logging.WARNING):
        OpcUaDriver(cfg.devices[0], DriverContext(logging.getLogger("edge.device.u1")))  # what every start does
    assert "security=None" in caplog.text and "neither signed nor encrypted" in caplog.text


def test_the_contract_example_is_still_accepted() -> None:
    here = Path(__file__).resolve()
    found = [p / "shared" / "examples" / "plant-contract.yaml" for p in here.parents]
    contract = next((p for p in found if p.exists()), None)
    if contract is None:
        pytest.fail("shared/examples/plant-contract.yaml not found above the repository")
    r = subprocess.run([sys.executable, "-m", "shopfloor.cli", "config", "check", str(contract)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_load_config_error_is_a_config_error(tmp_path: Path) -> None:
    f = tmp_path / "plant.yaml"
    f.write_text(HEAD + "edge: {buffer_path: plant.yaml}\n")
    with pytest.raises(ConfigError, match="plant file itself"):
        load_config(f)
