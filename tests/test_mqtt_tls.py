"""MQTT and Sparkplug drivers against a private Mosquitto with a TLS listener and password authentication.

The broker gets its own CA and server certificate (for 127.0.0.1 and localhost, made with `cryptography`),
`allow_anonymous false` and a password file, and listens on a free loopback port. The drivers connect with
`endpoint: mqtts://127.0.0.1:PORT`, `ca_file`, `username` and `password_env`, as the README's sample does.
Pinned: messages decode over TLS; a wrong password is `NotConnected` naming the refusal; an unset
`password_env` is a ConfigError at construction (no I/O); a CA that did not sign the broker's certificate is
`NotConnected` naming the certificate problem.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import ipaddress
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.errors import ConfigError
from core.record import Quality, Sample
from edge.driver import DriverContext
from edge.drivers.mqtt import MqttDriver
from edge.drivers.mqtt.config import MqttDevice
from edge.drivers.sparkplug import SparkplugDriver
from edge.drivers.sparkplug.codec import Metric, datatype_id, encode_payload, make_topic
from edge.drivers.sparkplug.config import SparkplugDevice
from edge.errors import NotConnected
from tests.conftest import free_port

LOG = logging.getLogger("test.mqtt.tls")
CTX = DriverContext(LOG)
USER, PASSWORD = "edge-gw", "s3cret-gw"
PUB_USER, PUB_PASSWORD = "machine", "s3cret-machine"
PW_ENV = "SF_TEST_TLS_MQTT_PASSWORD"

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- the broker


def _mosquitto_hash(password: str) -> str:
    """Mosquitto 2's password file hash ($7$: PBKDF2-SHA512, 101 iterations, 12-byte salt)."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
    return f"$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _write_passwords(path: Path, users: dict[str, str]) -> None:
    exe = shutil.which("mosquitto_passwd")
    if exe is None:
        path.write_text("".join(f"{u}:{_mosquitto_hash(p)}\n" for u, p in users.items()))
        return
    for i, (user, pw) in enumerate(users.items()):
        subprocess.run([exe, *(["-c"] if i == 0 else []), "-b", str(path), user, pw],
                       check=True, timeout=30, capture_output=True)


