"""ModbusDriver against the real simulated PLC (pymodbus TCP server) on a free loopback port."""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config import parse_config
from core.errors import ConfigError
from core.record import Quality, Sample, now_us
from edge.driver import DriverContext
from edge.drivers import driver_class
from edge.drivers.modbus import ModbusDriver
from edge.drivers.modbus.config import ModbusDevice
from edge.drivers.modbus.driver import serial_options
from edge.errors import NotConnected
from simulator.machine import Machine, MachineSpec
from simulator.modbus_server import LAYOUT, ModbusPlc, device_config, signals_config

LOG = logging.getLogger("test.modbus")
CTX = DriverContext(LOG)
FOLDER = Path(__file__).resolve().parents[1] / "edge" / "drivers" / "modbus"


def machines(n: int = 2) -> list[Machine]:
    start = now_us()
    out = [
        Machine(
            MachineSpec(id=f"press-{k:02d}", seed=k + 7, speed=200.0, duration_scale=0.05), start_us=start
        )
        for k in range(n)
    ]
    for m in out:
        m.advance_to(start + 3_000_000)  # 10 simulated minutes: counts, energy, state changes
    return out


def device(port: int, index: int = 0, **extra: Any) -> ModbusDevice:
    cfg = device_config([f"press-{k:02d}" for k in range(index + 1)], "127.0.0.1", port)[index]
    cfg.update({"timeout_s": 0.5, **extra})
    return ModbusDevice.model_validate(cfg)


def by_tag(samples: list[Sample]) -> dict[str, Sample]:
    return {s.tag: s for s in samples}


def with_plc(port: int, body: Callable[[ModbusPlc], Awaitable[None]], n: int = 2) -> None:
    async def main() -> None:
        plc = ModbusPlc(machines(n), "127.0.0.1", port)
        await plc.start()
        try:
            await body(plc)
        finally:
            await plc.stop()

    asyncio.run(main())


def assert_matches(samples: list[Sample], expected: dict[str, Any]) -> None:
    got = by_tag(samples)
    assert set(got) == {t["name"] for t in LAYOUT}
    for name, want in expected.items():
        s = got[name]
        assert s.quality is Quality.GOOD and s.status == 0, name
        if isinstance(want, str):
            assert s.text == want and s.value is None, name
        else:
            assert s.value == pytest.approx(float(want), rel=1e-6, abs=1e-9), name


# --------------------------------------------------------------------------- no server needed


def test_registry_finds_the_driver_and_init_does_no_io() -> None:
    assert driver_class("modbus") is ModbusDriver
    drv = ModbusDriver(device(1), CTX)  # port 1: nothing listens, and nothing is tried
    assert drv.kind == "modbus" and drv.poll_interval_s == 1.0 and drv.on_state is None
    assert len(drv.blocks) == 4 < len(LAYOUT)


def test_device_config_and_signals_validate_as_a_plant_file() -> None:
    ids = ["press-01", "press-02"]
    doc = {
        "plant": {"id": "sim", "timezone": "UTC"},
        "assets": [
            {
                "id": "line-1",
                "kind": "line",
                "children": [
                    {
                        "id": mid,
                        "kind": "machine",
                        "ideal_cycle_time_s": 2.0,
                        "device": f"{mid}-plc",
                        "signals": signals_config(),
                    }
                    for mid in ids
                ],
            }
        ],
        "devices": device_config(ids, "127.0.0.1", 5020, poll_interval_s=0.5),
    }
    cfg = parse_config(yaml.safe_dump(doc, sort_keys=False), "sim.yaml")
    devices = [d for d in cfg.devices if isinstance(d, ModbusDevice)]
    assert [(d.id, d.unit_id, d.poll_interval_s) for d in devices] == [
        ("press-01-plc", 1, 0.5),
        ("press-02-plc", 2, 0.5),
    ]
    assert (
        ModbusDevice.model_validate(yaml.safe_load((FOLDER / "sample.yaml").read_text())["devices"][0]).tags
        == devices[0].tags
    )  # the simulated layout is the sample's (and the contract's press-01-plc), tag for tag


