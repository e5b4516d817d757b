"""The base of every driver's device and tag model, and what later stages may ask of a device.

Each driver declares its own model next to its code (`edge/drivers/<kind>/config.py`), subclassing
`DeviceBase` and `TagBase`, and registers it in the `shopfloor.drivers` entry-point group (core/registry.py).
Stages after the edge never look at protocol names: they ask the device model (`polled`, `counter_modulus`).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.mqtt import parse_broker_url, redact_url
from core.wire_limits import id_problem

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def topic_safe_id(v: str, what: str) -> str:
    """An id that becomes one MQTT topic level: letters, digits, . _ - (at most 64), no wildcards or slashes."""
    if not SAFE_ID.match(v):
        raise ValueError(f"{what} {v[:80]!r} is not topic-safe: use 1-64 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit (no '/', '+', '#', spaces)")
    return v


def gateway_id_value(v: str | None) -> str | None:
    """Validate a gateway id: it is an MQTT topic level and the gateway's broker user name."""
    problem = id_problem(v, "gateway id") if v is not None else None
    if problem:
        raise ValueError(problem)
    return None if v is None else topic_safe_id(v, "gateway id")


class Model(BaseModel):
    """Base of every config model: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TagBase(Model):
    name: str = Field(min_length=1)


class DeviceBase(Model):
    """Keys every device has; a driver's model narrows `protocol` to its own name and `tags` to its tag type."""

    # "package.module:Class" of the driver that reads this kind of device (imported only by the edge).
    driver: ClassVar[str] = ""

    id: str = Field(min_length=1)
    protocol: str
    endpoint: str
    poll_interval_s: float = Field(default=1.0, gt=0, le=86400)
    timeout_s: float = Field(default=3.0, gt=0, le=600)
    tags: list[Any] = Field(min_length=1)
    gateway: str | None = None  # the gateway that reads this device (absent: edge.gateway_id, or `gateways:`)

    @field_validator("gateway")
    @classmethod
    def _gateway_id(cls, v: str | None) -> str | None:
        return gateway_id_value(v)

    @field_validator("endpoint")
    @classmethod
    def _no_credentials(cls, v: str) -> str:
        if "@" in (urlsplit(v).netloc if "://" in v else ""):
            raise ValueError("the endpoint carries credentials (user:password@host); write the host only, put the "
                             "user in 'username' and the password in an environment variable named by "
                             "'password_env' (for OPC UA under 'security')")
        return v

    def tag(self, name: str) -> Any:
        """The tag called `name`; KeyError if the device has none."""
        for t in self.tags:
            if t.name == name:
                return t
        raise KeyError(name)

    def polled(self, tag: str) -> bool:
        """True when the edge re-reads the tag every poll_interval_s; False when it reports by exception
        (subscriptions, published messages), so a sample may legitimately hold for hours."""
        return False

    def counter_modulus(self, tag: str) -> float | None:
        """The value at which the tag, read as a counter, wraps to 0 (from its declared type); None if undeclared."""
        return None


def mqtt_endpoint(v: str) -> str:
    """Validate an mqtt:// or mqtts:// device endpoint."""
    try:
        parse_broker_url(v)
    except ValueError as exc:
        raise ValueError(f"endpoint must be mqtt://host:1883 or mqtts://host:8883, got {redact_url(v)!r}") from exc
    return v


class BrokerDevice(DeviceBase):
    """Keys of a device read through an MQTT broker (plain MQTT JSON, Sparkplug B)."""

    username: str | None = None
    password_env: str | None = None
    ca_file: str | None = None
    mqtt_version: Literal["3.1.1", "5"] = "5"

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        return mqtt_endpoint(v)
