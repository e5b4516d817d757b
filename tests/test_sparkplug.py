"""Sparkplug B: the codec on plain values, and the driver against the loopback broker (births and alias-only
data, sequence gaps answered with a rebirth request, deaths, malformed payloads), plus the simulated node."""

from __future__ import annotations

import asyncio
import logging
import queue
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.errors import DecodeError
from core.record import Quality, Sample
from edge.driver import DriverContext
from edge.drivers import driver_class
from edge.drivers.sparkplug import SparkplugDriver
from edge.drivers.sparkplug.codec import (
    DATATYPES,
    REBIRTH_METRIC,
    Metric,
    Topic,
    birth_aliases,
    datatype_id,
    decode_payload,
    encode_payload,
    make_topic,
    parse_topic,
    rebirth_request,
    resolve_aliases,
)
from edge.drivers.sparkplug.config import SparkplugDevice
from simulator.machine import Machine, MachineSpec
from simulator.mqtt_publisher import TAGS, MqttMachinePublisher, device_config

LOG = logging.getLogger("test.sparkplug")
CTX = DriverContext(LOG)


def dt(name: str) -> int:
    return datatype_id(name)


# ---------------------------------------------------------------------------------------------- codec


def test_datatype_table_is_the_specs() -> None:
    assert len(DATATYPES) == 35
    assert (DATATYPES[1], DATATYPES[8], DATATYPES[12], DATATYPES[17], DATATYPES[34]) == (
        "Int8", "UInt64", "String", "Bytes", "DateTimeArray")


def test_codec_round_trip_keeps_values_signs_aliases_and_flags() -> None:
    metrics = [
        Metric("Production/Cycles", 2**40 + 7, dt("UInt64"), alias=1, timestamp_ms=1_700_000_000_001),
        Metric("Env/Temp", -12.5, dt("Double"), alias=2, is_historical=True),
        Metric("Small", -5, dt("Int8"), alias=3),
        Metric("Word", -30000, dt("Int16")),
        Metric("Long", -(2**40), dt("Int64")),
        Metric("Unsigned", 4_000_000_000, dt("UInt32")),
        Metric("Ratio", 0.25, dt("Float")),
        Metric("Door", True, dt("Boolean"), is_transient=True),
        Metric("Recipe", "A-17", dt("String"), quality=192),
        Metric("Blob", b"\x00\x01", dt("Bytes")),
        Metric("Missing", None, dt("Int32"), is_null=True),
    ]
    data = encode_payload(metrics, seq=4, timestamp_ms=1_700_000_000_000, uuid="u-1")
    p = decode_payload(data)
    assert (p.seq, p.timestamp_ms, p.uuid, p.body) == (4, 1_700_000_000_000, "u-1", None)
    assert [(m.name, m.value, m.datatype) for m in p.metrics] == [(m.name, m.value, m.datatype) for m in metrics]
    assert [m.alias for m in p.metrics[:4]] == [1, 2, 3, None]
    assert p.metrics[0].timestamp_ms == 1_700_000_000_001 and p.metrics[1].timestamp_ms is None
    assert p.metrics[1].is_historical and not p.metrics[0].is_historical
    assert p.metrics[7].is_transient and p.metrics[10].is_null and p.metrics[8].quality == 192


def test_alias_only_data_resolves_through_the_birth() -> None:
    birth = decode_payload(encode_payload([Metric("Production/Cycles", 1, dt("Int64"), alias=10),
                                           Metric("Env/Temp", 20.0, dt("Double"), alias=11)], seq=0))
    aliases = birth_aliases(birth)
    assert aliases == {10: "Production/Cycles", 11: "Env/Temp"}
    data = decode_payload(encode_payload([Metric(None, 2, dt("Int64"), alias=10),
                                          Metric(None, 21.0, dt("Double"), alias=11),
                                          Metric(None, 1.0, dt("Double"), alias=99)], seq=1))
    assert resolve_aliases(data, aliases) == [99]
    assert [(m.name, m.value) for m in data.metrics] == [("Production/Cycles", 2), ("Env/Temp", 21.0), (None, 1.0)]


def test_topics_and_rebirth_request() -> None:
    assert parse_topic("spBv1.0/plant1/DDATA/cell-gw/robot-04") == Topic("plant1", "DDATA", "cell-gw", "robot-04")
    assert parse_topic("spBv1.0/plant1/NBIRTH/cell-gw") == Topic("plant1", "NBIRTH", "cell-gw", None)
    assert make_topic("plant1", "NCMD", "cell-gw") == "spBv1.0/plant1/NCMD/cell-gw"
    for bad in ("spBv1.0/plant1/XDATA/n", "spAv1.0/g/NDATA/n", "spBv1.0/g/NDATA"):
        with pytest.raises(ValueError):
            parse_topic(bad)
    cmd = decode_payload(rebirth_request(1_700_000_000_000))
    assert [(m.name, m.value, m.datatype) for m in cmd.metrics] == [(REBIRTH_METRIC, True, dt("Boolean"))]


