"""Modbus TCP/RTU device and tag keys (DESIGN.md "Plant config", modbus)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal
from urllib.parse import parse_qs, urlparse

from pydantic import Field, field_validator, model_validator

from core.devices import DeviceBase, Model, TagBase

ModbusTable = Literal["holding", "input", "coil", "discrete"]
_MODICON = {0: "coil", 1: "discrete", 3: "input", 4: "holding"}


class ModbusAddress(Model):
    table: ModbusTable
    offset: int = Field(ge=0, le=65535)


def parse_modicon(v: int) -> ModbusAddress:
    """40001 -> holding 0, 30001 -> input 0, 1 -> coil 0, 10001 -> discrete 0; six-digit 400001 too."""
    if v <= 0:
        raise ValueError(f"Modicon address must be positive, got {v}")
    if v < 100000:
        prefix, number = divmod(v, 10000)
    else:
        prefix, number = divmod(v, 100000)
    if prefix not in _MODICON or number < 1:
        raise ValueError(
            f"{v} is not a Modicon address (use 00001-09999 coils, 10001 discrete inputs, "
            "30001 input registers, 40001 holding registers, or {table: holding, offset: 0})"
        )
    return ModbusAddress(table=_MODICON[prefix], offset=number - 1)  # type: ignore[arg-type]


ModbusType = Literal["bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"]
REGISTER_COUNT = {"bool": 1, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2,
                  "int64": 4, "uint64": 4, "float64": 4}
UNSIGNED_BITS = {"uint16": 16, "uint32": 32, "uint64": 64}


class ModbusTag(TagBase):
    address: ModbusAddress
    type: ModbusType = "uint16"
    word_order: Literal["big", "little"] = "big"
    byte_order: Literal["big", "little"] = "big"
    bit: int | None = Field(default=None, ge=0, le=15)
    length: int | None = Field(default=None, ge=1, le=125)
    scale: float = 1.0
    offset: float = 0.0

    @field_validator("address", mode="before")
    @classmethod
    def _address(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("address must be a Modicon number or {table, offset}")
        if isinstance(v, int):
            return parse_modicon(v)
        if isinstance(v, str) and v.isdigit():
            return parse_modicon(int(v))
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ModbusTag:
        bit_table = self.address.table in ("coil", "discrete")
        if bit_table and self.type != "bool":
            raise ValueError(f"{self.address.table} addresses hold single bits: type must be bool, not {self.type}")
        if self.bit is not None and (bit_table or self.type not in ("bool", "uint16", "int16")):
            raise ValueError("'bit' selects a bit in one register: use it with type bool on a holding/input register")
        if self.type == "string" and self.length is None:
            raise ValueError("type string needs 'length' (in registers, 2 characters each)")
        return self

    @property
    def register_count(self) -> int:
        if self.type == "string":
            return self.length or 1
        return REGISTER_COUNT[self.type]


class ModbusDevice(DeviceBase):
    driver: ClassVar[str] = "edge.drivers.modbus.driver:ModbusDriver"

    protocol: Literal["modbus"]
    unit_id: int = Field(default=1, ge=0, le=255)
    max_block_registers: int = Field(default=125, ge=1, le=125)
    max_gap_registers: int = Field(default=8, ge=0, le=125)
    tags: list[ModbusTag] = Field(min_length=1)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        u = urlparse(v)
        if u.scheme == "tcp":
            if not u.hostname:
                raise ValueError(f"modbus tcp endpoint needs a host: {v!r} (tcp://host:502)")
        elif u.scheme == "rtu":
            if not u.path:
                raise ValueError(f"modbus rtu endpoint needs a serial port: {v!r} (rtu:///dev/ttyUSB0?baudrate=19200)")
            q = parse_qs(u.query)
            for key in q:
                if key not in ("baudrate", "parity", "stopbits", "bytesize"):
                    raise ValueError(f"unknown rtu option {key!r} (baudrate, parity, stopbits, bytesize)")
        else:
            raise ValueError(f"modbus endpoint must start with tcp:// or rtu://, got {v!r}")
        return v

    def polled(self, tag: str) -> bool:
        return True  # every Modbus register is read on each poll

    def counter_modulus(self, tag: str) -> float | None:
        t = self.tag(tag)
        bits = UNSIGNED_BITS.get(t.type)
        return None if bits is None else float(2**bits) * abs(t.scale)
