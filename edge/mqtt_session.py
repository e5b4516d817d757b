"""One paho-mqtt connection bridged to asyncio: paho's network loop runs in its own thread and hands
every message to an asyncio.Queue with loop.call_soon_threadsafe. Shared by the mqtt and sparkplug drivers.

Reconnecting is the runner's job, not paho's: the client is created with reconnect_on_failure=False, a lost
connection ends the session, and the next connect() builds a fresh one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.errors import ConfigError
from core.mqtt import parse_broker_url
from core.record import now_us
from edge.errors import NotConnected

__all__ = ["Message", "MqttSession", "broker_password"]


@dataclass(slots=True, frozen=True)
class Message:
    """One received MQTT message, stamped with the edge clock on arrival (in microseconds)."""

    topic: str
    payload: bytes
    received_us: int
    # MQTT 5 delivers one copy per matching subscription, tagged with its identifier: the filters that copy
    # is for. Empty when unknown (MQTT 3.1.1 delivers once): match every filter then.
    filters: tuple[str, ...] = ()


_CLOSED = object()  # queued by the paho thread when the connection ends, so read() wakes up


def broker_password(device: Any) -> str | None:
    """The broker password from the environment variable named by `password_env`; ConfigError if it is unset."""
    name = getattr(device, "password_env", None)
    if not name:
        return None
    value = os.environ.get(name)
    if value is None:
        raise ConfigError(f"device {device.id!r}: environment variable {name} (password_env) is not set; "
                          f"export it before starting the edge")
    return value


class MqttSession:
    """A connected paho client whose messages arrive on an asyncio queue."""

    def __init__(self, endpoint: str, *, client_id_prefix: str, mqtt_version: str = "5",
                 username: str | None = None, password: str | None = None, ca_file: str | None = None,
                 timeout_s: float = 3.0, keepalive_s: int = 30, log: logging.Logger | None = None) -> None:
        broker = parse_broker_url(endpoint)  # checked when the config loaded
        self.tls, self.host, self.port = broker.tls, broker.host, broker.port
        self.endpoint = endpoint
        self.client_id = f"{client_id_prefix}-{uuid.uuid4().hex[:8]}"
        self.protocol = MQTTProtocolVersion.MQTTv5 if mqtt_version == "5" else MQTTProtocolVersion.MQTTv311
        self.username = username
        self.password = password
        self.ca_file = ca_file
        self.timeout_s = timeout_s
        self.keepalive_s = keepalive_s
        self.log = log or logging.getLogger(__name__)
        self.queue: asyncio.Queue[Message | object] = asyncio.Queue()
        self.connected = False
        self.disconnect_reason = ""
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribed: list[str] = []

    # ------------------------------------------------------------------ paho thread side
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any) -> None:
        self._put(("connack", reason_code))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any) -> None:
        self.connected = False
        self.disconnect_reason = str(reason_code)
        self._put(_CLOSED)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        self._put(("suback", mid, list(codes)))

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        ids = getattr(msg.properties, "SubscriptionIdentifier", None) if msg.properties is not None else None
        filters = tuple(self._subscribed[i - 1] for i in ids or () if 0 < i <= len(self._subscribed))
        self._put(Message(msg.topic, bytes(msg.payload), now_us(), filters))

    def _put(self, item: object) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the event loop has closed under a session nobody closed: nothing to deliver to
            pass

    # ------------------------------------------------------------------ asyncio side
    async def connect(self, subscriptions: list[str], *, qos: int = 1,
                      will: tuple[str, bytes] | None = None) -> None:
        """Open the connection, wait for CONNACK and every SUBACK; NotConnected on any failure."""
        self._loop = asyncio.get_running_loop()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=self.protocol,
                             reconnect_on_failure=False)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        if self.username:
            client.username_pw_set(self.username, self.password)
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=False)
        self._client = client
        try:
            if self.tls:
                client.tls_set(ca_certs=self.ca_file)
        except (OSError, ValueError) as exc:  # a missing or unreadable CA file (ssl.SSLError is an OSError)
            await self.close()
            raise NotConnected(f"cannot use ca_file {self.ca_file!r} for broker {self.endpoint}: {exc}") from exc
        try:
            await asyncio.wait_for(asyncio.to_thread(client.connect, self.host, self.port, self.keepalive_s),
                                   self.timeout_s)
        except ssl.SSLCertVerificationError as exc:
            await self.close()
            raise NotConnected(
                f"broker {self.endpoint}: TLS certificate rejected ({exc.verify_message}); check that ca_file "
                f"({self.ca_file or 'none: system CAs'}) holds the CA that signed the broker's certificate and "
                f"that the certificate names host {self.host}") from exc
        except (OSError, ValueError, TimeoutError) as exc:
            await self.close()
            raise NotConnected(f"cannot reach broker {self.endpoint}: {exc or type(exc).__name__}") from exc
        client.loop_start()
        try:
            await self._handshake(client, subscriptions, qos)
        except NotConnected:
            await self.close()
            raise

    async def _handshake(self, client: mqtt.Client, subscriptions: list[str], qos: int) -> None:
        reply = await self._expect("connack")
        if reply[1].is_failure:
            raise NotConnected(f"broker {self.endpoint} refused the connection: {reply[1]}")
        self.connected = True
        self._subscribed = list(subscriptions)
        for i, topic in enumerate(subscriptions, start=1):
            props = None
            if self.protocol == MQTTProtocolVersion.MQTTv5:
                props = Properties(PacketTypes.SUBSCRIBE)  # type: ignore[no-untyped-call]
                props.SubscriptionIdentifier = i
            rc, _mid = client.subscribe(topic, qos, properties=props)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise NotConnected(f"subscribe {topic!r} failed: {mqtt.error_string(rc)}")
            reply = await self._expect("suback")
            if any(c.is_failure for c in reply[2]):
                raise NotConnected(f"broker refused subscription {topic!r}: {reply[2][0]}")

    async def _expect(self, kind: str) -> tuple[Any, ...]:
        """Wait for a control reply from the paho thread (messages queued meanwhile are kept in order)."""
        held: list[object] = []
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    item = await self.queue.get()
                    if isinstance(item, tuple) and item[0] == kind:
                        return item
                    if item is _CLOSED:
                        raise NotConnected(f"broker {self.endpoint} closed the connection: {self.disconnect_reason}")
                    held.append(item)
        except TimeoutError as exc:
            raise NotConnected(f"broker {self.endpoint} did not answer ({kind}) within {self.timeout_s} s") from exc
        finally:
            rest = []
            while not self.queue.empty():
                rest.append(self.queue.get_nowait())
            for item in held + rest:  # put back in arrival order
                self.queue.put_nowait(item)

    async def messages(self) -> list[Message]:
        """Wait for at least one message, then drain what is queued; NotConnected once the connection is gone."""
        first = await self.queue.get()
        items = [first]
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        out = [m for m in items if isinstance(m, Message)]
        if any(m is _CLOSED for m in items) or not self.connected:
            if out:  # hand over what arrived before the loss; the next call raises
                self.queue.put_nowait(_CLOSED)
                return out
            raise NotConnected(f"lost connection to broker {self.endpoint}: {self.disconnect_reason or 'closed'}")
        return out

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        """Fire-and-forget publish from the asyncio side (paho's publish is thread-safe)."""
        if self._client is not None and self.connected:
            self._client.publish(topic, payload, qos=qos)

    async def close(self) -> None:
        """Disconnect and stop the network thread; safe to call twice."""
        client, self._client = self._client, None
        self.connected = False
        if client is None:
            return
        client.on_disconnect = None
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)
