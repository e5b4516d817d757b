"""Sparkplug B driver: a host application for one edge node (or one device behind it).

It follows the node's whole message stream (`spBv1.0/<group>/+/<node>/#`) because sequence numbers count
every message the node sends, births included. Births give the alias -> name map and the current values;
data messages may carry only aliases. A sequence gap, data before any birth, or an alias no birth defined
makes the driver ask for a rebirth (NCMD "Node Control/Rebirth") and keep what it could decode.
"""

from __future__ import annotations

from typing import ClassVar

from core.errors import DecodeError
from core.record import Quality, Sample, now_us
from edge.driver import DriverContext, StateListener
from edge.drivers.sparkplug.codec import (
    NAMESPACE,
    Metric,
    Payload,
    birth_aliases,
    decode_payload,
    make_topic,
    parse_topic,
    rebirth_request,
    resolve_aliases,
)
from edge.drivers.sparkplug.config import SparkplugDevice, SparkplugTag
from edge.errors import NotConnected
from edge.mqtt_session import Message, MqttSession, broker_password

__all__ = ["SparkplugDriver"]

_HANDLED = {"NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA", "DDEATH"}
_REBIRTH_RETRY_US = 10_000_000  # ask again if no NBIRTH came within 10 s of the last request


def _quality(m: Metric) -> tuple[Quality, int]:
    """The publisher's OPC-style Quality property, where present: 192+ good, 64..191 uncertain, below bad."""
    q = m.quality
    if q is None:
        return Quality.GOOD, 0
    if 192 <= q < 256:
        return Quality.GOOD, q
    if q < 64:
        return Quality.BAD, q
    return Quality.UNCERTAIN, q  # 64..191, and Ignition's 500 "stale"


