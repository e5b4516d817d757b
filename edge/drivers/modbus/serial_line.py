"""One shared pymodbus serial client per Modbus RTU line (serial port) in the process, ref-counted.

An RTU line carries several slaves (unit ids), but pymodbus opens a serial port exclusively, so every device
entry on one port shares one client: `ModbusDriver.connect()` acquires the line, `close()` releases it, and
the last release closes the port. The entries' requests go one at a time under the line's asyncio.Lock (RTU
is half-duplex: one request, one answer). Lines are keyed by the port's real path (a /dev/serial/by-id link
and /dev/ttyUSB0 are one line); entries on one line must agree on baudrate, parity, stopbits and bytesize.

The registry is per event loop: asyncio clients and locks belong to the loop that created them.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any
from weakref import WeakKeyDictionary

from pymodbus.client import AsyncModbusSerialClient

from edge.errors import NotConnected

_LINES: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, SerialLine]] = WeakKeyDictionary()


def _describe(settings: dict[str, Any]) -> str:
    """{'baudrate': 19200, 'parity': 'N', 'stopbits': 1, 'bytesize': 8} -> '19200 8N1'."""
    return f"{settings['baudrate']} {settings['bytesize']}{settings['parity']}{settings['stopbits']}"


class SerialLine:
    """One serial port: its settings, its (re)opened client, the request lock and who holds it."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, key: str, port: str, settings: dict[str, Any]
    ) -> None:
        self.loop = loop
        self.key = key  # real path of the port
        self.port = port  # as the first holder wrote it
        self.settings = settings  # AsyncModbusSerialClient line settings (no port)
        self.lock = asyncio.Lock()  # held for one request/answer, and while (re)opening the port
        self.holders: dict[object, str] = {}  # driver -> device id
        self.client: AsyncModbusSerialClient | None = None

    @property
    def is_open(self) -> bool:
        return self.client is not None and self.client.connected

    async def ensure_open(self, timeout_s: float) -> bool:
        """(Re)open the port unless it is open; False when pymodbus could not open it (it only logs why).

        Raises what pymodbus raises (TimeoutError, ModbusException, OSError); the caller wraps it.
        """
        async with self.lock:
            if self.is_open:
                return True
            self.drop()
            # reconnect_delay=0: the runner owns reconnection; retries=0: one timeout is one failure.
            client = AsyncModbusSerialClient(
                port=self.port, **self.settings, timeout=timeout_s, retries=0, reconnect_delay=0
            )
            try:
                ok = await client.connect()
            except BaseException:
                client.close()
                raise
            if not ok:
                client.close()
                return False
            self.client = client
            return True

    def drop(self) -> None:
        """Close the port (it failed, or nobody holds it); holders see `not connected` and reconnect."""
        client, self.client = self.client, None
        if client is not None:
            client.close()


def acquire(holder: object, device_id: str, endpoint: str, options: dict[str, Any]) -> SerialLine:
    """Register `holder` on the line of `options['port']` (no I/O; call `SerialLine.ensure_open` next).

    Different line settings than the entries already on the port raise NotConnected naming them.
    """
    loop = asyncio.get_running_loop()
    lines = _LINES.setdefault(loop, {})
    port = options["port"]
    key = os.path.realpath(port)
    settings = {k: v for k, v in options.items() if k != "port"}
    line = lines.get(key)
    if line is None:
        line = lines[key] = SerialLine(loop, key, port, settings)
    elif line.settings != settings:
        others = ", ".join(sorted(set(line.holders.values())))
        raise NotConnected(
            f"modbus {device_id}: configuration conflict on serial port {port}: {endpoint} asks for "
            f"{_describe(settings)} but {others} use {_describe(line.settings)} on the same port; every "
            "device entry on one RTU line must use the same baudrate, parity, stopbits and bytesize "
            "(fix the plant file)"
        )
    line.holders[holder] = device_id
    return line


def release(holder: object, line: SerialLine) -> None:
    """Unregister `holder`; the last holder out closes the port. Safe to call twice."""
    line.holders.pop(holder, None)
    if line.holders:
        return
    line.drop()
    lines = _LINES.get(line.loop)
    if lines is not None and lines.get(line.key) is line:
        del lines[line.key]


def open_lines() -> dict[str, int]:
    """Lines registered on the running loop: real port path -> number of holders (for tests and health)."""
    lines = _LINES.get(asyncio.get_running_loop(), {})
    return {key: len(line.holders) for key, line in lines.items()}
