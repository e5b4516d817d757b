"""Single-node mode (`shopfloor edge --database-url`) and the MQTT uplink treat a bad row the same way: both
sinks hand the edge's payload to the collector's one BatchProcessor, so the row goes to quarantine with its
reason and the rest of its batch is stored."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core.config import parse_config
from core.plant import PlantConfig
from core.record import Sample, now_us
from edge.driver import DriverContext
from edge.runner import Edge
from edge.uplink import MqttSink
from shopfloor.wiring import InProcessSink, single_node
from tests.test_pipeline import start_collector

pytestmark = pytest.mark.integration


class FaultyDriver:
    """A driver with a bug: its first read stamps one sample with a float time instead of integer microseconds."""

    kind = "faulty"
    poll_interval_s = 0.1

    def __init__(self, device: Any, ctx: DriverContext) -> None:
        self.device = device
        self.on_state = None
        self.reads = 0

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def read(self) -> list[Sample]:
        self.reads += 1
        ts = now_us()
        good = [Sample(self.device.id, "t", ts, float(self.reads))]
        if self.reads == 1:
            return [*good, Sample(self.device.id, "bad", float(ts), 1.0)]  # type: ignore[arg-type]
        return good


def plant(tmp_path: Path, gateway: str) -> PlantConfig:
    return parse_config(f"""
plant: {{id: p}}
devices:
  - {{id: {gateway}-dev, protocol: modbus, endpoint: "tcp://127.0.0.1:1", tags: [{{name: t, address: 40001}}]}}
edge: {{gateway_id: {gateway}, buffer_path: "{tmp_path / (gateway + '.sqlite')}", batch_max_delay_s: 0.1}}
""", "single-node.yaml")


async def run_edge(cfg: PlantConfig, sink: Any, seconds: float) -> Edge:
    edge = Edge(cfg, sink, drivers=lambda protocol: FaultyDriver)
    stop = asyncio.Event()
    task = asyncio.create_task(edge.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await task
    return edge


def outcome(db: str, device: str) -> tuple[list[str], int, int]:
    """Quarantine reasons (batch ids, window times and the bad value blanked), good rows stored and bad rows stored for one device."""
    with psycopg.connect(db) as c:
        reasons = [re.sub(r"\d{4}-\d\d-\d\dT[\d:]+Z", "TIME", re.sub(r"got [\d.e+-]+", "got X",
                                                                          re.sub(r"batch \S+/\d+", "batch GW/N", r)))
                   for (r,) in
                   c.execute("SELECT reason FROM quarantine WHERE convert_from(payload, 'UTF8') LIKE %s ORDER BY id",
                             (f'%"{device}"%',))]
        good = c.execute("SELECT count(*) FROM samples WHERE device_id = %s AND tag = 't'", (device,)).fetchone()
        bad = c.execute("SELECT count(*) FROM samples WHERE device_id = %s AND tag = 'bad'", (device,)).fetchone()
    return reasons, good[0] if good else 0, bad[0] if bad else 0


@pytest.mark.plain_only
def test_single_node_quarantines_a_bad_row_as_the_mqtt_path_does(db: str, broker: tuple[str, int],
                                                                  tmp_path: Path) -> None:
    uplink_gw, local_gw = f"gw-up-{uuid.uuid4().hex[:6]}", f"gw-sn-{uuid.uuid4().hex[:6]}"
    up_cfg, sn_cfg = plant(tmp_path, uplink_gw), plant(tmp_path, local_gw)
    collector, cstop, cthread = start_collector(db, broker, up_cfg)
    try:
        up_edge = asyncio.run(run_edge(up_cfg, MqttSink(f"mqtt://{broker[0]}:{broker[1]}", uplink_gw), 2.0))
    finally:
        cstop.set()
        cthread.join(10)
    hk_stop = threading.Event()
    try:
        sink: InProcessSink = single_node(db, sn_cfg, hk_stop)  # the wiring `shopfloor edge --database-url` uses
        sn_edge = asyncio.run(run_edge(sn_cfg, sink, 2.0))
    finally:
        hk_stop.set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not outcome(db, f"{uplink_gw}-dev")[0]:
        time.sleep(0.2)
    up_reasons, up_good, up_bad = outcome(db, f"{uplink_gw}-dev")
    sn_reasons, sn_good, sn_bad = outcome(db, f"{local_gw}-dev")
    assert sn_reasons == up_reasons == ["bad sample row 1 of batch GW/N: ts_us must be integer microseconds since "
                                        "the Unix epoch from TIME to TIME, got X"]
    assert up_bad == sn_bad == 0 and up_good > 5 and sn_good > 5  # the rest of the batch, and what followed
    assert sink.stats.quarantined == 1 and collector.stats.quarantined == 1
    for edge in (up_edge, sn_edge):  # the poison row did not jam the buffer: everything was confirmed
        assert edge.buffer.queued_samples == 0
