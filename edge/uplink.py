"""Uplink: forwards buffered batches to the collector and deletes them only after it confirms the DB commit.

Wire contract (MQTT):
  edge -> collector  `<prefix>/<gateway_id>/samples`  QoS 1, payload `Batch.encode()` (JSON, "v": 1)
  collector -> edge  `<prefix>/<gateway_id>/ack`      QoS 1, payload {"batch_ids": [...], "digests": [...]} after
                     the commit; a digest is the first 32 hex digits of the SHA-256 of the batch's payload
The edge accepts an ack only for a batch it sent and has not yet had acknowledged, with that batch's digest.
A batch not confirmed within `ack_timeout_s` is handed out again (at-least-once); the collector's
idempotent write (unique device, tag, ts) turns a replay into no new rows.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import paho.mqtt.client as mqtt

from core.mqtt import mqtt_client
from core.record import encode_batch
from edge.buffer import Pending, StoreAndForward

log = logging.getLogger(__name__)

AckCallback = Callable[[list[int]], None]


@dataclass
class Outgoing:
    """A batch on its way: buffered chunks under a batch id the collector will confirm."""

    gateway_id: str
    batch_id: int
    pending: Pending

    def payload(self) -> bytes:
        return encode_batch(self.gateway_id, self.batch_id, self.pending.sample_parts, self.pending.event_parts,
                            self.pending.gap_parts)


class Sink(Protocol):
    """Where batches go: the MQTT uplink, or the collector in the same process (single-node mode)."""

    on_ack: AckCallback | None

    async def start(self) -> None: ...

    async def send(self, batch: Outgoing) -> bool:
        """Hand the batch over; False when it could not even be sent (the forwarder keeps it)."""
        ...

    async def stop(self) -> None: ...


class Forwarder:
    """Keeps up to `window` batches in flight; confirmed ones leave the buffer, late ones are re-sent."""

    def __init__(self, buffer: StoreAndForward, sink: Sink, batch_max_samples: int,
                 window: int = 8, ack_timeout_s: float = 20.0, batch_max_bytes: int | None = None) -> None:
        """batch_max_bytes: cap on the encoded rows of one batch (default: the buffer's chunk size)."""
        self.buffer = buffer
        self.sink = sink
        self.batch_max_samples = batch_max_samples
        self.batch_max_bytes = batch_max_bytes or buffer.chunk_max_bytes
        self.window = window
        self.ack_timeout_s = ack_timeout_s
        self._ids = itertools.count((buffer.boot_epoch << 32) + 1)
        self._in_flight: dict[int, Pending] = {}
        self._acked: list[int] = []
        self._lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sent_batches = 0
        self.resent_batches = 0
        self.confirmed_samples = 0
        sink.on_ack = self._on_ack

    @property
    def in_flight_batches(self) -> int:
        """Batches sent and not yet confirmed by the collector."""
        return len(self._in_flight)

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _on_ack(self, batch_ids: list[int]) -> None:
        """Called from any thread (paho's, or a writer thread)."""
        with self._lock:
            self._acked.extend(batch_ids)
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _settle(self) -> None:
        with self._lock:
            acked, self._acked = self._acked, []
        for bid in acked:
            pending = self._in_flight.pop(bid, None)
            if pending is not None:  # an ack for an older boot or a re-sent twin is ignored
                self.buffer.end(pending)
                self.confirmed_samples += pending.n_samples
        now = time.monotonic()
        for bid, pending in list(self._in_flight.items()):
            if now - pending.started > self.ack_timeout_s:
                del self._in_flight[bid]
                self.buffer.give_back(pending)
                self.resent_batches += 1
                log.warning("batch=%d event=ack_timeout samples=%d hint='collector or broker slow or down; "
                            "batch will be re-sent'", bid, pending.n_samples)

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        await self.sink.start()
        try:
            while not stop.is_set():
                self._wake.clear()
                await asyncio.to_thread(self._settle)
                while len(self._in_flight) < self.window:
                    pending = await asyncio.to_thread(self.buffer.begin, self.batch_max_samples,
                                                      self.batch_max_bytes)
                    if pending is None:
                        break
                    bid = next(self._ids)
                    self._in_flight[bid] = pending
                    if not await self.sink.send(Outgoing(self.buffer.gateway_id, bid, pending)):
                        del self._in_flight[bid]
                        self.buffer.give_back(pending)
                        break
                    self.sent_batches += 1
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                except TimeoutError:
                    pass
        finally:
            await self.sink.stop()

    async def drain(self, timeout_s: float) -> None:
        """On shutdown: give the collector a moment to confirm what is queued (the rest stays on disk)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (self._in_flight or self.buffer.queued_samples):
            self.wake()
            await asyncio.sleep(0.05)


class MqttSink:
    """Publishes batches over MQTT 5 QoS 1 and listens for the collector's acks."""

    def __init__(self, broker_url: str, gateway_id: str, prefix: str = "shopfloor/v1") -> None:
        self.gateway_id = gateway_id
        self.topic = f"{prefix}/{gateway_id}/samples"
        self.ack_topic = f"{prefix}/{gateway_id}/ack"
        self.client, self.host, self.port = mqtt_client(broker_url, f"shopfloor-edge-{gateway_id}")
        self.client.max_inflight_messages_set(64)
        self.on_ack: AckCallback | None = None
        self.connected = False
        self.forged_acks = 0
        self._sent: OrderedDict[int, str] = OrderedDict()  # batch id -> digest, sent and not yet acknowledged
        self._sent_lock = threading.Lock()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object = None) -> None:
        if getattr(rc, "is_failure", False):
            log.error("uplink=%s:%d event=connect_refused reason=%s", self.host, self.port, rc)
            return
        self.connected = True
        client.subscribe(self.ack_topic, qos=1)
        log.info("uplink=%s:%d event=connected topic=%s", self.host, self.port, self.topic)

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, rc: object,
                       props: object = None) -> None:
        if self.connected:
            log.warning("uplink=%s:%d event=disconnected reason=%s hint='samples stay in the disk buffer'",
                        self.host, self.port, rc)
        self.connected = False

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            doc = json.loads(msg.payload)
            pairs = list(zip([int(i) for i in doc["batch_ids"]], [str(d) for d in doc["digests"]], strict=True))
        except (ValueError, KeyError, TypeError, RecursionError):
            log.warning("uplink event=bad_ack topic=%s hint='ignored: not an ack with batch_ids and digests (a collector "
                        "older than this edge? upgrade collectors first); batches stay buffered'", msg.topic)
            return
        ids = []
        with self._sent_lock:
            for bid, digest in pairs:
                if self._sent.get(bid) == digest:
                    del self._sent[bid]
                    ids.append(bid)
                else:
                    self.forged_acks += 1
        if len(ids) < len(pairs):
            log.warning("uplink event=ack_ignored count=%d hint='an ack for a batch this gateway did not send or "
                        "that was already confirmed (or its digest differs): the samples stay buffered'",
                        len(pairs) - len(ids))
        if ids and self.on_ack is not None:
            self.on_ack(ids)

    async def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.reconnect_delay_set(1, 10)
        self.client.loop_start()

    async def send(self, batch: Outgoing) -> bool:
        if not self.connected:
            return False
        payload = batch.payload()
        with self._sent_lock:
            self._sent[batch.batch_id] = hashlib.sha256(payload).hexdigest()[:32]
            while len(self._sent) > 4096:  # batches given up long ago (ack timeout) and re-sent under new ids
                self._sent.popitem(last=False)
        info = self.client.publish(self.topic, payload, qos=1)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    async def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
