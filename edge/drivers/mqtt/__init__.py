"""MQTT driver: JSON payloads on (wildcard) topics mapped to tags with json_path.

Importing this package stays light (the device model lives in `config`); the driver and its protocol library
are imported on first use of `MqttDriver`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MqttDriver"]


def __getattr__(name: str) -> Any:
    if name == "MqttDriver":
        from edge.drivers.mqtt.driver import MqttDriver

        return MqttDriver
    raise AttributeError(name)
