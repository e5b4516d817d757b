"""OPC UA driver: subscriptions or polling, security policies and a server trust list.

Importing this package stays light (the device model lives in `config`); the driver and its protocol library
are imported on first use of `OpcUaDriver`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OpcUaDriver"]


def __getattr__(name: str) -> Any:
    if name == "OpcUaDriver":
        from edge.drivers.opcua.driver import OpcUaDriver

        return OpcUaDriver
    raise AttributeError(name)
