"""The one driver interface. Lifecycle: __init__(device, ctx) (validate, no I/O) -> connect -> read* -> close.

- Per-tag device errors are data: a Modbus exception or an OPC UA Bad status comes back as a Sample
  with quality BAD and the raw status code.
- A lost transport raises NotConnected (from the library's exception); the runner reconnects with backoff.
- Library exceptions (asyncua, pymodbus, paho) never escape a driver.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from core.record import Sample
from edge.errors import NotConnected

__all__ = ["Driver", "DriverContext", "NotConnected", "StateListener"]


@dataclass(frozen=True)
class DriverContext:
    """What the runtime gives every driver besides its device model."""

    log: logging.Logger
    config_dir: Path = field(default_factory=Path.cwd)  # folder of the plant file: relative paths resolve here

# (connected, reason): a driver that learns of its device's state from the data itself (Sparkplug
# NDEATH/NBIRTH) reports it here; transport state is reported by the runner.
StateListener = Callable[[bool, str], None]


class Driver(Protocol):
    kind: ClassVar[str]
    # Seconds between read() calls scheduled by the runner; None: read() blocks until data arrives.
    poll_interval_s: float | None
    on_state: StateListener | None

    def __init__(self, device: Any, ctx: DriverContext) -> None: ...

    async def connect(self) -> None: ...

    async def read(self) -> list[Sample]: ...

    async def close(self) -> None: ...
