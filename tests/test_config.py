"""Plant config: the contract example is accepted; every bad value is reported with file, line and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.config import parse_config
from core.errors import ConfigError
from edge.drivers.modbus.config import parse_modicon

CONTRACT = Path(__file__).resolve().parents[1].parent / "shared" / "examples" / "plant-contract.yaml"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plant.yaml"


def contract_text() -> str:
    if not CONTRACT.exists():
        pytest.fail(f"contract example missing at {CONTRACT}: run the tests with ../shared beside the checkout")
    return CONTRACT.read_text()


def test_contract_example_is_accepted_unchanged() -> None:
    cfg = parse_config(contract_text(), "plant-contract.yaml")
    assert [m.id for m in cfg.machines()] == ["press-01", "cnc-02", "mill-03", "robot-04", "lathe-05"]
    press = cfg.device("press-01-plc")
    scrap = next(t for t in press.tags if t.name == "parts_scrap")
    assert (scrap.address.table, scrap.address.offset, scrap.word_order) == ("holding", 3, "little")


def test_shipped_example_is_valid() -> None:
    cfg = parse_config(EXAMPLE.read_text(), str(EXAMPLE))
    assert cfg.machines()


@pytest.mark.parametrize(("value", "table", "offset"), [
    (40001, "holding", 0), (30001, "input", 0), (1, "coil", 0), (10001, "discrete", 0), (40010, "holding", 9),
    (400001, "holding", 0), (465536, "holding", 65535),
])
def test_modicon_addresses(value: int, table: str, offset: int) -> None:
    a = parse_modicon(value)
    assert (a.table, a.offset) == (table, offset)


BAD = [
    ("protocol: modbus", "protocol: profibus", 47, "devices[0].protocol", "unknown protocol 'profibus'"),
    ("address: 40001, type: uint16}", "address: 90001, type: uint16}", 52, "devices[0].tags[0].address",
     "not a Modicon address"),
    ("{name: parts_total, address: 40002", "{name: status, address: 40002", 53, "devices[0].tags[1].name",
     "duplicate tag 'status'"),
    ("scrap_count: {tag: parts_scrap}", "scrap_count: {tag: missing_tag}", 21,
     "assets[0].children[0].children[0].signals.scrap_count.tag", "does not have"),
    ("device: cnc-02-ua", "device: ghost-plc", 26, "assets[0].children[0].children[1].device",
     "points to device 'ghost-plc'"),
    ("sampling_ms: 250", "sampling_ms: -5", 75, "devices[2].tags[0].sampling_ms", "greater than 0"),
    ("timezone: Asia/Shanghai", "timezone: Mars/Olympus", 3, "plant.timezone", "unknown IANA time zone"),
    ("type: float64, word_order: big", "type: float65, word_order: big", 56, "devices[0].tags[4].type", "Input should be"),
    ('node: "ns=2;i=1001"', 'node: "ns=2;x=1001"', 76, "devices[2].tags[1].node", "not an OPC UA node id"),
    ('topic: "plant/line1/+/telemetry"', 'topic: "plant/li#ne1/telemetry"', 86, "devices[3].tags[1].topic", "'#'"),
    ('json_path: "$.axes[0].load"', 'json_path: "axes"', 86, "devices[3].tags[1].json_path", "must start with '$'"),
    ("endpoint: tcp://127.0.0.1:5020", "endpoint: udp://127.0.0.1:5020", 48, "devices[0].endpoint", "tcp:// or rtu://"),
    ("ideal_cycle_time_s: 2.0", "ideal_cycel_time_s: 2.0", 16, "assets[0].children[0].children[0].ideal_cycel_time_s",
     "unknown key"),
]


@pytest.mark.parametrize(("old", "new", "line", "field", "text"), BAD, ids=[b[3] for b in BAD])
def test_bad_value_names_file_line_and_field(old: str, new: str, line: int, field: str, text: str) -> None:
    src = contract_text()
    assert old in src
    with pytest.raises(ConfigError) as err:
        parse_config(src.replace(old, new, 1), "plant.yaml")
    msg = str(err.value)
    assert msg.startswith(f"plant.yaml:{line}: {field}: "), msg
    assert text in msg


def test_yaml_syntax_error_names_line() -> None:
    with pytest.raises(ConfigError, match=r"^p.yaml:4: YAML syntax error: .*starts on line 3"):
        parse_config("plant: {id: x}\ndevices:\n  - [unclosed\n", "p.yaml")


def test_cli_rejects_bad_file_with_one_line_per_problem(tmp_path: Path) -> None:
    bad = tmp_path / "plant.yaml"
    bad.write_text(contract_text().replace("protocol: modbus", "protocol: profibus", 1))
    r = subprocess.run([sys.executable, "-m", "shopfloor.cli", "config", "check", str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert f"{bad}:47: devices[0].protocol: unknown protocol" in r.stderr
    good = subprocess.run([sys.executable, "-m", "shopfloor.cli", "config", "check", str(CONTRACT)],
                          capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stderr
    assert "OK" in good.stdout
