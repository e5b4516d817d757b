"""Drivers, one folder each: `<kind>/config.py` (device and tag keys), `<kind>/driver.py`, README, sample.yaml.

The registry is the `shopfloor.drivers` entry-point group in pyproject.toml (one line per driver, pointing at
the device model; core/registry.py). The model names its driver class, imported here only when a device of that
kind runs, so a gateway without OPC UA devices never imports asyncua.
"""

from __future__ import annotations

import importlib
from typing import Any

from core.registry import device_models

__all__ = ["driver_class"]


def driver_class(protocol: str) -> Any:
    """The driver class for a protocol (imported on first use)."""
    module, _, name = device_models()[protocol].driver.partition(":")
    return getattr(importlib.import_module(module), name)

