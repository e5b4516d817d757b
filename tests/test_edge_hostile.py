"""The edge survives its own devices: a hostile payload on a device's MQTT topic becomes a bad-quality sample
with the reason, and a device task that fails anyway is logged, reported disconnected with the reason and
restarted, while the other devices carry on. Real broker on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from core.record import Quality
from edge.runner import Edge
from tests.test_edge_faults import ListSink, cfg_with, wait_for
from tests.test_mqtt import Publisher

pytestmark = pytest.mark.integration


def mqtt_device(broker: tuple[str, int], dev_id: str) -> dict[str, Any]:
    return {"id": dev_id, "protocol": "mqtt", "endpoint": f"mqtt://{broker[0]}:{broker[1]}",
            "tags": [{"name": "temp", "topic": f"hostile/{dev_id}", "json_path": "$.temp"}]}


DEEP = b'{"temp":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
HUGE_INT = b'{"temp": 1' + b"0" * 400 + b"}"
INFINITY = b'{"temp": Infinity}'


def test_hostile_payloads_become_bad_samples_and_the_device_keeps_reading(broker: tuple[str, int],
                                                                          tmp_path: Path) -> None:
    cfg = cfg_with([mqtt_device(broker, "d1")], tmp_path)
    sink = ListSink()
    pub = Publisher(*broker)

    async def main() -> None:
        edge = Edge(cfg, sink)
        stop = asyncio.Event()
        task = asyncio.create_task(edge.run(stop))
        assert await wait_for(lambda: any(e.state == "connected" for e in sink.events), 10)
        for payload in (DEEP, HUGE_INT, INFINITY, b'{"temp": 21.5}'):
            await asyncio.to_thread(pub.send, "hostile/d1", payload)
        assert await wait_for(lambda: any(s.value == 21.5 for s in sink.samples), 10), "the device task died"
        stop.set()
        await task

    asyncio.run(main())
    pub.stop()
    bad = [s for s in sink.samples if s.quality == Quality.BAD and s.text != "disconnected: edge stopped"]
    assert [s.text for s in bad] == ["not usable JSON: nested too deeply", "$.temp: number out of range",
                                     "$.temp: number out of range"]
    assert [e.state for e in sink.events].count("disconnected") == 1  # only the one at the edge's stop


def test_a_crashing_device_task_is_reported_and_restarted(broker: tuple[str, int], tmp_path: Path) -> None:
    cfg = cfg_with([mqtt_device(broker, "d1"), mqtt_device(broker, "d2")], tmp_path)
    sink = ListSink()
    pub = Publisher(*broker)

    async def main() -> None:
        edge = Edge(cfg, sink)
        runner = edge.runners[0]
        crashed: list[bool] = []

        real_decode = runner.driver.decode

        def broken_decode(msg: Any) -> Any:  # a driver bug that the first message trips over
            if not crashed:
                crashed.append(True)
                raise RuntimeError("unexpected frame")
            return real_decode(msg)

        runner.driver.decode = broken_decode
        stop = asyncio.Event()
        task = asyncio.create_task(edge.run(stop))
        assert await wait_for(lambda: sum(e.state == "connected" for e in sink.events) == 2, 10)
        await asyncio.to_thread(pub.send, "hostile/d1", b'{"temp": 1}')
        assert await wait_for(lambda: any(e.device_id == "d1" and e.state == "disconnected" for e in sink.events), 10)
        assert crashed
        assert await wait_for(lambda: runner.health.connected, 15), "the device was not restarted"
        for v in (2.0, 3.0):
            await asyncio.to_thread(pub.send, "hostile/d1", b'{"temp": %d}' % v)
            await asyncio.to_thread(pub.send, "hostile/d2", b'{"temp": %d}' % v)
        assert await wait_for(lambda: {s.value for s in sink.samples if s.device_id == "d1"} >= {2.0, 3.0}, 10)
        stop.set()
        await task

    asyncio.run(main())
    pub.stop()
    down = [e for e in sink.events if e.device_id == "d1" and e.state == "disconnected"]
    assert down[0].reason == "driver error: RuntimeError: unexpected frame"
    assert {s.value for s in sink.samples if s.device_id == "d2"} >= {2.0, 3.0}


def test_a_device_task_that_dies_is_restarted_by_the_supervisor(broker: tuple[str, int], tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    cfg = cfg_with([mqtt_device(broker, "d1")], tmp_path)
    sink = ListSink()
    pub = Publisher(*broker)

    async def main() -> None:
        edge = Edge(cfg, sink)
        runner = edge.runners[0]
        first = runner.driver

        async def broken_connect() -> None:  # a bug outside the read loop: the whole device task ends
            raise KeyError("endpoint table")

        first.connect = broken_connect
        stop = asyncio.Event()
        task = asyncio.create_task(edge.run(stop))
        assert await wait_for(lambda: runner.driver is not first and runner.health.connected, 15)
        await asyncio.to_thread(pub.send, "hostile/d1", b'{"temp": 7}')
        assert await wait_for(lambda: any(s.value == 7.0 for s in sink.samples), 10)
        stop.set()
        await task

    asyncio.run(main())
    pub.stop()
    down = next(e for e in sink.events if e.state == "disconnected")
    assert down.reason == "device task failed: KeyError: 'endpoint table'"
    assert "event=task_died" in caplog.text


def test_a_sample_larger_than_a_batch_is_dropped_counted_and_reported(broker: tuple[str, int],
                                                                      tmp_path: Path) -> None:
    from tests.test_edge_disk import GateSink

    cfg = cfg_with([mqtt_device(broker, "d1")], tmp_path)
    cfg = cfg.model_copy(update={"edge": cfg.edge.model_copy(update={"batch_max_bytes": 128 * 1024})})
    sink = GateSink()
    pub = Publisher(*broker)

    async def main() -> None:
        edge = Edge(cfg, sink)
        stop = asyncio.Event()
        task = asyncio.create_task(edge.run(stop))
        assert await wait_for(lambda: any(e.state == "connected" for e in sink.events), 10)
        await asyncio.to_thread(pub.send, "hostile/d1", b'{"temp": "' + b"x" * 200_000 + b'"}')
        await asyncio.to_thread(pub.send, "hostile/d1", b'{"temp": 5}')
        assert await wait_for(lambda: bool(sink.gaps) and any(s.value == 5.0 for s in sink.samples), 10)
        assert edge.buffer.dropped_samples == 1
        stop.set()
        await task

    asyncio.run(main())
    pub.stop()
    assert [(g.device_id, g.count, g.reason) for g in sink.gaps] == [("d1", 1, "oversize")]
    assert sink.max_payload <= 128 * 1024
