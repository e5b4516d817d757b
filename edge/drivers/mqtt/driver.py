"""MQTT driver: subscribe to JSON telemetry topics and map fields to tags with a small JSONPath.

A push driver: read() blocks until messages arrive. A payload that cannot be decoded becomes a BAD sample
with the reason in `text`, never an exception, so one broken publisher cannot stop the stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from paho.mqtt.client import topic_matches_sub

from core.record import Quality, Sample
from core.times import to_us
from edge.driver import DriverContext, StateListener
from edge.drivers.mqtt.config import MqttDevice, MqttTag
from edge.errors import NotConnected
from edge.jsonpath import Path, compile_path, extract
from edge.mqtt_session import Message, MqttSession, broker_password

__all__ = ["MqttDriver", "parse_timestamp_us"]


@dataclass(slots=True, frozen=True)
class _Tag:
    tag: MqttTag
    path: Path
    ts_path: Path | None


TS_MAX_US = 7_258_118_400_000_000  # 2200-01-01: later (or before 1970) is a broken clock, not a time


def parse_timestamp_us(raw: Any) -> int:
    """Epoch seconds, milliseconds, microseconds or an ISO 8601 string -> epoch microseconds (ValueError if not)."""
    us = _timestamp_us(raw)
    if not 0 <= us < TS_MAX_US:
        raise ValueError(f"timestamp {raw!r} is outside 1970..2200")
    return us


def _timestamp_us(raw: Any) -> int:
    if isinstance(raw, bool) or raw is None:
        raise ValueError(f"not a timestamp: {raw!r}")
    if isinstance(raw, str):
        try:
            raw = float(raw)
        except ValueError:
            dt = datetime.fromisoformat(raw.strip())
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)  # a naive time on the wire is read as UTC
            return to_us(dt)
    if not isinstance(raw, int | float):
        raise ValueError(f"not a timestamp: {type(raw).__name__}")
    mag = abs(raw)
    # Pick the unit by magnitude: 1e11 s is the year 5138, 1e11 ms is 1973.
    if mag < 1e11:
        return int(raw * 1_000_000)
    if mag < 1e14:
        return int(raw * 1_000)
    if mag < 1e17:
        return int(raw)
    return int(raw // 1_000)


def _finite(raw: bool | float) -> float | None:
    """The value as a finite float; None for infinities and integers beyond float range (1e400 written out)."""
    try:
        value = float(raw)
    except OverflowError:
        return None
    return value if abs(value) != float("inf") else None


def _short(exc: Exception) -> str:
    text = str(exc).strip("'\"")
    return text if len(text) <= 120 else text[:117] + "..."


class MqttDriver:
    kind: ClassVar[str] = "mqtt"

    def __init__(self, device: MqttDevice, ctx: DriverContext) -> None:
        self.device = device
        self.log = ctx.log
        self.poll_interval_s: float | None = None
        self.on_state: StateListener | None = None
        self._tags = [_Tag(t, compile_path(t.json_path),
                           compile_path(t.timestamp_path) if t.timestamp_path else None) for t in device.tags]
        self._filters = sorted({t.topic for t in device.tags})
        self._password = broker_password(device)
        self._session: MqttSession | None = None
        self._failing: set[str] = set()  # tags whose last payload was bad: log once, and once on recovery
        self.decode_errors = 0

    async def connect(self) -> None:
        await self.close()
        session = MqttSession(self.device.endpoint, client_id_prefix=f"shopfloor-{self.device.id}",
                              mqtt_version=self.device.mqtt_version, username=self.device.username,
                              password=self._password, ca_file=self.device.ca_file,
                              timeout_s=self.device.timeout_s, log=self.log)
        await session.connect(self._filters)
        self._session = session
        self.log.info("mqtt connected device=%s endpoint=%s topics=%s", self.device.id, self.device.endpoint,
                      ",".join(self._filters))

    async def read(self) -> list[Sample]:
        if self._session is None:
            raise NotConnected(f"not connected to {self.device.endpoint}: call connect() first")
        messages = await self._session.messages()
        samples: list[Sample] = []
        for msg in messages:
            samples.extend(self.decode(msg))
        return samples

    def decode(self, msg: Message) -> list[Sample]:
        """Samples for every tag whose topic filter matches this message (BAD ones carry the reason)."""
        if msg.filters:
            matching = [t for t in self._tags if t.tag.topic in msg.filters]
        else:
            matching = [t for t in self._tags if topic_matches_sub(t.tag.topic, msg.topic)]
        if not matching:
            return []
        try:
            doc: Any = json.loads(msg.payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return [self._bad(t, msg, f"not JSON: {_short(exc)}") for t in matching]
        except RecursionError:
            return [self._bad(t, msg, "not usable JSON: nested too deeply") for t in matching]
        out: list[Sample] = []
        for t in matching:
            try:
                raw = extract(doc, t.path)
            except KeyError as exc:
                out.append(self._bad(t, msg, f"{t.tag.json_path}: {_short(exc)}"))
                continue
            if isinstance(raw, bool | int | float) and not (isinstance(raw, float) and raw != raw):
                value, text = _finite(raw), None
                if value is None:
                    out.append(self._bad(t, msg, f"{t.tag.json_path}: number out of range"))
                    continue
            elif isinstance(raw, str):
                value, text = None, raw
            else:
                out.append(self._bad(t, msg, f"{t.tag.json_path}: wrong type {type(raw).__name__}, "
                                             "expected number, bool or string"))
                continue
            out.append(Sample(self.device.id, t.tag.name, self._timestamp(t, doc, msg), value=value, text=text))
            if t.tag.name in self._failing:
                self._failing.discard(t.tag.name)
                self.log.info("mqtt tag recovered device=%s tag=%s topic=%s", self.device.id, t.tag.name, msg.topic)
        return out

    def _timestamp(self, t: _Tag, doc: Any, msg: Message) -> int:
        if t.ts_path is None:
            return msg.received_us
        try:
            return parse_timestamp_us(extract(doc, t.ts_path))
        except (KeyError, ValueError, OverflowError) as exc:
            # The value itself is fine: keep it on the edge clock rather than lose it.
            if t.tag.name not in self._failing:
                self.log.warning("mqtt timestamp unusable, using edge clock device=%s tag=%s topic=%s reason=%s",
                                 self.device.id, t.tag.name, msg.topic, _short(exc))
            return msg.received_us

    def _bad(self, t: _Tag, msg: Message, reason: str) -> Sample:
        self.decode_errors += 1
        if t.tag.name not in self._failing:
            self._failing.add(t.tag.name)
            self.log.warning("mqtt payload rejected device=%s tag=%s topic=%s reason=%s; fix the publisher or "
                             "the tag's json_path", self.device.id, t.tag.name, msg.topic, reason)
        return Sample(self.device.id, t.tag.name, msg.received_us, value=None, text=reason, quality=Quality.BAD)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

