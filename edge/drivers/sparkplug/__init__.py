"""Sparkplug B driver: births, data and deaths of an edge node (and its devices), with alias maps.

Importing this package stays light (the device model lives in `config`); the driver and its protocol library
are imported on first use of `SparkplugDriver`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SparkplugDriver"]


def __getattr__(name: str) -> Any:
    if name == "SparkplugDriver":
        from edge.drivers.sparkplug.driver import SparkplugDriver

        return SparkplugDriver
    raise AttributeError(name)
