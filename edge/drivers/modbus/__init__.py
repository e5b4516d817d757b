"""Modbus TCP/RTU driver: block reads planned from the tag list, decoding in `codec` (pure).

Importing this package stays light (the device model lives in `config`); the driver and its protocol library
are imported on first use of `ModbusDriver`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ModbusDriver"]


def __getattr__(name: str) -> Any:
    if name == "ModbusDriver":
        from edge.drivers.modbus.driver import ModbusDriver

        return ModbusDriver
    raise AttributeError(name)