def _write_certs(d: Path) -> None:
    """ca.crt signs server.crt (127.0.0.1, localhost); rogue-ca.crt is a CA that signed nothing here."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def cert(subject: str, key: Any, issuer: x509.Name | None, signer: Any, ca: bool) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        return b.sign(signer, hashes.SHA256())

    ca_key, srv_key, rogue_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = cert("shopfloor tls test CA", ca_key, None, ca_key, True)
    pem = serialization.Encoding.PEM
    (d / "ca.crt").write_bytes(ca.public_bytes(pem))
    rogue = cert("shopfloor tls test CA", rogue_key, None, rogue_key, True)  # same name, other key
    (d / "rogue-ca.crt").write_bytes(rogue.public_bytes(pem))
    (d / "server.crt").write_bytes(cert("localhost", srv_key, ca.subject, ca_key, False).public_bytes(pem))
    (d / "server.key").write_bytes(srv_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))


@dataclass
class TlsBroker:
    host: str
    port: int
    ca: str
    rogue_ca: str

    @property
    def endpoint(self) -> str:
        return f"mqtts://{self.host}:{self.port}"


@pytest.fixture(scope="module")
def tls_broker() -> Iterator[TlsBroker]:
    exe = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )
    if exe is None:
        pytest.skip("the mosquitto binary is not installed: no TLS broker to test against")
    # Not under pytest's tmp tree (mode 0700): mosquitto started as root drops to its own user before it reads
    # the certificates and the password file.
    d = Path(tempfile.mkdtemp(prefix="sf-mqtt-tls-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        _write_certs(d)
        _write_passwords(d / "passwd", {USER: PASSWORD, PUB_USER: PUB_PASSWORD})
        port = free_port()
        (d / "mosquitto.conf").write_text(
            "per_listener_settings true\npersistence false\nlog_dest stdout\n"
            f"listener {port} 127.0.0.1\n"
            f"cafile {d / 'ca.crt'}\ncertfile {d / 'server.crt'}\nkeyfile {d / 'server.key'}\n"
            "tls_version tlsv1.2\nrequire_certificate false\n"
            f"allow_anonymous false\npassword_file {d / 'passwd'}\n")
        if os.geteuid() == 0:
            for p in [d, *d.iterdir()]:
                p.chmod(0o755 if p.is_dir() else 0o644)
        log = d / "mosquitto.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([exe, "-c", str(d / "mosquitto.conf")], stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mosquitto with a TLS listener did not start:\n{log.read_text()}")
                time.sleep(0.05)
        yield TlsBroker("127.0.0.1", port, str(d / "ca.crt"), str(d / "rogue-ca.crt"))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(PW_ENV, PASSWORD)
    return PASSWORD


class Publisher:
    """The machine side: a plain paho client over TLS with its own credentials."""

    def __init__(self, broker: TlsBroker) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}",
                                  protocol=mqtt.MQTTv311)
        self.client.username_pw_set(PUB_USER, PUB_PASSWORD)
        self.client.tls_set(ca_certs=broker.ca)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes | str) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(5)
        assert info.is_published(), f"publish to {topic} was not acknowledged"

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def mqtt_device(broker: TlsBroker, **kw: Any) -> MqttDevice:
    return MqttDevice.model_validate({
        "id": "mill-03-json", "protocol": "mqtt", "endpoint": broker.endpoint, "ca_file": broker.ca,
        "username": USER, "password_env": PW_ENV, "timeout_s": 3.0,
        "tags": [{"name": "count", "topic": "tls/line1/+/telemetry", "json_path": "$.count",
                  "timestamp_path": "$.ts"},
                 {"name": "mode", "topic": "tls/line1/mill-03/telemetry", "json_path": "$.mode"}],
        **kw})


def sparkplug_device(broker: TlsBroker, **kw: Any) -> SparkplugDevice:
    return SparkplugDevice.model_validate({
        "id": "cell-gw", "protocol": "sparkplug", "endpoint": broker.endpoint, "ca_file": broker.ca,
        "username": USER, "password_env": PW_ENV, "timeout_s": 3.0, "group_id": "tlsplant",
        "edge_node_id": "tls-node", "device_id": "robot-04",
        "tags": [{"name": "cycles", "metric": "Production/Cycles"}, {"name": "temp", "metric": "Env/Temp"}],
        **kw})


Driver = MqttDriver | SparkplugDriver


async def collect(driver: Driver, done: Callable[[list[Sample]], bool], timeout_s: float = 5) -> list[Sample]:
    got: list[Sample] = []
    async with asyncio.timeout(timeout_s):
        while not done(got):
            got.extend(await driver.read())
    return got


def refused(driver: Driver) -> str:
    """connect() must fail with NotConnected; its message."""

    async def main() -> str:
        try:
            with pytest.raises(NotConnected) as info:
                await driver.connect()
            return str(info.value)
        finally:
            await driver.close()

    return asyncio.run(main())


# --------------------------------------------------------------------------- data over TLS


@pytest.mark.parametrize("version", ["5", "3.1.1"])
def test_mqtt_driver_reads_json_over_tls_with_a_password(tls_broker: TlsBroker, password: str,
                                                         version: str) -> None:
    async def main() -> list[Sample]:
        d = MqttDriver(mqtt_device(tls_broker, mqtt_version=version), CTX)
        await d.connect()
        pub = Publisher(tls_broker)
        try:
            pub.send("tls/line1/mill-03/telemetry",
                     json.dumps({"count": 17, "ts": 1_700_000_000_250, "mode": "AUTO"}))
            pub.send("tls/line1/mill-04/telemetry", json.dumps({"count": 4, "ts": 1_700_000_001_000}))
            return await collect(d, lambda got: len(got) >= 3)
        finally:
            pub.stop()
            await d.close()

    got = asyncio.run(main())
    # MQTT 5 delivers one copy per matching subscription, in the broker's order: compare without order.
    assert sorted((s.tag, s.value if s.text is None else s.text) for s in got) == [
        ("count", 4.0), ("count", 17.0), ("mode", "AUTO")]
    assert sorted(s.ts_us for s in got if s.tag == "count") == [1_700_000_000_250_000, 1_700_000_001_000_000]
    assert all(s.quality is Quality.GOOD and s.device_id == "mill-03-json" for s in got)


def test_sparkplug_driver_reads_births_and_data_over_tls_with_a_password(tls_broker: TlsBroker,
                                                                           password: str) -> None:
    def dtype(name: str) -> int:
        return datatype_id(name)

    async def main() -> list[Sample]:
        d = SparkplugDriver(sparkplug_device(tls_broker), CTX)
        await d.connect()
        node = Publisher(tls_broker)

        def send(kind: str, metrics: list[Metric], seq: int, device: str | None = None) -> None:
            node.send(make_topic("tlsplant", kind, "tls-node", device), encode_payload(metrics, seq=seq))

        try:
            send("NBIRTH", [Metric("bdSeq", 0, dtype("UInt64"))], seq=0)
            send("DBIRTH", [Metric("Production/Cycles", 100, dtype("UInt32"), alias=1),
                            Metric("Env/Temp", 21.5, dtype("Float"), alias=2)], seq=1, device="robot-04")
            send("DDATA", [Metric(None, 101, dtype("UInt32"), alias=1)], seq=2, device="robot-04")
            return await collect(d, lambda got: len(got) >= 3)
        finally:
            node.stop()
            await d.close()
            assert d.rebirth_requests == 0 and d.decode_errors == 0

    got = asyncio.run(main())
    assert [(s.tag, s.value) for s in got] == [("cycles", 100.0), ("temp", 21.5), ("cycles", 101.0)]
    assert all(s.quality is Quality.GOOD and s.device_id == "cell-gw" for s in got)


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("make", [mqtt_device, sparkplug_device], ids=["mqtt", "sparkplug"])
def test_wrong_password_is_not_connected_naming_the_refusal(tls_broker: TlsBroker,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            make: Callable[..., Any]) -> None:
    monkeypatch.setenv(PW_ENV, "not-the-password")
    dev = make(tls_broker)
    cls = MqttDriver if isinstance(dev, MqttDevice) else SparkplugDriver
    t0 = time.monotonic()
    msg = refused(cls(dev, CTX))
    assert time.monotonic() - t0 < 3.0
    assert f"broker {tls_broker.endpoint} refused the connection" in msg
    assert any(w in msg.lower() for w in ("not authori", "bad user name or password")), msg


@pytest.mark.parametrize("make", [mqtt_device, sparkplug_device], ids=["mqtt", "sparkplug"])
def test_unset_password_env_is_a_config_error_at_construction(tls_broker: TlsBroker,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              make: Callable[..., Any]) -> None:
    monkeypatch.delenv(PW_ENV, raising=False)
    dev = make(tls_broker)
    cls = MqttDriver if isinstance(dev, MqttDevice) else SparkplugDriver
    with pytest.raises(ConfigError, match=f"environment variable {PW_ENV} \\(password_env\\) is not set"):
        cls(dev, CTX)


@pytest.mark.parametrize("make", [mqtt_device, sparkplug_device], ids=["mqtt", "sparkplug"])
def test_untrusted_ca_is_not_connected_naming_the_certificate(tls_broker: TlsBroker, password: str,
                                                              make: Callable[..., Any]) -> None:
    dev = make(tls_broker, ca_file=tls_broker.rogue_ca)
    cls = MqttDriver if isinstance(dev, MqttDevice) else SparkplugDriver
    msg = refused(cls(dev, CTX))
    # The rogue CA has the real CA's name, so OpenSSL finds it as the issuer and the signature check fails.
    assert f"broker {tls_broker.endpoint}: TLS certificate rejected (certificate signature failure)" in msg
    assert tls_broker.rogue_ca in msg  # which CA file was used


def test_system_cas_do_not_trust_a_private_broker(tls_broker: TlsBroker, password: str) -> None:
    # No ca_file: the system CA bundle is used, and it never signed this broker's certificate.
    dev = mqtt_device(tls_broker).model_copy(update={"ca_file": None})
    msg = refused(MqttDriver(dev, CTX))
    assert re.search(r"TLS certificate rejected \(self.signed certificate in certificate chain\)", msg), msg
    assert "none: system CAs" in msg


def test_missing_ca_file_is_not_connected_naming_the_file(tls_broker: TlsBroker, password: str) -> None:
    missing = str(Path(tls_broker.ca).with_name("no-such-ca.crt"))
    msg = refused(MqttDriver(mqtt_device(tls_broker, ca_file=missing), CTX))
    assert msg.startswith(f"cannot use ca_file '{missing}' for broker {tls_broker.endpoint}: ")
    assert "No such file" in msg
