"""Collector service: consume the uplink, write batches, then acknowledge (MQTT and application level).

Order of events for every message: decode -> COPY in one transaction -> commit -> paho `ack(mid)` and an
application ack to the gateway. Nothing is acknowledged before the commit, so a collector killed mid-batch
loses nothing: the broker (persistent session) and the edge (disk buffer) both re-send, and the idempotent
write absorbs the replay. A payload that cannot be decoded goes to `quarantine` with the reason and is
acknowledged so it never blocks the stream.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.errors import BatchRejectedError, TransientDbError
from collector.gaps import gap_reject_payloads, store_gaps
from collector.writer import SampleWriter, WriteResult
from core.mqtt import mqtt_client
from core.record import StatusEvent, decode_batch
from core.wire_limits import clip

Confirm = dict[str, list[tuple[int, str]]]  # gateway id -> (batch id, payload digest) of each committed batch


def payload_digest(payload: bytes) -> str:
    """What an ack carries beside each batch id: the gateway checks it against the batch it sent."""
    return hashlib.sha256(payload).hexdigest()[:32]


def topic_gateway(topic: str) -> str | None:
    """The gateway a samples topic names (`<prefix>/<gateway_id>/samples`); None for another topic."""
    parts = topic.split("/")
    return parts[-2] if len(parts) >= 3 and parts[-1] == "samples" and parts[-2] else None

log = logging.getLogger(__name__)


@dataclass
class IngestStats:
    messages: int = 0
    batches: int = 0
    samples_written: int = 0
    duplicates: int = 0
    conflicting_duplicates: int = 0
    quarantined: int = 0
    db_retries: int = 0
    last_commit: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class _Msg:
    mid: int
    qos: int
    topic: str
    payload: bytes


class BatchProcessor:
    """Decode, write and quarantine a group of uplink payloads: the one path for the MQTT consumer and for
    single-node mode (the edge hands its payloads to `process` in the same process).

    The topic names the gateway: a payload whose gateway_id disagrees is quarantined whole. `owners` (device id
    -> gateway id, from the plant file) limits each listed device to its own gateway; other devices are open.
    """

    def __init__(self, writer: SampleWriter, stats: IngestStats, owners: Mapping[str, str] | None = None) -> None:
        self.writer = writer
        self.stats = stats
        self.owners = dict(owners or {})

    def process(self, items: list[tuple[str, bytes]]) -> Confirm:
        """Write everything decodable in one transaction; return (batch id, digest) to confirm per gateway.

        Raises TransientDbError (nothing committed, nothing to confirm) when the database is unavailable.
        """
        batches: list[Decoded] = []
        bad: list[tuple[str, str, bytes]] = []
        for topic, payload in items:
            try:
                decoded = self.decode(topic, payload, bad)
            except ValueError as exc:
                bad.append((topic, str(exc), payload))
                continue
            batches.append(decoded)
        return self.write(batches, bad)

    def decode(self, topic: str, payload: bytes, bad: list[tuple[str, str, bytes]]) -> Decoded:
        """One payload -> Decoded; its bad rows are appended to `bad`. ValueError: the payload is no batch."""
        gateway_id, batch_id, rows, events, rejects = decode_batch(payload)
        sender = topic_gateway(topic)
        if sender is not None and sender != gateway_id:
            raise ValueError(f"gateway_id {clip(gateway_id)!r} in the payload disagrees with the topic's gateway "
                             f"{clip(sender)!r}: a gateway may send only its own batches")
        if self.owners:
            rows, events = self._owned(gateway_id, batch_id, rows, events, rejects)
        # the good rows of a batch go in; each bad row goes to quarantine on its own, with its reason
        bad.extend((topic, reason, _dump(row)) for reason, row in rejects)
        return Decoded(gateway_id, batch_id, rows, events, payload)

    def _owned(self, gateway_id: str, batch_id: int, rows: list[tuple[Any, ...]], events: list[StatusEvent],
               rejects: list[tuple[str, Any]]) -> tuple[list[tuple[Any, ...]], list[StatusEvent]]:
        """Rows and events of devices this gateway may write; the rest become rejects with the reason."""
        owners = self.owners

        def foreign(device: str) -> str | None:
            owner = owners.get(device)
            if owner is None or owner == gateway_id:
                return None
            return (f"device {clip(device)!r} belongs to gateway {owner!r} in the plant file, but batch "
                    f"{gateway_id}/{batch_id} came from {gateway_id!r}")

        kept: list[tuple[Any, ...]] = []
        for row in rows:
            reason = foreign(row[0])
            if reason is None:
                kept.append(row)
            else:
                rejects.append((reason, list(row)))
        kept_events: list[StatusEvent] = []
        for e in events:
            reason = foreign(e.device_id)
            if reason is None:
                kept_events.append(e)
            else:
                rejects.append((reason, e.to_row()))
        return kept, kept_events

    def write(self, batches: list[Decoded], bad: list[tuple[str, str, bytes]]) -> Confirm:
        """One transaction for all decoded batches, then quarantine what could not be decoded."""
        rows: list[tuple[Any, ...]] = []
        events: list[StatusEvent] = []
        confirm: Confirm = defaultdict(list)
        for batch in batches:
            rows.extend(batch.rows)
            events.extend(batch.events)
            confirm[batch.gateway_id].append((batch.batch_id, payload_digest(batch.payload)))
        try:
            result = self.writer.write_rows(rows, events)
            bad = [*bad, *gap_reject_payloads(store_gaps(self.writer.connection(), (b.payload for b in batches)))]
        except BatchRejectedError as exc:
            if len(batches) > 1:  # find the one batch the database refuses; the others go in
                merged: Confirm = defaultdict(list)
                for i, batch in enumerate(batches):
                    for gw, ids in self.write([batch], bad if i == 0 else []).items():
                        merged[gw].extend(ids)
                return merged
            bad = [*bad, *((f"batch {b.gateway_id}/{b.batch_id}", str(exc), b.payload) for b in batches)]
            result = WriteResult(0, 0)
        for topic, reason, payload in bad:
            self.writer.quarantine(topic, reason, payload)
            log.warning("event=quarantined source=%s reason=%r bytes=%d hint='see table quarantine'",
                        clip(topic), clip(reason, 300), len(payload))
        self.stats.batches += sum(len(v) for v in confirm.values())
        self.stats.samples_written += result.inserted
        self.stats.duplicates += result.duplicates
        self.stats.conflicting_duplicates += result.conflicts
        self.stats.quarantined += len(bad) + result.rejected + result.conflicts
        self.stats.last_commit = time.time()
        return confirm


def _dump(row: Any) -> bytes:
    """A rejected row as JSON bytes for quarantine (anything it holds came from json.loads, so it encodes)."""
    try:
        return json.dumps(row, default=str).encode()
    except (ValueError, RecursionError):
        return repr(row)[:100_000].encode("utf-8", "backslashreplace")


@dataclass
class Decoded:
    """One uplink batch after validation: rows in database column order, ready for COPY."""

    gateway_id: str
    batch_id: int
    rows: list[tuple[Any, ...]]
    events: list[StatusEvent]
    payload: bytes


class Collector:
    """MQTT 5 shared-subscription consumer: several collectors in one share group split the stream."""

    def __init__(self, database_url: str, broker_url: str, prefix: str = "shopfloor/v1",
                 share_group: str = "shopfloor-collectors", batch_max_rows: int = 20000,
                 client_id: str | None = None, session_expiry_s: int = 60,
                 owners: Mapping[str, str] | None = None) -> None:
        self.database_url = database_url
        self.session_expiry_s = session_expiry_s
        self.prefix = prefix
        self.topic = f"$share/{share_group}/{prefix}/+/samples"
        self.batch_max_rows = batch_max_rows
        self.stats = IngestStats()
        self.writer = SampleWriter(database_url)
        self.processor = BatchProcessor(self.writer, self.stats, owners)
        self._queue: queue.Queue[_Msg] = queue.Queue()
        cid = client_id or f"shopfloor-collector-{socket.gethostname()}"
        self.client, self.host, self.port = mqtt_client(broker_url, cid)
        self.client.manual_ack_set(True)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.connected = threading.Event()

    @property
    def queued_messages(self) -> int:
        """Messages received from the broker and not yet written."""
        return self._queue.qsize()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object = None) -> None:
        if getattr(rc, "is_failure", False):
            log.error("broker=%s:%d event=connect_refused reason=%s", self.host, self.port, rc)
            return
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, reason_codes: list[Any],
                      props: object = None) -> None:
        if any(getattr(rc, "is_failure", False) for rc in reason_codes):
            log.error("broker=%s:%d event=subscribe_refused topic=%s reasons=%s hint='check the broker ACL lets "
                      "this user read the samples topic'", self.host, self.port, self.topic, reason_codes)
            return
        self.connected.set()  # only now do messages for the topic reach us
        log.info("broker=%s:%d event=subscribed topic=%s", self.host, self.port, self.topic)

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, rc: object,
                       props: object = None) -> None:
        self.connected.clear()
        log.warning("broker=%s:%d event=disconnected reason=%s hint='reconnecting; edges keep buffering'",
                    self.host, self.port, rc)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self._queue.put(_Msg(msg.mid, msg.qos, msg.topic, bytes(msg.payload)))

    def _take(self) -> list[_Msg]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        msgs = [first]
        rows = len(first.payload) // 60
        while rows < self.batch_max_rows * 1.0:
            try:
                m = self._queue.get_nowait()
            except queue.Empty:
                break
            msgs.append(m)
            rows += len(m.payload) // 60
        return msgs

    def _write_until_done(self, msgs: list[_Msg], stop: threading.Event) -> Confirm | None:
        backoff = 0.5
        while True:
            try:
                return self._process_guarded(msgs)
            except TransientDbError as exc:
                self.stats.db_retries += 1
                log.warning("event=db_unavailable error=%r retry_in_s=%.1f hint='check PostgreSQL; nothing is "
                            "acknowledged until the write succeeds'", str(exc), backoff)
                if stop.wait(backoff):
                    return None
                backoff = min(backoff * 2, 15.0)

    def _process_guarded(self, msgs: list[_Msg]) -> Confirm:
        """Process; should anything unforeseen fail, retry message by message and quarantine the one that fails."""
        try:
            return self.processor.process([(m.topic, m.payload) for m in msgs])
        except TransientDbError:
            raise
        except Exception as exc:  # noqa: BLE001 - one payload must never stop ingest for every gateway
            if len(msgs) > 1:
                merged: Confirm = defaultdict(list)
                for m in msgs:
                    for gateway, done in self._process_guarded([m]).items():
                        merged[gateway].extend(done)
                return merged
            log.exception("event=ingest_error source=%s hint='payload quarantined; please report this error'",
                          clip(msgs[0].topic))
            self.writer.quarantine(msgs[0].topic, f"internal error while ingesting: {exc!r}", msgs[0].payload)
            self.stats.quarantined += 1
            return {}

    def _ack(self, gateway: str, done: list[tuple[int, str]]) -> None:
        """Tell the gateway which of its batches are committed: ids with the digest of each payload."""
        body = json.dumps({"batch_ids": [b for b, _ in done], "digests": [d for _, d in done]})
        try:
            self.client.publish(f"{self.prefix}/{gateway}/ack", body, qos=1)
        except (ValueError, TypeError) as exc:  # the rows are committed; the gateway re-sends and dedup absorbs it
            log.error("event=ack_failed gateway=%r error=%r hint='batches stay in the gateway buffer and are "
                      "re-sent; the replay adds no rows'", clip(gateway), str(exc))

    def run(self, stop: threading.Event) -> None:
        """Consume until stop is set. Blocking; run it in a thread or as the process's main loop."""
        props = Properties(PacketTypes.CONNECT)
        # A restart within this time resumes the session and its queued messages. Kept short on purpose: the
        # broker hands a shared subscription's messages round-robin to offline sessions too, so a collector
        # that died for good would otherwise sit on part of the stream (the edge re-sends it, but late).
        props.SessionExpiryInterval = self.session_expiry_s
        self.client.connect_async(self.host, self.port, keepalive=30, clean_start=False, properties=props)
        self.client.reconnect_delay_set(1, 10)
        self.client.loop_start()
        try:
            while not stop.is_set():
                msgs = self._take()
                if not msgs:
                    continue
                self.stats.messages += len(msgs)
                confirm = self._write_until_done(msgs, stop)
                if confirm is None:
                    return  # stopping without a commit: nothing acknowledged, everything will be re-sent
                for m in msgs:
                    self.client.ack(m.mid, m.qos)
                for gateway, done in confirm.items():
                    self._ack(gateway, done)
        finally:
            bye = Properties(PacketTypes.DISCONNECT)
            bye.SessionExpiryInterval = 0  # a clean stop leaves no session behind to absorb messages
            self.client.disconnect(properties=bye)
            self.client.loop_stop()
            self.writer.close()
