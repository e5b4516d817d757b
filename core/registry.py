"""Which device kinds exist: the `shopfloor.drivers` entry-point group, one line per driver in pyproject.toml.

`protocol = "package.module:DeviceModel"`; the model subclasses core.devices.DeviceBase and names its driver
class in `DeviceModel.driver`. The core imports no driver by name: adding a driver is one folder plus one
registry line, and the device union of the plant model, the protocol list and the edge's driver lookup all
follow from here.
"""

from __future__ import annotations

import logging
from functools import cache
from importlib.metadata import entry_points

from core.devices import DeviceBase
from core.errors import ConfigError

GROUP = "shopfloor.drivers"
log = logging.getLogger(__name__)


@cache
def device_models() -> dict[str, type[DeviceBase]]:
    """protocol -> device model, for every driver registered in the installed distribution(s)."""
    models: dict[str, type[DeviceBase]] = {}
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            model = ep.load()
        except ImportError as exc:
            log.warning("driver=%s event=driver_config_unavailable error=%r hint='reinstall shopfloor'", ep.name, str(exc))
            continue
        if not (isinstance(model, type) and issubclass(model, DeviceBase)):
            raise ConfigError(f"entry point {GROUP}:{ep.name} = {ep.value} is not a core.devices.DeviceBase model")
        models[ep.name] = model
    if not models:
        raise ConfigError(f"no device drivers registered (entry-point group {GROUP!r} is empty): install the "
                          "package (pip install -e . or pip install shopfloor) rather than running from a bare checkout")
    return models


def protocols() -> tuple[str, ...]:
    return tuple(device_models())
