"""Modbus TCP / RTU driver: one poll = one request per planned block.

TCP: one client per device. RTU: one client per serial port, shared by every device entry (unit id) on that
line and reference counted (serial_line.py); requests on one line are serialized.

Validation and the block plan happen in __init__ (no I/O). A Modbus exception response is data (BAD samples
carrying the exception code); a timeout or a lost transport raises NotConnected and the runner reconnects.
"""

from __future__ import annotations

import logging
from math import isfinite
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException

from core.errors import ConfigError
from core.record import Quality, Sample, now_us
from edge.driver import DriverContext, StateListener
from edge.drivers.modbus import serial_line
from edge.drivers.modbus.codec import BIT_TABLES, MAX_BITS, Block, BlockDecoder, plan_blocks
from edge.drivers.modbus.config import ModbusDevice
from edge.errors import NotConnected

_PARITY = {"N", "E", "O", "M", "S"}


def serial_options(endpoint: str) -> dict[str, Any]:
    """rtu:///dev/ttyUSB0?baudrate=19200&parity=N&stopbits=1&bytesize=8 -> AsyncModbusSerialClient kwargs."""
    u = urlparse(endpoint)
    q = {k: v[-1] for k, v in parse_qs(u.query).items()}
    try:
        opts: dict[str, Any] = {
            "port": u.path,
            "baudrate": int(q.get("baudrate", 19200)),
            "parity": q.get("parity", "N").upper(),
            "stopbits": int(q.get("stopbits", 1)),
            "bytesize": int(q.get("bytesize", 8)),
        }
    except ValueError as exc:
        raise ConfigError(
            f"modbus rtu endpoint {endpoint!r}: baudrate, stopbits and bytesize are numbers"
        ) from exc
    if opts["parity"] not in _PARITY:
        raise ConfigError(f"modbus rtu endpoint {endpoint!r}: parity must be one of N, E, O, M, S")
    if opts["stopbits"] not in (1, 2) or opts["bytesize"] not in (5, 6, 7, 8):
        raise ConfigError(f"modbus rtu endpoint {endpoint!r}: stopbits 1|2, bytesize 5..8")
    return opts


