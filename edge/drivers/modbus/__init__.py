"""Modbus TCP/RTU driver: block reads planned from the tag list, decoding in `codec` (pure)."""

from edge.drivers.modbus.driver import ModbusDriver

__all__ = ["ModbusDriver"]
