"""Sample and connection events: the only things a driver emits, and the uplink wire format.

A sample's identity is (device_id, tag, ts_us). Times are integer microseconds since the Unix epoch, UTC,
stamped once (source time where the device gives one, else the edge's clock) and never re-stamped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Quality(StrEnum):
    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass(slots=True)
class Sample:
    device_id: str
    tag: str
    ts_us: int
    value: float | None = None
    text: str | None = None
    quality: Quality = Quality.GOOD
    status: int = 0  # raw protocol status (OPC UA StatusCode, Modbus exception code, ...)
    server_ts_us: int | None = None
    historical: bool = False  # Sparkplug is_historical, or replayed from a device buffer
    # stamped by the edge runtime, once
    gateway_id: str = ""
    boot_epoch: int = 0
    seq: int = 0

    def to_row(self) -> list[Any]:
        return [self.device_id, self.tag, self.ts_us, self.value, self.text, str(self.quality), self.status,
                self.server_ts_us, self.historical, self.gateway_id, self.boot_epoch, self.seq]

    @classmethod
    def from_row(cls, r: list[Any]) -> Sample:
        if not isinstance(r, list) or len(r) != 12:
            raise ValueError("sample row must be a list of 12 fields")
        dev, tag, ts, val, text, q, st, sts, hist, gw, boot, seq = r
        if not isinstance(dev, str) or not dev or not isinstance(tag, str) or not tag:
            raise ValueError("device_id and tag must be non-empty strings")
        if not isinstance(ts, int) or isinstance(ts, bool):
            raise ValueError("ts_us must be an integer")
        if val is not None and (not isinstance(val, int | float) or isinstance(val, bool)):
            raise ValueError("value must be a number or null")
        if val is not None and val != val:
            val = None  # NaN carries no information; keep the row with text/quality
        return cls(dev, tag, ts, None if val is None else float(val), text, Quality(q), int(st),
                   sts, bool(hist), str(gw), int(boot), int(seq))


@dataclass(slots=True)
class StatusEvent:
    """A device's connection changed: connected / disconnected, with the reason a person can act on."""

    device_id: str
    ts_us: int
    state: str  # "connected" | "disconnected"
    reason: str = ""
    gateway_id: str = ""

    def to_row(self) -> list[Any]:
        return [self.device_id, self.ts_us, self.state, self.reason, self.gateway_id]

    @classmethod
    def from_row(cls, r: list[Any]) -> StatusEvent:
        if not isinstance(r, list) or len(r) != 5:
            raise ValueError("status row must be a list of 5 fields")
        dev, ts, state, reason, gw = r
        if state not in ("connected", "disconnected"):
            raise ValueError(f"unknown device state {state!r}")
        if not isinstance(ts, int):
            raise ValueError("ts_us must be an integer")
        return cls(str(dev), ts, state, str(reason), str(gw))


@dataclass(slots=True)
class Batch:
    """What the uplink carries: one gateway's samples and events, with an id the collector acknowledges."""

    gateway_id: str
    batch_id: int
    samples: list[Sample] = field(default_factory=list)
    events: list[StatusEvent] = field(default_factory=list)

    def encode(self) -> bytes:
        return json.dumps({"v": 1, "gateway_id": self.gateway_id, "batch_id": self.batch_id,
                           "samples": [s.to_row() for s in self.samples],
                           "events": [e.to_row() for e in self.events]},
                          separators=(",", ":")).encode()

    @classmethod
    def decode(cls, payload: bytes) -> Batch:
        """Parse an uplink payload; ValueError says what is wrong (the collector quarantines it)."""
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("v") != 1:
            raise ValueError("not a shopfloor v1 batch (missing \"v\": 1)")
        try:
            samples = [Sample.from_row(r) for r in doc["samples"]]
            events = [StatusEvent.from_row(r) for r in doc.get("events", [])]
            return cls(str(doc["gateway_id"]), int(doc["batch_id"]), samples, events)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bad batch: {exc}") from exc