def test_garbage_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="not a Sparkplug B payload"):
        decode_payload(b"\xff\xff\xff\xff garbage")


def test_registry_finds_the_driver() -> None:
    assert driver_class("sparkplug") is SparkplugDriver


# ---------------------------------------------------------------------------------------------- broker


class Node:
    """A hand-driven edge node: the test decides every seq, alias and message type."""

    def __init__(self, host: str, port: int, group: str, node: str) -> None:
        self.group, self.node = group, node
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.connect(host, port)
        self.client.loop_start()

    def send(self, kind: str, metrics: list[Metric] | bytes, seq: int | None = None, device: str | None = None,
             ts_ms: int | None = None) -> None:
        data = metrics if isinstance(metrics, bytes) else encode_payload(metrics, seq=seq, timestamp_ms=ts_ms)
        self.client.publish(make_topic(self.group, kind, self.node, device), data, qos=1).wait_for_publish(5)

    def births(self, device: str = "robot-04", bd_seq: int = 0) -> None:
        self.send("NBIRTH", [Metric("bdSeq", bd_seq, dt("UInt64")), Metric(REBIRTH_METRIC, False, dt("Boolean"))],
                  seq=0)
        self.send("DBIRTH", [Metric("Production/Cycles", 100, dt("UInt32"), alias=1),
                             Metric("Env/Temp", 21.5, dt("Float"), alias=2)], seq=1, device=device)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def make_device(host: str, port: int, node: str, device_id: str | None = "robot-04") -> SparkplugDevice:
    return SparkplugDevice.model_validate({
        "id": "cell-gw", "protocol": "sparkplug", "endpoint": f"mqtt://{host}:{port}", "group_id": "plant1",
        "edge_node_id": node, "device_id": device_id,
        "tags": [{"name": "cycles", "metric": "Production/Cycles"}, {"name": "temp", "metric": "Env/Temp"}]})


async def collect(driver: SparkplugDriver, done: Callable[[list[Sample]], bool], timeout_s: float = 5) -> list[Sample]:
    got: list[Sample] = []
    async with asyncio.timeout(timeout_s):
        while not done(got):
            got.extend(await driver.read())
    return got


def run_with_node(broker: tuple[str, int], node_id: str, script: Callable[[Node, SparkplugDriver], Any],
                  device_id: str | None = "robot-04") -> tuple[SparkplugDriver, Any, list[tuple[bool, str]]]:
    host, port = broker
    states: list[tuple[bool, str]] = []

    async def main() -> Any:
        d = SparkplugDriver(make_device(host, port, node_id, device_id), CTX)
        d.on_state = lambda up, why: states.append((up, why))
        await d.connect()
        node = Node(host, port, "plant1", node_id)
        try:
            return d, await script(node, d)
        finally:
            node.stop()
            await d.close()
            await d.close()

    d, result = asyncio.run(main())
    return d, result, states


@pytest.mark.integration
def test_births_and_alias_only_data_map_to_tags(broker: tuple[str, int]) -> None:
    async def script(node: Node, d: SparkplugDriver) -> list[Sample]:
        node.births()
        node.send("NDATA", [Metric("Node/Uptime", 5, dt("Int64"))], seq=2)  # the node's own: not this device
        node.send("DDATA", [Metric(None, 1.0, dt("Double"), alias=1)], seq=3, device="other-robot")
        node.send("DDATA", [Metric(None, 101, dt("UInt32"), alias=1, timestamp_ms=1_700_000_000_123),
                            Metric(None, 20.25, dt("Float"), alias=2, is_historical=True)],
                  seq=4, device="robot-04", ts_ms=1_700_000_000_500)
        return await collect(d, lambda got: len(got) >= 4)

    d, got, states = run_with_node(broker, "spb-births", script)
    assert [(s.tag, s.value, s.historical) for s in got] == [
        ("cycles", 100.0, False), ("temp", 21.5, False), ("cycles", 101.0, False), ("temp", 20.25, True)]
    assert got[2].ts_us == 1_700_000_000_123_000 and got[3].ts_us == 1_700_000_000_500_000
    assert all(s.quality is Quality.GOOD and s.device_id == "cell-gw" for s in got)
    assert states == [(True, "birth")]
    assert d.rebirth_requests == 0 and d.decode_errors == 0