def test_sample_yaml_is_valid_and_embedded_in_the_readme() -> None:
    sample = (FOLDER / "sample.yaml").read_text()
    doc = yaml.safe_load(sample)
    cfg = parse_config(yaml.safe_dump({"plant": {"id": "p"}, **doc}), "sample.yaml")
    assert cfg.devices[0].protocol == "modbus"
    assert sample.strip() in (FOLDER / "README.md").read_text()


def test_rtu_endpoint_options_are_parsed_and_checked() -> None:
    assert serial_options("rtu:///dev/ttyUSB0?baudrate=9600&parity=e&stopbits=2&bytesize=7") == {
        "port": "/dev/ttyUSB0",
        "baudrate": 9600,
        "parity": "E",
        "stopbits": 2,
        "bytesize": 7,
    }
    assert serial_options("rtu:///dev/ttyS1")["baudrate"] == 19200
    with pytest.raises(ConfigError, match="parity"):
        serial_options("rtu:///dev/ttyUSB0?parity=X")


def test_missing_serial_port_raises_not_connected() -> None:
    cfg = {
        "id": "rtu",
        "protocol": "modbus",
        "endpoint": "rtu:///dev/tty-shopfloor-missing?baudrate=19200",
        "tags": [{"name": "counter", "address": 40001}],
    }
    drv = ModbusDriver(ModbusDevice.model_validate(cfg), CTX)

    async def main() -> None:
        with pytest.raises(NotConnected, match="tty-shopfloor-missing"):
            await drv.connect()
        await drv.close()

    asyncio.run(main())


def test_nothing_listening_raises_not_connected(port: int) -> None:
    drv = ModbusDriver(device(port), CTX)

    async def main() -> None:
        with pytest.raises(NotConnected):
            await drv.connect()
        with pytest.raises(NotConnected):
            await drv.read()
        await drv.close()
        await drv.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- against the simulated PLC


@pytest.mark.integration
def test_reads_every_layout_tag_as_the_plc_shows_it(port: int) -> None:
    async def body(plc: ModbusPlc) -> None:
        for index in (0, 1):  # machine i answers as unit i + 1
            drv = ModbusDriver(device(port, index), CTX)
            await drv.connect()
            before = now_us()
            samples = await drv.read()
            assert all(before <= s.ts_us <= now_us() for s in samples)
            assert all(s.device_id == f"press-{index:02d}-plc" for s in samples)
            truth = plc.machines[index].values()
            assert_matches(samples, plc.expected(index))
            assert_matches(samples, truth)
            assert truth["parts_total"] > 0 and truth["energy_total"] > 0
            await drv.close()
        assert plc.expected(0)["parts_total"] != plc.expected(1)["parts_total"]

    with_plc(port, body)


@pytest.mark.integration
def test_values_follow_the_machine_between_polls(port: int) -> None:
    async def body(plc: ModbusPlc) -> None:
        drv = ModbusDriver(device(port), CTX)
        await drv.connect()
        first = by_tag(await drv.read())["parts_total"].value
        plc.machines[0].advance_to(plc.machines[0].t_us + 2_000_000)
        plc.update()
        samples = await drv.read()
        assert_matches(samples, plc.machines[0].values())
        assert by_tag(samples)["parts_total"].value > first  # type: ignore[operator]
        await drv.close()

    with_plc(port, body, n=1)


@pytest.mark.integration
def test_block_plan_sends_fewer_requests_than_tags(port: int) -> None:
    async def body(plc: ModbusPlc) -> None:
        drv = ModbusDriver(device(port), CTX)
        await drv.connect()
        before = plc.requests
        samples = await drv.read()
        assert len(samples) == len(LAYOUT) == 11
        assert plc.requests - before == drv.requests == len(drv.blocks) == 4
        await drv.close()

    with_plc(port, body)


