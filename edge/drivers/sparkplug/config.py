"""Sparkplug B device and tag keys (DESIGN.md "Plant config", sparkplug)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from core.devices import BrokerDevice, TagBase


class SparkplugTag(TagBase):
    metric: str = Field(min_length=1)


class SparkplugDevice(BrokerDevice):
    driver: ClassVar[str] = "edge.drivers.sparkplug.driver:SparkplugDriver"

    protocol: Literal["sparkplug"]
    group_id: str = Field(min_length=1)
    edge_node_id: str = Field(min_length=1)
    device_id: str | None = None
    primary_host_id: str | None = None
    mqtt_version: Literal["3.1.1", "5"] = "3.1.1"
    tags: list[SparkplugTag] = Field(min_length=1)
