"""MQTT (JSON) device and tag keys (DESIGN.md "Plant config", mqtt)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from core.devices import BrokerDevice, TagBase


class MqttTag(TagBase):
    topic: str = Field(min_length=1)
    json_path: str = "$"
    timestamp_path: str | None = None

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        parts = v.split("/")
        for i, p in enumerate(parts):
            if "#" in p and (p != "#" or i != len(parts) - 1):
                raise ValueError(f"'#' must be the last level of a topic filter: {v!r}")
            if "+" in p and p != "+":
                raise ValueError(f"'+' must fill a whole topic level: {v!r}")
        return v

    @field_validator("json_path", "timestamp_path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is not None:
            from edge.jsonpath import compile_path

            compile_path(v)  # raises ValueError with the position
        return v


class MqttDevice(BrokerDevice):
    driver: ClassVar[str] = "edge.drivers.mqtt.driver:MqttDriver"

    protocol: Literal["mqtt"]
    tags: list[MqttTag] = Field(min_length=1)