class ModbusDriver:
    """Polls one Modbus device (one unit id behind one TCP endpoint or serial line)."""

    kind: ClassVar[str] = "modbus"

    def __init__(self, device: ModbusDevice, ctx: DriverContext | None = None) -> None:
        self.device = device
        self.log = ctx.log if ctx is not None else logging.getLogger(__name__)
        self.poll_interval_s: float | None = device.poll_interval_s
        self.on_state: StateListener | None = None
        self.requests = 0  # requests sent since construction (for tests and counters)
        u = urlparse(device.endpoint)
        self._serial = serial_options(device.endpoint) if u.scheme == "rtu" else None
        self._host = u.hostname or ""
        self._port = u.port or 502
        for tag in device.tags:
            if tag.address.offset + tag.register_count > 65536:
                raise ConfigError(f"device {device.id!r} tag {tag.name!r}: address range ends past 65535")
        self.blocks: list[Block] = plan_blocks(
            device.tags, device.max_block_registers, device.max_gap_registers, MAX_BITS
        )
        self._decoders = [BlockDecoder(b) for b in self.blocks]
        self._client: AsyncModbusTcpClient | None = None  # TCP: one client per device
        self._line: serial_line.SerialLine | None = None  # RTU: the serial port's shared client

    # ------------------------------------------------------------------ lifecycle
    async def connect(self) -> None:
        """Open the transport (RTU: join the shared client of the serial port); NotConnected says why."""
        await self.close()
        if self._serial is not None:
            await self._connect_serial(self._serial)
            return
        # reconnect_delay=0: the runner owns reconnection and backoff; retries=0: one timeout is one failure.
        client = AsyncModbusTcpClient(
            self._host, port=self._port, timeout=self.device.timeout_s, retries=0, reconnect_delay=0
        )
        try:
            ok = await client.connect()
        except (TimeoutError, ModbusException, OSError) as exc:
            client.close()
            raise NotConnected(f"modbus {self.device.id}: cannot open {self.device.endpoint}: {exc}") from exc
        if not ok:
            client.close()
            raise NotConnected(
                f"modbus {self.device.id}: cannot connect to {self.device.endpoint} "
                "(check host/port or serial port, cabling, and that the device is on)"
            )
        self._client = client

    async def _connect_serial(self, options: dict[str, Any]) -> None:
        line = serial_line.acquire(self, self.device.id, self.device.endpoint, options)
        try:
            try:
                ok = await line.ensure_open(self.device.timeout_s)
            except (TimeoutError, ModbusException, OSError) as exc:
                raise NotConnected(
                    f"modbus {self.device.id}: cannot open {self.device.endpoint}: {exc}"
                ) from exc
            if not ok:  # pymodbus only logs why it could not open the port
                raise NotConnected(
                    f"modbus {self.device.id}: cannot open {self.device.endpoint}: the serial port is "
                    "missing, in use by another program (pymodbus locks the port exclusively) or not "
                    "permitted (dialout group)"
                )
        except BaseException:
            serial_line.release(self, line)
            raise
        self._line = line

    async def close(self) -> None:
        """Drop the transport (RTU: release the shared port, the last one out closes it); idempotent."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
        line, self._line = self._line, None
        if line is not None:
            serial_line.release(self, line)

    # ------------------------------------------------------------------ polling
    async def read(self) -> list[Sample]:
        """One poll of every block; a block answered with a Modbus exception gives BAD samples."""
        samples: list[Sample] = []
        for decoder in self._decoders:
            samples.extend(await self._read_block(decoder))
        return samples

    async def _request(self, block: Block) -> Any:
        line = self._line
        if line is None:
            return await self._exchange(self._client, block, None)
        async with line.lock:  # one request on the line at a time, whichever device entry sends it
            return await self._exchange(line.client, block, line)

    async def _exchange(
        self,
        client: AsyncModbusTcpClient | AsyncModbusSerialClient | None,
        block: Block,
        line: serial_line.SerialLine | None,
    ) -> Any:
        if client is None or not client.connected:
            await self.close()
            raise NotConnected(f"modbus {self.device.id}: not connected to {self.device.endpoint}")
        unit = self.device.unit_id
        if line is not None:  # the shared client answers within this device's timeout_s
            client.ctx.comm_params.timeout_connect = self.device.timeout_s
        self.requests += 1
        try:
            if block.table == "holding":
                return await client.read_holding_registers(block.start, count=block.count, device_id=unit)
            if block.table == "input":
                return await client.read_input_registers(block.start, count=block.count, device_id=unit)
            if block.table == "coil":
                return await client.read_coils(block.start, count=block.count, device_id=unit)
            return await client.read_discrete_inputs(block.start, count=block.count, device_id=unit)
        except (TimeoutError, ModbusException, OSError) as exc:
            # A silent unit leaves the shared port open for the other units on the line; a failed port
            # (transport lost, OS error) is closed so that every entry on it reconnects.
            port_failed = isinstance(exc, OSError | ConnectionException) or not client.connected
            if line is not None and port_failed:
                line.drop()
            await self.close()
            raise NotConnected(
                f"modbus {self.device.id}: no answer from unit {unit} at {self.device.endpoint} "
                f"within {self.device.timeout_s} s ({exc})"
            ) from exc

    async def _read_block(self, decoder: BlockDecoder) -> list[Sample]:
        block = decoder.block
        response = await self._request(block)
        ts = now_us()
        dev = self.device.id
        if response.isError():
            code = int(getattr(response, "exception_code", 0) or 0)
            self.log.debug(
                "modbus exception device=%s table=%s start=%d count=%d code=%d",
                dev,
                block.table,
                block.start,
                block.count,
                code,
            )
            return [Sample(dev, t.name, ts, quality=Quality.BAD, status=code) for t in block.tags]
        data = response.bits if block.table in BIT_TABLES else response.registers
        out: list[Sample] = []
        for name, value in decoder.decode(data):
            if isinstance(value, float | int) and isfinite(value):
                out.append(Sample(dev, name, ts, value=float(value)))
            elif isinstance(value, str):
                out.append(Sample(dev, name, ts, text=value))
            else:  # short response, NaN or infinity
                out.append(Sample(dev, name, ts, quality=Quality.BAD))
        return out
