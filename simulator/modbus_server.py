"""A simulated Modbus TCP PLC: one pymodbus server, machine i answers as unit id i + 1.

`ModbusPlc(..., serial_port="/dev/pts/N")` serves the same devices as Modbus RTU on a serial line instead
(pymodbus `ModbusSerialServer`, RTU framing), e.g. on one end of a `socat` pseudo-terminal pair.

The register layout is fixed (the plant contract's `press-01-plc`) and exercises every type and byte/word
order the driver decodes. Call `update()` after `machine.advance_to(now)`; `expected(i)` is the ground truth
(engineering values) last written for machine i.
"""

from __future__ import annotations

import copy
import struct
from functools import partial
from typing import Any, Literal

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from simulator.machine import STATE_CODES, Machine

# Tag layout as plant-config `tags:` entries (YAML shape); offsets below follow from these addresses.
LAYOUT: list[dict[str, Any]] = [
    {"name": "status", "address": 40001, "type": "uint16"},
    {"name": "parts_total", "address": 40002, "type": "uint32", "word_order": "big"},
    {
        "name": "parts_scrap",
        "address": {"table": "holding", "offset": 3},
        "type": "uint32",
        "word_order": "little",
    },
    {
        "name": "energy_total",
        "address": 40006,
        "type": "float32",
        "word_order": "little",
        "byte_order": "big",
        "scale": 0.1,
    },
    {"name": "power_kw", "address": 30001, "type": "float64", "word_order": "big", "byte_order": "little"},
    {"name": "temp", "address": 30005, "type": "int16", "scale": 0.1, "offset": -40},
    {"name": "door_open", "address": 10001, "type": "bool"},
    {"name": "alarm_bit", "address": 40010, "type": "bool", "bit": 3},
    {"name": "recipe", "address": 40020, "type": "string", "length": 8},
    {"name": "run_hours", "address": 40030, "type": "uint64"},
    {"name": "spindle_load", "address": 40034, "type": "int32"},
]
HOLDING_REGISTERS = 40
INPUT_REGISTERS = 8
STATE_MAP = {code: state for state, code in STATE_CODES.items()}
FailMode = Literal["exception", "silent"] | None
_TABLE_OF_FC = {1: "c", 5: "c", 15: "c", 2: "d", 4: "i", 3: "h", 6: "h", 16: "h", 22: "h", 23: "h"}


def _words(fmt: str, value: Any) -> list[int]:
    raw = struct.pack(fmt, value)
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def _swap(word: int) -> int:
    return ((word & 0xFF) << 8) | (word >> 8)


def plc_values(machine: Machine, run_s: float) -> dict[str, Any]:
    """Engineering values the PLC shows for a machine: its `values()` plus the PLC's own tags."""
    v = machine.values()
    state = machine.state
    running = state == "running"
    return {
        **v,
        "temp": 62.5 if running else 24.0,
        "door_open": state in ("setup", "down"),
        "alarm_bit": state == "down",
        "recipe": f"R-{machine.spec.id}"[:16],
        "run_hours": 20000 + int(run_s // 3600),
        "spindle_load": 5000 + (v["parts_total"] * 37) % 2000 if running else -150,
    }


def encode(values: dict[str, Any]) -> tuple[list[int], list[int], bool]:
    """Engineering values -> (holding registers, input registers, door_open bit) in the fixed layout."""
    h = [0] * HOLDING_REGISTERS
    h[0] = int(values["status"])
    h[1:3] = _words(">I", values["parts_total"])
    h[3:5] = list(reversed(_words(">I", values["parts_scrap"])))  # word_order little
    h[5:7] = list(reversed(_words(">f", values["energy_total"] * 10.0)))  # CDAB, raw = kWh * 10
    h[9] = 0x8000 | (int(values["status"] == 1)) | (int(values["alarm_bit"]) << 3)  # bit 15: heartbeat
    text = values["recipe"].encode("latin-1")[:16].ljust(16, b"\x00")
    h[19:27] = [int.from_bytes(text[i : i + 2], "big") for i in range(0, 16, 2)]
    h[29:33] = _words(">Q", values["run_hours"])
    h[33:35] = _words(">i", values["spindle_load"])
    i = [0] * INPUT_REGISTERS
    i[0:4] = [_swap(w) for w in _words(">d", values["power_kw"])]  # BADC
    i[4] = round((values["temp"] + 40.0) / 0.1)
    return h, i, bool(values["door_open"])


_SILENT_SIMDATA = (
    [SimData(0, count=1, values=False, datatype=DataType.BITS)],
    [SimData(0, count=1, values=False, datatype=DataType.BITS)],
    [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)],
    [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)],
)


async def _silent(*_args: Any) -> ExcCodes | None:
    """SimDevice action of the RTU stand-in for absent unit ids: no response at all."""
    raise NoSuchIdException("no such unit on this line")