@pytest.mark.integration
def test_sequence_gap_sends_a_rebirth_request_and_keeps_the_data(broker: tuple[str, int]) -> None:
    host, port = broker
    seen: queue.Queue[bytes] = queue.Queue()
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    watcher.on_message = lambda c, u, msg: seen.put(bytes(msg.payload))
    watcher.connect(host, port)
    watcher.loop_start()
    watcher.subscribe("spBv1.0/plant1/NCMD/spb-gap", qos=1)
    time.sleep(0.2)

    async def script(node: Node, d: SparkplugDriver) -> list[Sample]:
        node.births()
        got = await collect(d, lambda got: len(got) >= 2)
        node.send("DDATA", [Metric(None, 150, dt("UInt32"), alias=1)], seq=9, device="robot-04")  # expected 2
        return got + await collect(d, lambda got: len(got) >= 1)

    try:
        d, got, _ = run_with_node(broker, "spb-gap", script)
        payload = decode_payload(seen.get(timeout=5))
    finally:
        watcher.disconnect()
        watcher.loop_stop()
    assert [(m.name, m.value) for m in payload.metrics] == [(REBIRTH_METRIC, True)]
    assert d.rebirth_requests == 1
    assert (got[-1].tag, got[-1].value) == ("cycles", 150.0)


@pytest.mark.integration
def test_data_with_unknown_alias_before_birth_asks_for_rebirth(broker: tuple[str, int]) -> None:
    async def script(node: Node, d: SparkplugDriver) -> list[Sample]:
        node.send("DDATA", [Metric(None, 7, dt("UInt32"), alias=1),
                            Metric("Env/Temp", 19.0, dt("Double"))], seq=17, device="robot-04")
        return await collect(d, lambda got: len(got) >= 1)

    d, got, _ = run_with_node(broker, "spb-early", script)
    assert [(s.tag, s.value) for s in got] == [("temp", 19.0)]  # the named metric still comes through
    assert d.rebirth_requests == 1


@pytest.mark.integration
def test_ndeath_reports_the_node_down_and_marks_tags_bad(broker: tuple[str, int]) -> None:
    async def script(node: Node, d: SparkplugDriver) -> list[Sample]:
        node.births(bd_seq=3)
        await collect(d, lambda got: len(got) >= 2)
        node.send("NDEATH", [Metric("bdSeq", 2, dt("UInt64"))])  # an earlier session's will: ignored
        node.send("NDEATH", [Metric("bdSeq", 3, dt("UInt64"))])
        return await collect(d, lambda got: len(got) >= 2)

    _, got, states = run_with_node(broker, "spb-death", script)
    assert states == [(True, "birth"), (False, "NDEATH received")]
    assert [(s.tag, s.quality, s.value, s.text) for s in got] == [
        ("cycles", Quality.BAD, None, "NDEATH received"), ("temp", Quality.BAD, None, "NDEATH received")]


@pytest.mark.integration
def test_malformed_protobuf_is_counted_and_skipped(broker: tuple[str, int]) -> None:
    async def script(node: Node, d: SparkplugDriver) -> list[Sample]:
        node.births()
        node.send("DDATA", b"\xff\xff\xff\xff not protobuf", device="robot-04")
        node.send("DDATA", [Metric(None, 22.0, dt("Float"), alias=2)], seq=2, device="robot-04")
        return await collect(d, lambda got: len(got) >= 3)

    d, got, _ = run_with_node(broker, "spb-garbage", script)
    assert d.decode_errors == 1
    assert [(s.tag, s.value) for s in got] == [("cycles", 100.0), ("temp", 21.5), ("temp", 22.0)]


@pytest.mark.integration
def test_simulated_node_answers_rebirth_and_values_match_the_machines(broker: tuple[str, int]) -> None:
    host, port = broker
    t0 = 1_700_000_000_000_000
    machines = [Machine(MachineSpec(f"sim-m{i}", seed=i, speed=50.0), start_us=t0) for i in range(2)]
    for m in machines:
        m.advance_to(t0 + 30_000_000)
    pub = MqttMachinePublisher(machines, host, port, mode="sparkplug", edge_node_id="spb-sim")
    pub.start()  # births go out before the driver listens: it must ask for them again
    cfg = device_config(["sim-m1"], host, port, "sparkplug", edge_node_id="spb-sim")[0]
    assert cfg["id"] == "sim-m1-spb"

    async def main() -> tuple[SparkplugDriver, dict[str, Sample]]:
        d = SparkplugDriver(SparkplugDevice.model_validate(cfg), CTX)
        await d.connect()
        latest: dict[str, Sample] = {}
        try:
            async with asyncio.timeout(10):
                while len(latest) < len(TAGS) or pub.births_sent < 2:
                    pub.publish()
                    try:
                        for s in await asyncio.wait_for(d.read(), 0.5):
                            latest[s.tag] = s
                    except TimeoutError:
                        pass
            return d, latest
        finally:
            await d.close()

    try:
        d, latest = asyncio.run(main())
    finally:
        pub.stop()
    truth = machines[1].values()
    assert {t: s.value for t, s in latest.items()} == {t: float(truth[t]) for t in TAGS}
    assert d.rebirth_requests >= 1 and pub.births_sent >= 2