@pytest.mark.integration
def test_exception_response_gives_bad_samples_and_the_next_poll_recovers(port: int) -> None:
    async def body(plc: ModbusPlc) -> None:
        drv = ModbusDriver(device(port), CTX)
        await drv.connect()
        plc.fail_mode = "exception"
        bad = await drv.read()
        assert len(bad) == len(LAYOUT)
        assert all(s.quality is Quality.BAD and s.status == 4 and s.value is None for s in bad)
        plc.fail_mode = None
        assert_matches(await drv.read(), plc.expected(0))  # same connection, no reconnect needed
        await drv.close()

    with_plc(port, body)


@pytest.mark.integration
def test_illegal_address_spoils_only_its_own_block(port: int) -> None:
    extra = copy.deepcopy(LAYOUT) + [{"name": "missing", "address": 40201, "type": "uint16"}]

    async def body(plc: ModbusPlc) -> None:
        drv = ModbusDriver(device(port, tags=extra), CTX)
        await drv.connect()
        got = by_tag(await drv.read())
        assert got["missing"].quality is Quality.BAD and got["missing"].status == 2  # ILLEGAL DATA ADDRESS
        assert_matches([s for s in got.values() if s.tag != "missing"], plc.expected(0))
        await drv.close()

    with_plc(port, body)


@pytest.mark.integration
def test_nan_register_value_is_bad_quality(port: int) -> None:
    tags = [{"name": "broken", "address": 40036, "type": "float32"}, {"name": "status", "address": 40001}]

    async def body(plc: ModbusPlc) -> None:
        plc.force(0, "holding", 35, [0x7FC0, 0x0000])  # quiet NaN
        drv = ModbusDriver(device(port, tags=tags), CTX)
        await drv.connect()
        got = by_tag(await drv.read())
        assert got["broken"].quality is Quality.BAD and got["broken"].value is None
        assert got["status"].quality is Quality.GOOD
        plc.unforce()
        assert by_tag(await drv.read())["broken"].value == 0.0
        await drv.close()

    with_plc(port, body)


@pytest.mark.integration
def test_silent_plc_times_out_as_not_connected(port: int) -> None:
    async def body(plc: ModbusPlc) -> None:
        drv = ModbusDriver(device(port), CTX)
        await drv.connect()
        plc.fail_mode = "silent"
        t0 = time.monotonic()
        with pytest.raises(NotConnected, match="no answer"):
            await drv.read()
        assert time.monotonic() - t0 < 2.0
        plc.fail_mode = None
        await drv.connect()
        assert_matches(await drv.read(), plc.expected(0))
        await drv.close()

    with_plc(port, body)


@pytest.mark.integration
def test_server_stop_raises_not_connected_and_restart_resumes(port: int) -> None:
    async def body(plc: ModbusPlc) -> None:
        drv = ModbusDriver(device(port), CTX)
        await drv.connect()
        assert_matches(await drv.read(), plc.expected(0))
        await plc.stop()
        with pytest.raises(NotConnected):
            for _ in range(3):  # the loss may only show on the next request
                await drv.read()
                await asyncio.sleep(0.05)
        with pytest.raises(NotConnected):
            await drv.connect()
        await plc.start()
        plc.machines[0].advance_to(plc.machines[0].t_us + 1_000_000)
        plc.update()
        await drv.connect()
        assert_matches(await drv.read(), plc.machines[0].values())
        await drv.close()
        await drv.close()

    with_plc(port, body)


def test_a_tag_past_the_address_space_is_a_config_error() -> None:
    cfg = {
        "id": "d",
        "protocol": "modbus",
        "endpoint": "tcp://127.0.0.1:502",
        "tags": [{"name": "x", "address": {"table": "holding", "offset": 65535}, "type": "uint32"}],
    }
    with pytest.raises(ConfigError, match="past 65535"):
        ModbusDriver(ModbusDevice.model_validate(cfg), CTX)
