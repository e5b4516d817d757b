"""ModbusDriver over a real Modbus RTU serial link: a socat pseudo-terminal pair, the simulated PLC as a
pymodbus RTU serial server on one end, the driver (`rtu:///path?baudrate=19200`) on the other.

socat is required (skipped with the reason when absent): pymodbus opens both ends by device path (pyserial
`serial_for_url`), and `os.openpty()` gives only one end a path (the master side is a bare file descriptor).
A pty pair carries bytes, not line settings: baud rate and parity are set on both ends but a mismatch would go
unnoticed here, unlike on a real line.

Behaviour pinned here (see edge/drivers/modbus/README.md, "Errors & troubleshooting"):
- a unit id nobody on the line has gets no answer (as on a real RTU line): `NotConnected: no answer from
  unit N ... within T s`, after `timeout_s`; the right unit on the same line is read afterwards;
- a PLC that closes its end looks like a silent device: `NotConnected: no answer`; reads resume when it is
  back;
- the line itself disappearing (the USB adapter unplugged) is `NotConnected` for every entry on it, and
  reconnecting names the port;
- several device entries (unit ids) on one port share one serial client: read concurrently, each gets its own
  unit's values; a silent unit is `NotConnected` alone while the others keep reading; the last entry closed
  releases the port; entries disagreeing on the line settings are refused with a message naming both;
- another program holding the port: `NotConnected` saying the port is in use.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusSerialClient

from edge.driver import DriverContext
from edge.drivers.modbus import ModbusDriver
from edge.drivers.modbus.config import ModbusDevice
from edge.drivers.modbus.serial_line import open_lines
from edge.errors import NotConnected
from simulator.modbus_server import ModbusPlc, device_config
from tests.test_modbus_driver import assert_matches, by_tag, machines

LOG = logging.getLogger("test.modbus.rtu")
CTX = DriverContext(LOG)
SOCAT = shutil.which("socat")
BAUD = 19200

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        SOCAT is None,
        reason="socat is not installed (apt-get install socat): the RTU tests need a pseudo-terminal pair",
    ),
]


@dataclass
class Line:
    """Both ends of one serial link: the PLC's device path and the edge's."""

    plc_end: str
    edge_end: str
    proc: subprocess.Popen[bytes]
    log: Path

    def cut(self) -> None:
        """Pull the cable: socat exits and both pseudo-terminals disappear."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def line(tmp_path: Path) -> Iterator[Line]:
    assert SOCAT is not None
    plc_end, edge_end, log = tmp_path / "plc", tmp_path / "edge", tmp_path / "socat.log"
    with open(log, "wb") as err:
        # stdout/stderr not inherited: socat must not hold pytest's pipes open if a test dies.
        proc = subprocess.Popen(
            [
                SOCAT,
                "-d",
                "-d",
                f"pty,raw,echo=0,link={plc_end}",
                f"pty,raw,echo=0,link={edge_end}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    ln = Line(str(plc_end), str(edge_end), proc, log)
    try:
        deadline = time.monotonic() + 5
        while not (plc_end.exists() and edge_end.exists()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"socat did not create the pty pair:\n{log.read_text()}")
            time.sleep(0.02)
        yield ln
    finally:
        ln.cut()


def rtu_device(
    ln: Line, index: int = 0, unit_id: int | None = None, timeout_s: float = 0.5, baud: int = BAUD
) -> ModbusDevice:
    cfg = device_config([f"press-{k:02d}" for k in range(index + 1)], "unused", 0)[index]
    endpoint = f"rtu://{ln.edge_end}?baudrate={baud}&parity=N&stopbits=1&bytesize=8"
    cfg.update({"endpoint": endpoint, "timeout_s": timeout_s})
    if unit_id is not None:
        cfg.update({"unit_id": unit_id, "id": f"unit-{unit_id}-plc"})
    return ModbusDevice.model_validate(cfg)


async def other_program(ln: Line) -> AsyncModbusSerialClient | None:
    """Open the edge end as another program would (its own exclusive client); None when it cannot."""
    client = AsyncModbusSerialClient(ln.edge_end, baudrate=BAUD, timeout=0.5, retries=0, reconnect_delay=0)
    if await client.connect():
        return client
    client.close()
    return None


async def port_is_free(ln: Line) -> bool:
    client = await other_program(ln)
    if client is None:
        return False
    client.close()
    return True


def with_rtu_plc(ln: Line, body: Callable[[ModbusPlc], Awaitable[None]], n: int = 2) -> None:
    async def main() -> None:
        plc = ModbusPlc(machines(n), serial_port=ln.plc_end, baudrate=BAUD)
        await plc.start()
        try:
            async with asyncio.timeout(15):
                await body(plc)
        finally:
            await plc.stop()
            await plc.stop()  # idempotent

    asyncio.run(main())


def test_reads_every_layout_tag_over_rtu_as_the_machine_shows_it(line: Line) -> None:
    async def body(plc: ModbusPlc) -> None:
        for index in (0, 1):  # two units on one line, polled one after the other
            drv = ModbusDriver(rtu_device(line, index), CTX)
            await drv.connect()
            before = plc.requests
            samples = await drv.read()
            assert {s.device_id for s in samples} == {f"press-{index:02d}-plc"}
            assert_matches(samples, plc.expected(index))
            assert_matches(samples, plc.machines[index].values())  # the machine's own values
            assert plc.requests - before == drv.requests == len(drv.blocks) == 4
            await drv.close()
        assert plc.expected(0)["parts_total"] != plc.expected(1)["parts_total"]

        drv = ModbusDriver(rtu_device(line, 0), CTX)
        await drv.connect()
        first = by_tag(await drv.read())["parts_total"].value
        plc.machines[0].advance_to(plc.machines[0].t_us + 2_000_000)
        plc.update()
        samples = await drv.read()
        assert_matches(samples, plc.machines[0].values())
        assert by_tag(samples)["parts_total"].value > first  # type: ignore[operator]
        await drv.close()

    with_rtu_plc(line, body)


def test_wrong_unit_id_gets_no_answer_and_is_not_connected(line: Line) -> None:
    async def body(plc: ModbusPlc) -> None:
        wrong = ModbusDriver(rtu_device(line, 0, unit_id=9), CTX)
        await wrong.connect()  # opening the port works: nothing on a serial line says who is there
        before = plc.requests
        t0 = time.monotonic()
        with pytest.raises(NotConnected, match=r"no answer from unit 9 at rtu://.* within 0.5 s"):
            await wrong.read()
        assert time.monotonic() - t0 < 2.0
        assert plc.requests == before  # no simulated machine saw it
        with pytest.raises(NotConnected, match="not connected"):  # the driver dropped the port
            await wrong.read()
        await wrong.close()

        right = ModbusDriver(rtu_device(line, 0), CTX)  # the line is usable again once the port is free
        await right.connect()
        assert_matches(await right.read(), plc.expected(0))
        await right.close()

    with_rtu_plc(line, body)


def test_plc_closing_its_end_is_not_connected_and_reads_resume(line: Line) -> None:
    async def body(plc: ModbusPlc) -> None:
        drv = ModbusDriver(rtu_device(line, 0), CTX)
        await drv.connect()
        assert_matches(await drv.read(), plc.expected(0))
        await plc.stop()
        with pytest.raises(NotConnected, match="no answer from unit 1"):
            await drv.read()
        await drv.connect()  # the runner's retry: the port opens, the PLC is still silent
        with pytest.raises(NotConnected, match="no answer"):
            await drv.read()
        await plc.start()
        plc.machines[0].advance_to(plc.machines[0].t_us + 1_000_000)
        plc.update()
        await drv.connect()
        assert_matches(await drv.read(), plc.machines[0].values())
        await drv.close()
        await drv.close()

    with_rtu_plc(line, body, n=1)


def test_line_disappearing_is_not_connected_and_reconnect_names_the_port(line: Line) -> None:
    async def body(plc: ModbusPlc) -> None:
        drv = ModbusDriver(rtu_device(line, 0), CTX)
        await drv.connect()
        assert_matches(await drv.read(), plc.expected(0))
        line.cut()
        await asyncio.sleep(0.1)
        with pytest.raises(NotConnected, match=r"not connected|no answer"):
            for _ in range(3):  # the loss may only show on the next request
                await drv.read()
                await asyncio.sleep(0.05)
        assert not os.path.exists(line.edge_end)
        with pytest.raises(NotConnected, match=f"cannot open rtu://{line.edge_end}.*missing"):
            await drv.connect()
        await drv.close()

    with_rtu_plc(line, body, n=1)


def test_line_disappearing_disconnects_every_entry_on_it(line: Line) -> None:
    async def body(plc: ModbusPlc) -> None:
        drivers = [ModbusDriver(rtu_device(line, k), CTX) for k in (0, 1)]
        for drv in drivers:
            await drv.connect()
            await drv.read()
        line.cut()
        await asyncio.sleep(0.1)
        for drv in drivers:
            with pytest.raises(NotConnected, match=r"not connected|no answer"):
                for _ in range(3):
                    await drv.read()
                    await asyncio.sleep(0.05)
        assert open_lines() == {}  # the failed port was closed, not kept for the other entry
        for drv in drivers:
            with pytest.raises(NotConnected, match=f"cannot open rtu://{line.edge_end}.*missing"):
                await drv.connect()
        assert open_lines() == {}

    with_rtu_plc(line, body)


def test_units_on_one_line_share_the_port_and_read_concurrently(line: Line) -> None:
    async def body(plc: ModbusPlc) -> None:
        first, second = (ModbusDriver(rtu_device(line, k), CTX) for k in (0, 1))
        await first.connect()
        await second.connect()  # the same port: joins the open client instead of "in use"
        assert open_lines() == {os.path.realpath(line.edge_end): 2}
        assert not await port_is_free(line)  # one exclusive client, held for both entries
        for _ in range(3):
            before = plc.requests
            a, b = await asyncio.gather(first.read(), second.read())
            assert {s.device_id for s in a} == {"press-00-plc"}
            assert {s.device_id for s in b} == {"press-01-plc"}
            assert_matches(a, plc.expected(0))
            assert_matches(b, plc.expected(1))
            assert plc.requests - before == len(first.blocks) + len(second.blocks) == 8
            plc.machines[1].advance_to(plc.machines[1].t_us + 1_000_000)
            plc.update()
        await first.close()
        assert open_lines() == {os.path.realpath(line.edge_end): 1}
        assert_matches(await second.read(), plc.expected(1))  # the other entry keeps the port
        await first.close()  # twice: releases nothing more
        assert_matches(await second.read(), plc.expected(1))
        await second.close()
        assert open_lines() == {}
        assert await port_is_free(line)  # the last entry out closed the port

    with_rtu_plc(line, body)


def test_a_silent_unit_is_not_connected_alone_while_the_others_keep_reading(line: Line) -> None:
    async def body(plc: ModbusPlc) -> None:
        good = [ModbusDriver(rtu_device(line, k), CTX) for k in (0, 1)]
        wrong = ModbusDriver(rtu_device(line, 0, unit_id=9, timeout_s=0.3), CTX)
        for drv in (*good, wrong):
            await drv.connect()
        assert open_lines() == {os.path.realpath(line.edge_end): 3}
        for _ in range(2):  # the runner's retry of the silent entry: connect again, still no answer
            t0 = time.monotonic()
            a, b, lost = await asyncio.gather(
                good[0].read(), good[1].read(), wrong.read(), return_exceptions=True
            )
            assert time.monotonic() - t0 < 2.0
            assert isinstance(lost, NotConnected)
            assert re.search(r"unit-9-plc: no answer from unit 9 at rtu://.* within 0.3 s", str(lost))
            assert_matches(a, plc.expected(0))  # type: ignore[arg-type]
            assert_matches(b, plc.expected(1))  # type: ignore[arg-type]
            assert open_lines() == {os.path.realpath(line.edge_end): 2}  # only the silent entry let go
            with pytest.raises(NotConnected, match="unit-9-plc: not connected"):
                await wrong.read()
            assert_matches(await good[0].read(), plc.expected(0))
            await wrong.connect()
        for drv in (*good, wrong):
            await drv.close()
        assert open_lines() == {}
        assert await port_is_free(line)

    with_rtu_plc(line, body)


def test_entries_on_one_port_must_agree_on_the_line_settings(line: Line) -> None:
    async def body(plc: ModbusPlc) -> None:
        first = ModbusDriver(rtu_device(line, 0), CTX)
        slow = ModbusDriver(rtu_device(line, 1, baud=9600), CTX)
        await first.connect()
        conflict = r"configuration conflict.*9600 8N1 but press-00-plc use 19200 8N1"
        with pytest.raises(NotConnected, match=conflict):
            await slow.connect()
        assert open_lines() == {os.path.realpath(line.edge_end): 1}
        assert_matches(await first.read(), plc.expected(0))  # the holder is unaffected
        await first.close()
        await slow.close()
        assert await port_is_free(line)

    with_rtu_plc(line, body)


def test_port_held_by_another_program_says_the_port_is_in_use(line: Line) -> None:
    async def body(plc: ModbusPlc) -> None:
        other = await other_program(line)
        assert other is not None
        drv = ModbusDriver(rtu_device(line, 0), CTX)
        in_use = f"cannot open rtu://{line.edge_end}.*in use by another program"
        with pytest.raises(NotConnected, match=in_use):
            await drv.connect()
        assert open_lines() == {}
        other.close()
        await drv.connect()
        assert_matches(await drv.read(), plc.expected(0))
        await drv.close()

    with_rtu_plc(line, body)


