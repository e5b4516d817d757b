"""MQTT broker URLs and the paho client factory: the one place that parses `mqtt://` / `mqtts://` URLs.

paho-mqtt is imported only when a client is made, so the core stays importable without it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse, urlunparse

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

from core.errors import ConfigError

SCHEMES = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True}
log = logging.getLogger(__name__)


class BrokerUrlError(ConfigError, ValueError):
    """A broker URL that cannot be used (a ValueError too, so config validators report it per field)."""


@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerUrl:
    """mqtt://[user[:pass]@]host[:port] or mqtts://...; BrokerUrlError (a ValueError) naming what is wrong.

    User and password are percent-decoded, so a password with @ : / % can be written as %40 %3A %2F %25.
    """
    u = urlparse(url)
    if u.scheme not in SCHEMES or not u.hostname:
        raise BrokerUrlError(f"broker URL must be mqtt://host:1883 or mqtts://host:8883, got {redact_url(url)!r}")
    tls = SCHEMES[u.scheme]
    try:
        port = u.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise BrokerUrlError(f"broker URL {redact_url(url)!r}: {exc}") from exc
    return BrokerUrl(u.hostname, port, tls, unquote(u.username) if u.username else None,
                     unquote(u.password) if u.password is not None else None)


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, for logs and error messages."""
    try:
        u = urlparse(url)
        if u.password is None:
            return url
        netloc = f"{u.username}:***@{u.hostname}" + (f":{u.port}" if u.port else "")
        return urlunparse(u._replace(netloc=netloc))
    except ValueError:
        return "<unparseable URL>"


def mqtt_client(broker_url: str, client_id: str, version: Any = None, **kwargs: Any) -> tuple[mqtt.Client, str, int]:
    """A paho 2.x client for a broker URL (TLS for mqtts://, credentials from the URL); returns (client, host, port).

    version: a paho MQTTProtocolVersion, "5" or "3.1.1" (default MQTT 5).
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    b = parse_broker_url(broker_url)
    if version is None or version == "5":
        version = mqtt.MQTTProtocolVersion.MQTTv5
    elif version == "3.1.1":
        version = mqtt.MQTTProtocolVersion.MQTTv311
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=version, **kwargs)
    if b.username:
        client.username_pw_set(b.username, b.password)
    if b.tls:
        client.tls_set()
    client.on_connect_fail = _connect_fail_logger(b)
    return client, b.host, b.port


def _connect_fail_logger(b: BrokerUrl, every_s: float = 60.0) -> Any:
    """paho on_connect_fail: one line naming the broker and what to check, then at most once a minute."""
    state = {"attempts": 0, "logged": -every_s}

    def on_connect_fail(client: Any, userdata: Any) -> None:
        state["attempts"] += 1
        now = time.monotonic()
        if now - state["logged"] >= every_s:
            state["logged"] = now
            log.warning("broker=%s event=broker_unreachable attempts=%d hint='check that the MQTT broker is "
                        "running and reachable at %s (--broker-url or SHOPFLOOR_BROKER_URL); retrying'",
                        b, state["attempts"], b)

    return on_connect_fail
