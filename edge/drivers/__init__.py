"""Driver registry: protocol name (the config's `protocol`) -> driver class. One line per driver."""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "modbus": "edge.drivers.modbus:ModbusDriver",
    "opcua": "edge.drivers.opcua:OpcUaDriver",
    "mqtt": "edge.drivers.mqtt:MqttDriver",
    "sparkplug": "edge.drivers.sparkplug:SparkplugDriver",
}


def driver_class(protocol: str) -> Any:
    """Import lazily so a gateway without, say, OPC UA devices never imports asyncua."""
    module, _, name = _MODULES[protocol].partition(":")
    return getattr(importlib.import_module(module), name)


PROTOCOLS = tuple(_MODULES)
