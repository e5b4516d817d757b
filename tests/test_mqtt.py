"""MQTT driver: topic filters with wildcards, json_path into objects and arrays, source timestamps, and bad
payloads that become BAD samples without stopping the stream. Broker tests run against the loopback broker."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.errors import ConfigError
from core.record import Quality, Sample
from edge.driver import DriverContext
from edge.drivers import driver_class
from edge.drivers.mqtt import MqttDriver
from edge.drivers.mqtt.config import MqttDevice
from edge.drivers.mqtt.driver import parse_timestamp_us
from edge.errors import NotConnected
from edge.mqtt_session import Message

LOG = logging.getLogger("test.mqtt")
CTX = DriverContext(LOG)


def make_device(endpoint: str, tags: list[dict[str, Any]], **kw: Any) -> MqttDevice:
    return MqttDevice.model_validate({"id": "mill-03-json", "protocol": "mqtt", "endpoint": endpoint,
                                      "tags": tags, **kw})


class Publisher:
    """A plain paho client standing in for the machine."""

    def __init__(self, host: str, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.connect(host, port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes | str | dict[str, Any]) -> None:
        data = json.dumps(payload) if isinstance(payload, dict) else payload
        self.client.publish(topic, data, qos=1).wait_for_publish(5)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def collect(driver: MqttDriver, done: Callable[[list[Sample]], bool], timeout_s: float = 5) -> list[Sample]:
    got: list[Sample] = []
    async with asyncio.timeout(timeout_s):
        while not done(got):
            got.extend(await driver.read())
    return got


# ---------------------------------------------------------------------------------------------- pure


def test_timestamps_in_seconds_milliseconds_and_iso8601_are_read_as_epoch_microseconds() -> None:
    assert parse_timestamp_us(1_700_000_000) == 1_700_000_000_000_000
    assert parse_timestamp_us(1_700_000_000.5) == 1_700_000_000_500_000
    assert parse_timestamp_us(1_700_000_000_123) == 1_700_000_000_123_000
    assert parse_timestamp_us("1700000000123") == 1_700_000_000_123_000
    assert parse_timestamp_us("2023-11-14T22:13:20Z") == 1_700_000_000_000_000
    assert parse_timestamp_us("2023-11-15T06:13:20.25+08:00") == 1_700_000_000_250_000
    with pytest.raises(ValueError):
        parse_timestamp_us("yesterday")
    with pytest.raises(ValueError):
        parse_timestamp_us(True)


def test_bad_payloads_become_bad_samples_with_the_reason() -> None:
    dev = make_device("mqtt://127.0.0.1:1", [
        {"name": "count", "topic": "plant/+/telemetry", "json_path": "$.count"},
        {"name": "load", "topic": "plant/+/telemetry", "json_path": "$.axes[1].load"},
    ])
    d = MqttDriver(dev, CTX)
    broken = d.decode(Message("plant/m1/telemetry", b"{oops", 42))
    assert [(s.tag, s.quality, s.value, s.ts_us) for s in broken] == [
        ("count", Quality.BAD, None, 42), ("load", Quality.BAD, None, 42)]
    assert all(s.text and s.text.startswith("not JSON: ") for s in broken)
    partial = d.decode(Message("plant/m1/telemetry", b'{"count": {"a": 1}, "axes": [{"load": 1}]}', 43))
    assert partial[0].quality is Quality.BAD and "wrong type dict" in (partial[0].text or "")
    assert partial[1].quality is Quality.BAD and "payload has no 1" in (partial[1].text or "")
    assert d.decode(Message("other/topic", b"{oops", 44)) == []
    assert d.decode_errors == 4


def test_missing_password_env_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SF_TEST_MQTT_PASSWORD", raising=False)
    dev = make_device("mqtts://127.0.0.1:8883", [{"name": "x", "topic": "a/b"}], username="gw",
                      password_env="SF_TEST_MQTT_PASSWORD")
    with pytest.raises(ConfigError, match="SF_TEST_MQTT_PASSWORD"):
        MqttDriver(dev, CTX)


def test_registry_finds_the_driver() -> None:
    assert driver_class("mqtt") is MqttDriver
    assert MqttDriver.kind == "mqtt"


def test_connection_refused_raises_not_connected() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        unused = s.getsockname()[1]
    dev = make_device(f"mqtt://127.0.0.1:{unused}", [{"name": "x", "topic": "a/b"}], timeout_s=2)

    async def main() -> None:
        d = MqttDriver(dev, CTX)
        with pytest.raises(NotConnected, match="cannot reach broker"):
            await d.connect()
        await d.close()

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------- broker


@pytest.mark.integration
@pytest.mark.parametrize("version", ["3.1.1", "5"])
def test_wildcard_topics_and_array_paths_map_to_tags(broker: tuple[str, int], version: str) -> None:
    host, port = broker
    root = f"t{version.replace('.', '')}/line1"
    dev = make_device(f"mqtt://{host}:{port}", [
        {"name": "count", "topic": f"{root}/mill-03/telemetry", "json_path": "$.count", "timestamp_path": "$.ts"},
        {"name": "load", "topic": f"{root}/+/telemetry", "json_path": "$.axes[0].load"},
        {"name": "mode", "topic": f"{root}/#", "json_path": "$['op mode']"},
        {"name": "alarm", "topic": f"{root}/+/telemetry", "json_path": "$.alarm"},
    ], mqtt_version=version)

    async def main() -> list[Sample]:
        d = MqttDriver(dev, CTX)
        await d.connect()
        pub = Publisher(host, port)
        try:
            pub.send(f"{root}/mill-03/telemetry", {"count": 17, "ts": 1_700_000_000_250, "alarm": False,
                                                   "axes": [{"load": 41.5}, {"load": 3}], "op mode": "AUTO"})
            pub.send(f"{root}/mill-04/telemetry", {"axes": [{"load": 7}], "alarm": True, "op mode": "MDI"})
            pub.send("elsewhere/mill-03/telemetry", {"count": 99})
            got = await collect(d, lambda got: len(got) >= 7)
            with pytest.raises(TimeoutError):  # MQTT 5 sends a copy per matching subscription: none may repeat
                got.extend(await asyncio.wait_for(d.read(), 0.3))
            return got
        finally:
            pub.stop()
            await d.close()
            await d.close()  # idempotent

    got = asyncio.run(main())
    by = [(s.tag, s.value if s.text is None else s.text) for s in got]
    assert len(by) == 7 and set(by) == {("count", 17.0), ("load", 41.5), ("mode", "AUTO"), ("alarm", 0.0),
                  ("load", 7.0), ("mode", "MDI"), ("alarm", 1.0)}
    count = next(s for s in got if s.tag == "count")
    assert count.ts_us == 1_700_000_000_250_000 and count.device_id == "mill-03-json"
    assert all(s.quality is Quality.GOOD for s in got)


@pytest.mark.integration
def test_malformed_payload_gives_bad_sample_and_good_data_follows(broker: tuple[str, int],
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    host, port = broker
    dev = make_device(f"mqtt://{host}:{port}", [
        {"name": "count", "topic": "bad1/m/telemetry", "json_path": "$.count", "timestamp_path": "$.ts"}])

    async def main() -> list[Sample]:
        d = MqttDriver(dev, CTX)
        await d.connect()
        pub = Publisher(host, port)
        try:
            pub.send("bad1/m/telemetry", b"\x00garbage")
            pub.send("bad1/m/telemetry", b"also not json")
            pub.send("bad1/m/telemetry", {"count": 5, "ts": "2023-11-14T22:13:20Z"})
            return await collect(d, lambda got: any(s.quality is Quality.GOOD for s in got))
        finally:
            pub.stop()
            await d.close()

    with caplog.at_level(logging.WARNING, logger="test.mqtt"):
        got = asyncio.run(main())
    assert [s.quality for s in got] == [Quality.BAD, Quality.BAD, Quality.GOOD]
    assert got[0].value is None and (got[0].text or "").startswith("not JSON")
    assert (got[2].value, got[2].ts_us) == (5.0, 1_700_000_000_000_000)
    rejected = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejected) == 1 and "bad1/m/telemetry" in rejected[0].getMessage()  # logged once per tag


@pytest.mark.integration
def test_lost_connection_raises_not_connected(broker: tuple[str, int]) -> None:
    host, port = broker
    dev = make_device(f"mqtt://{host}:{port}", [{"name": "x", "topic": "lost/x"}])

    async def main() -> None:
        d = MqttDriver(dev, CTX)
        await d.connect()
        assert d._session is not None
        # A second client with the same id takes the session over: the broker drops ours.
        thief = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=d._session.client_id, protocol=mqtt.MQTTv5)
        thief.connect(host, port)
        thief.loop_start()
        try:
            with pytest.raises(NotConnected, match="lost connection"):
                async with asyncio.timeout(5):
                    while True:
                        await d.read()
        finally:
            thief.disconnect()
            thief.loop_stop()
            await d.close()
        await d.connect()  # the runner's retry: a fresh session works
        await d.close()

    asyncio.run(main())


@pytest.mark.integration
def test_simulated_json_machines_read_back_with_source_timestamps(broker: tuple[str, int]) -> None:
    from core.plant import Signals
    from simulator.machine import Machine, MachineSpec
    from simulator.mqtt_publisher import TAGS, MqttMachinePublisher, device_config, signals_config

    host, port = broker
    t0 = 1_700_000_000_000_000
    machines = [Machine(MachineSpec(f"json-m{i}", seed=10 + i, speed=50.0), start_us=t0) for i in range(2)]
    for m in machines:
        m.advance_to(t0 + 60_000_000)
    cfgs = device_config([m.spec.id for m in machines], host, port, "json")
    assert [c["id"] for c in cfgs] == ["json-m0-mqtt", "json-m1-mqtt"]
    Signals.model_validate(signals_config())
    dev = MqttDevice.model_validate(cfgs[1])
    pub = MqttMachinePublisher(machines, host, port, mode="json")
    pub.start()

    async def main() -> list[Sample]:
        d = MqttDriver(dev, CTX)
        await d.connect()
        try:
            pub.publish()
            return await collect(d, lambda got: len(got) >= len(TAGS))
        finally:
            await d.close()

    try:
        got = asyncio.run(main())
    finally:
        pub.stop()
    truth = machines[1].values()
    assert {s.tag: s.value for s in got} == {t: float(truth[t]) for t in TAGS}
    assert {s.ts_us for s in got} == {machines[1].t_us // 1000 * 1000}


@pytest.mark.parametrize("kind", ["mqtt", "sparkplug"])
def test_sample_config_is_valid_and_embedded_in_the_readme(kind: str) -> None:
    from pathlib import Path

    import yaml

    from edge.drivers.sparkplug.config import SparkplugDevice

    folder = Path(__file__).parent.parent / "edge" / "drivers" / kind
    text = (folder / "sample.yaml").read_text()
    model = MqttDevice if kind == "mqtt" else SparkplugDevice
    for entry in yaml.safe_load(text)["devices"]:
        model.model_validate(entry)
    assert text.rstrip() in (folder / "README.md").read_text()