class SparkplugDriver:
    kind: ClassVar[str] = "sparkplug"

    def __init__(self, device: SparkplugDevice, ctx: DriverContext) -> None:
        self.device = device
        self.log = ctx.log
        self.poll_interval_s: float | None = None
        self.on_state: StateListener | None = None
        self._by_metric: dict[str, list[SparkplugTag]] = {}
        for t in device.tags:
            self._by_metric.setdefault(t.metric, []).append(t)
        self._password = broker_password(device)
        self._subscription = f"{NAMESPACE}/{device.group_id}/+/{device.edge_node_id}/#"
        self._ncmd_topic = make_topic(device.group_id, "NCMD", device.edge_node_id)
        self._session: MqttSession | None = None
        self.decode_errors = 0
        self.rebirth_requests = 0
        self._reset_node()

    def _reset_node(self) -> None:
        self._aliases: dict[str | None, dict[int, str]] = {}  # per device_id; None = the node itself
        self._node_born = False
        self._bd_seq: int | None = None
        self._last_seq: int | None = None
        self._rebirth_sent_us: int | None = None

    async def connect(self) -> None:
        await self.close()
        self._reset_node()  # a new session starts from the next birth
        session = MqttSession(self.device.endpoint, client_id_prefix=f"shopfloor-{self.device.id}",
                              mqtt_version=self.device.mqtt_version, username=self.device.username, password=self._password,
                              ca_file=self.device.ca_file, timeout_s=self.device.timeout_s, log=self.log)
        await session.connect([self._subscription])
        self._session = session
        self.log.info("sparkplug connected device=%s endpoint=%s topic=%s", self.device.id,
                      self.device.endpoint, self._subscription)

    async def read(self) -> list[Sample]:
        if self._session is None:
            raise NotConnected(f"not connected to {self.device.endpoint}: call connect() first")
        samples: list[Sample] = []
        for msg in await self._session.messages():
            samples.extend(self.handle(msg))
        return samples

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # ------------------------------------------------------------------ one message
    def handle(self, msg: Message) -> list[Sample]:
        """Update node state from one message and return the samples it carries for this device's tags."""
        try:
            topic = parse_topic(msg.topic)
        except ValueError:
            return []
        if topic.message_type not in _HANDLED or topic.edge_node_id != self.device.edge_node_id \
                or topic.group_id != self.device.group_id:
            return []
        try:
            payload = decode_payload(msg.payload)
        except DecodeError as exc:
            self.decode_errors += 1
            self.log.warning("sparkplug payload skipped device=%s topic=%s reason=%s decode_errors=%d",
                             self.device.id, msg.topic, exc, self.decode_errors)
            return []
        kind = topic.message_type
        mine = topic.device_id == self.device.device_id
        if kind == "NDEATH":
            return self._node_death(payload, msg)
        self._check_seq(kind, payload, msg.topic)
        if kind == "NBIRTH":
            self._aliases = {None: birth_aliases(payload)}
            self._node_born = True
            self._rebirth_sent_us = None
            self._bd_seq = self._bd_seq_of(payload)
            if self.device.device_id is None:
                self._state(True, "birth")
        elif kind == "DBIRTH":
            self._aliases[topic.device_id] = birth_aliases(payload)
            if mine:
                self._state(True, "birth")
        elif kind == "DDEATH":
            self._aliases.pop(topic.device_id, None)
            return self._death("DDEATH received", msg, payload) if mine else []
        if not self._node_born:
            self._request_rebirth(f"{kind} before any NBIRTH")
        if not mine:
            return []  # other devices of the node matter only for the sequence check above
        unknown = resolve_aliases(payload, self._aliases.get(topic.device_id, {}))
        if unknown:
            self._request_rebirth(f"unknown aliases {sorted(unknown)[:5]} in {msg.topic}")
        return self._samples(payload, msg)

    def _check_seq(self, kind: str, payload: Payload, topic: str) -> None:
        seq = payload.seq
        if seq is None:
            return
        if kind != "NBIRTH" and self._last_seq is not None and seq != (self._last_seq + 1) % 256:
            self._request_rebirth(f"sequence gap: expected {(self._last_seq + 1) % 256}, got {seq} in {topic}")
        self._last_seq = seq

    @staticmethod
    def _bd_seq_of(payload: Payload) -> int | None:
        for m in payload.metrics:
            if m.name == "bdSeq" and isinstance(m.value, int):
                return m.value
        return None

    def _node_death(self, payload: Payload, msg: Message) -> list[Sample]:
        bd_seq = self._bd_seq_of(payload)
        if bd_seq is not None and self._bd_seq is not None and bd_seq != self._bd_seq:
            # The will of an earlier session, delivered late: the node is alive in its new one.
            self.log.info("sparkplug stale NDEATH ignored device=%s bdSeq=%s current=%s", self.device.id,
                          bd_seq, self._bd_seq)
            return []
        self._reset_node()
        return self._death("NDEATH received", msg, payload)

    def _death(self, reason: str, msg: Message, payload: Payload) -> list[Sample]:
        self.log.warning("sparkplug %s device=%s topic=%s", reason, self.device.id, msg.topic)
        self._state(False, reason)
        ts = payload.timestamp_ms * 1000 if payload.timestamp_ms else msg.received_us
        return [Sample(self.device.id, t.name, ts, value=None, text=reason, quality=Quality.BAD)
                for t in self.device.tags]

    def _state(self, connected: bool, reason: str) -> None:
        if self.on_state is not None:
            self.on_state(connected, reason)

    def _request_rebirth(self, reason: str) -> None:
        now = now_us()
        if self._rebirth_sent_us is not None and now - self._rebirth_sent_us < _REBIRTH_RETRY_US:
            return  # one request is on its way; births reset everything anyway
        self._rebirth_sent_us = now
        self.rebirth_requests += 1
        self.log.warning("sparkplug rebirth requested device=%s node=%s/%s reason=%s", self.device.id,
                         self.device.group_id, self.device.edge_node_id, reason)
        if self._session is not None:
            self._session.publish(self._ncmd_topic, rebirth_request(now // 1000), qos=0)

    def _samples(self, payload: Payload, msg: Message) -> list[Sample]:
        out: list[Sample] = []
        for m in payload.metrics:
            tags = self._by_metric.get(m.name or "")
            if not tags:
                continue
            if m.timestamp_ms is not None:
                ts = m.timestamp_ms * 1000
            elif payload.timestamp_ms is not None:
                ts = payload.timestamp_ms * 1000
            else:
                ts = msg.received_us
            quality, status = _quality(m)
            value: float | None = None
            text: str | None = None
            v = m.value
            if m.is_null:
                quality, text = Quality.BAD, "null"
            elif isinstance(v, bool | int | float):
                value = float(v)
            elif isinstance(v, str):
                text = v
            else:
                quality, text = Quality.BAD, f"unsupported datatype {m.datatype_name}"
            for t in tags:
                out.append(Sample(self.device.id, t.name, ts, value=value, text=text, quality=quality,
                                  status=status, historical=m.is_historical))
        return out