class ModbusPlc:
    """Serves `machines` over Modbus TCP on (host, port); `fail_mode` makes it misbehave for tests.

    With `serial_port` set it serves Modbus RTU on that serial device instead (host and port unused);
    `baudrate`, `parity`, `stopbits` and `bytesize` are the line settings.
    """

    def __init__(
        self,
        machines: list[Machine],
        host: str = "127.0.0.1",
        port: int = 5020,
        *,
        serial_port: str | None = None,
        baudrate: int = 19200,
        parity: str = "N",
        stopbits: int = 1,
        bytesize: int = 8,
    ) -> None:
        self.machines = machines
        self.host = host
        self.port = port
        self.serial_port = serial_port
        self.serial_settings: dict[str, Any] = {
            "baudrate": baudrate,
            "parity": parity,
            "stopbits": stopbits,
            "bytesize": bytesize,
        }
        self.fail_mode: FailMode = None
        self.requests = 0  # read/write requests answered (or swallowed), all units
        self._run_s = [0.0] * len(machines)
        self._last_t_us = [m.t_us for m in machines]
        self._expected: list[dict[str, Any]] = [{} for _ in machines]
        self._images: list[dict[str, list[int]]] = [{} for _ in machines]
        self._forced: dict[tuple[int, str, int], int] = {}
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self.update()

    def expected(self, index: int) -> dict[str, Any]:
        """Engineering values last written for machine `index` (the ground truth a driver must read)."""
        return dict(self._expected[index])

    def force(self, index: int, table: Literal["holding", "input"], offset: int, words: list[int]) -> None:
        """Pin raw register values for machine `index` (as a PLC programmer forces I/O) until `unforce()`."""
        for k, word in enumerate(words):
            self._forced[(index, table[0], offset + k)] = word & 0xFFFF
        self.update()

    def unforce(self) -> None:
        """Release every forced register."""
        self._forced.clear()
        self.update()

    def update(self) -> None:
        """Write every machine's current values into its registers."""
        for k, m in enumerate(self.machines):
            if m.state == "running":
                self._run_s[k] += max(0, m.t_us - self._last_t_us[k]) / 1e6 * m.spec.speed
            self._last_t_us[k] = m.t_us
            values = plc_values(m, self._run_s[k])
            h, i, door = encode(values)
            self._images[k] = {"h": h, "i": i, "d": [int(door)], "c": [0]}
            self._expected[k] = values
        for (k, table, offset), word in self._forced.items():
            self._images[k][table][offset] = word

    async def _action(
        self,
        index: int,
        function_code: int,
        _start: int,
        _address: int,
        _count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Runs inside pymodbus before each request is answered: copy the current image in, or fail."""
        self.requests += 1
        if self.fail_mode == "exception":
            return ExcCodes.DEVICE_FAILURE
        if self.fail_mode == "silent":
            raise NoSuchIdException("silent")  # with ignore_missing_devices=True: no response at all
        image = self._images[index].get(_TABLE_OF_FC.get(function_code, ""), [])
        if set_values is None:
            registers[: len(image)] = image
        return None

    def _device(self, index: int) -> SimDevice:
        return SimDevice(
            id=index + 1,
            simdata=(
                [SimData(0, count=16, values=False, datatype=DataType.BITS)],
                [SimData(0, count=16, values=False, datatype=DataType.BITS)],
                [SimData(0, count=HOLDING_REGISTERS, values=0, datatype=DataType.REGISTERS)],
                [SimData(0, count=INPUT_REGISTERS, values=0, datatype=DataType.REGISTERS)],
            ),
            action=partial(self._action, index),
        )

    async def start(self) -> None:
        """Listen on (host, port), or open the serial port; returns once the socket is bound / port open."""
        if self._server is not None:
            return
        devices = [self._device(k) for k in range(len(self.machines))]
        server: ModbusTcpServer | ModbusSerialServer
        if self.serial_port is not None:
            # RTU: a unit id nobody has gets no answer at all, as on a real multidrop line. pymodbus 3.16's
            # simulator routes unknown ids to device 0 (and answers "device failure" when there is none), so
            # device 0 is a stand-in that stays silent (with ignore_missing_devices=True).
            server = ModbusSerialServer(
                [*devices, SimDevice(id=0, simdata=_SILENT_SIMDATA, action=_silent)],
                port=self.serial_port,
                ignore_missing_devices=True,
                reconnect_delay=0,
                **self.serial_settings,
            )
        else:
            server = ModbusTcpServer(devices, address=(self.host, self.port), ignore_missing_devices=True)
        await server.serve_forever(background=True)
        self._server = server

    async def stop(self) -> None:
        """Close the listener and every client connection (or the serial port); safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()


def device_config(
    machine_ids: list[str], host: str, port: int, poll_interval_s: float = 1.0
) -> list[dict[str, Any]]:
    """Plant-config `devices:` entries (plain dicts) reading the layout, machine i as unit id i + 1."""
    return [
        {
            "id": f"{mid}-plc",
            "protocol": "modbus",
            "endpoint": f"tcp://{host}:{port}",
            "unit_id": k + 1,
            "poll_interval_s": poll_interval_s,
            "tags": copy.deepcopy(LAYOUT),
        }
        for k, mid in enumerate(machine_ids)
    ]


def signals_config() -> dict[str, Any]:
    """A machine's `signals:` mapping onto the layout's tags."""
    return {
        "state": {"tag": "status", "map": dict(STATE_MAP)},
        "total_count": {"tag": "parts_total"},
        "scrap_count": {"tag": "parts_scrap"},
        "energy_kwh": {"tag": "energy_total"},
        "power_kw": {"tag": "power_kw"},
    }
