"""End to end on real services: simulator -> edge -> broker -> collector -> PostgreSQL, checked against ground truth."""

from __future__ import annotations

import asyncio
import bisect
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from collector.ingest import Collector
from core.config import parse_config
from core.plant import PlantConfig
from edge.runner import Edge
from edge.uplink import MqttSink
from simulator.factory import Factory, FactoryPlan
from simulator.machine import STATE_CODES
from tests.conftest import free_port

pytestmark = pytest.mark.integration

CODE_STATE = {v: k for k, v in STATE_CODES.items()}


def config_for(factory: Factory, tmp_path: Path) -> PlantConfig:
    doc = factory.plant_config("e2e-plant")
    doc["edge"] = {"gateway_id": f"gw-{uuid.uuid4().hex[:6]}", "buffer_path": str(tmp_path / "buf.sqlite"),
                   "batch_max_delay_s": 0.1}
    return parse_config(yaml.safe_dump(doc, sort_keys=False), "e2e.yaml")


def start_collector(db: str, broker: tuple[str, int], cfg: PlantConfig) -> tuple[Collector, threading.Event, threading.Thread]:
    stop = threading.Event()
    c = Collector(db, f"mqtt://{broker[0]}:{broker[1]}", share_group=f"g{uuid.uuid4().hex[:6]}",
                  client_id=f"col-{uuid.uuid4().hex[:8]}")
    t = threading.Thread(target=c.run, args=(stop,), daemon=True)
    t.start()
    assert c.connected.wait(10), "collector did not connect to the broker"
    return c, stop, t


def runs(points: list[tuple[int, str]], end_us: int, min_us: int) -> list[str]:
    """State sequence with runs shorter than min_us removed and equal neighbours merged."""
    starts: list[tuple[int, str]] = []
    for t, s in points:
        if not starts or starts[-1][1] != s:
            starts.append((t, s))
    out: list[str] = []
    for i, (t, s) in enumerate(starts):
        nxt = starts[i + 1][0] if i + 1 < len(starts) else end_us
        if nxt - t >= min_us and (not out or out[-1] != s):
            out.append(s)
    return out


def test_simulator_to_database_matches_ground_truth(db: str, broker: tuple[str, int], tmp_path: Path) -> None:
    plan = FactoryPlan(modbus=2, opcua=1, mqtt=1, sparkplug=1, seed=7, speed=1.0, duration_scale=0.03,
                       modbus_port=free_port(), opcua_port=free_port(), broker_host=broker[0], broker_port=broker[1],
                       tick_s=0.05, poll_interval_s=0.1, unnetworked=1)
    factory = Factory(plan)
    cfg = config_for(factory, tmp_path)
    collector, cstop, cthread = start_collector(db, broker, cfg)

    async def main() -> Edge:
        await factory.start()
        stop = asyncio.Event()
        edge = Edge(cfg, MqttSink(f"mqtt://{broker[0]}:{broker[1]}", cfg.edge.gateway_id or "gw"))
        task = asyncio.create_task(edge.run(stop))
        await asyncio.sleep(10.0)
        await factory.stop()
        await asyncio.sleep(0.5)
        stop.set()
        await task
        return edge

    edge = asyncio.run(main())
    end_us = max(m.t_us for m in factory.machines)
    deadline = time.monotonic() + 20
    read = sum(h.samples for h in edge.stats.devices.values())
    with psycopg.connect(db) as conn:
        while time.monotonic() < deadline:
            (n,) = conn.execute("SELECT count(*) FROM samples").fetchone()  # type: ignore[misc]
            if edge.buffer.queued_samples == 0 and n >= read * 0.98:
                break
            time.sleep(0.2)
        cstop.set()
        cthread.join(10)
        assert edge.forwarder.confirmed_samples > 0
        for h in edge.stats.devices.values():
            assert h.samples > 0, f"device {h.device_id} ({h.protocol}) delivered nothing: {h.reason}"
        for group in factory.groups.values():
            for m in group:
                truth = m.ground_truth(end_us)
                dev = next(a.device for a in cfg.machines() if a.id == m.spec.id)
                rows = conn.execute("SELECT (extract(epoch from ts)*1e6)::bigint, tag, value FROM samples "
                                    "WHERE device_id=%s AND quality='good' ORDER BY ts", (dev,)).fetchall()
                counts = [r for r in rows if r[1] == "parts_total"]
                assert counts, f"{dev}: no parts_total stored"
                times = [c[0] for c in truth["counts"]]
                for ts, _, v in counts:
                    # the PLC shows the count of the last simulator tick before the read
                    lo = bisect.bisect_right(times, ts - 1_000_000)
                    hi = bisect.bisect_right(times, ts + 50_000)
                    allowed = {truth["counts"][i - 1][1] if i else 0 for i in range(lo, hi + 1)}
                    assert int(v) in allowed, f"{dev}: parts_total {v} at {ts} not in ground truth {sorted(allowed)}"
                assert int(counts[-1][2]) >= truth["parts_total"] - 3, f"{dev}: last count lags the ground truth"
                states = [(ts, CODE_STATE[int(v)]) for ts, tag, v in rows if tag == "status"]
                stored = runs(states, end_us, 600_000)
                first = states[0][0]  # the edge connects after the machines start: compare from there on
                true_seq = runs([(max(a, first), s) for a, b, s in truth["intervals"] if b > first], end_us, 600_000)
                # every state change the simulator made (that lasted long enough to be polled) is in the database
                assert stored[: len(true_seq)] == true_seq[: len(stored)], f"{dev}: {stored} vs {true_seq}"
                assert len(stored) >= len(true_seq) - 1, f"{dev}: {stored} vs {true_seq} from {states[:5]}"
        (dups,) = conn.execute("SELECT count(*) FROM (SELECT 1 FROM samples GROUP BY device_id, tag, ts "
                               "HAVING count(*) > 1) d").fetchone()  # type: ignore[misc]
        assert dups == 0
        events = conn.execute("SELECT DISTINCT device_id FROM device_status WHERE state='connected'").fetchall()
        assert {e[0] for e in events} >= {d.id for d in cfg.devices if d.protocol in ("modbus", "opcua")}


def synthetic_cfg(tmp_path: Path) -> PlantConfig:
    return parse_config(f"""
plant: {{id: p}}
devices:
  - {{id: d1, protocol: modbus, endpoint: "tcp://127.0.0.1:1", tags: [{{name: t, address: 40001}}]}}
edge: {{gateway_id: gw-synth, buffer_path: "{tmp_path / 'b.sqlite'}", batch_max_samples: 500}}
""", "synthetic.yaml")


async def push_through_uplink(cfg: PlantConfig, broker_url: str, n: int, during: Any) -> Edge:
    """Feed n distinct samples into a real Edge buffer/forwarder (no devices) while `during` runs."""
    from core.record import Sample

    edge = Edge(cfg, MqttSink(broker_url, "gw-synth"), device_ids=[])
    stop = asyncio.Event()
    task = asyncio.create_task(edge.run(stop))
    base = 1_750_000_000_000_000
    for i in range(0, n, 250):
        edge._emit([Sample("d1", "t", base + j * 1000, float(j)) for j in range(i, min(n, i + 250))], [])
        await asyncio.sleep(0.01)
    await during()
    deadline = time.monotonic() + 60
    while edge.buffer.queued_samples and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    stop.set()
    await task
    return edge


def test_collector_killed_mid_batch_loses_nothing_and_duplicates_nothing(db: str, broker: tuple[str, int],
                                                                         tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    cfg = synthetic_cfg(tmp_path)
    broker_url = f"mqtt://{broker[0]}:{broker[1]}"
    cmd = [sys.executable, "-m", "shopfloor.cli", "collector", "--database-url", db, "--broker-url", broker_url,
           "--client-id", f"kill-{uuid.uuid4().hex[:6]}"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    logf = open(tmp_path / "collector.log", "ab")  # noqa: SIM115 - a file, not a pipe: a full pipe blocks the child
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=logf)
    n = 20_000

    async def kill_and_restart() -> None:
        nonlocal proc
        with psycopg.connect(db) as conn:
            for _ in range(200):
                (k,) = conn.execute("SELECT count(*) FROM samples").fetchone()  # type: ignore[misc]
                if k > 0:
                    break
                await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        await asyncio.sleep(1.0)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=logf)

    try:
        edge = asyncio.run(push_through_uplink(cfg, broker_url, n, kill_and_restart))
        log_tail = (tmp_path / "collector.log").read_text()[-3000:]
        assert edge.buffer.queued_samples == 0, f"edge still holds unconfirmed samples; collector log:\n{log_tail}"
    finally:
        proc.terminate()
        proc.wait(10)
        logf.close()
    with psycopg.connect(db) as conn:
        (count, distinct) = conn.execute("SELECT count(*), count(DISTINCT ts) FROM samples").fetchone()  # type: ignore[misc]
    assert count == distinct == n


def test_malformed_uplink_payload_is_quarantined_and_stream_continues(db: str, broker: tuple[str, int],
                                                                     tmp_path: Path) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from core.record import Batch, Sample

    cfg = synthetic_cfg(tmp_path)
    collector, stop, thread = start_collector(db, broker, cfg)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect(*broker)
    pub.loop_start()
    try:
        good = Batch("gw-x", 1, [Sample("d1", "t", 1_750_000_000_000_000, 1.0)])
        mixed = Batch("gw-x", 2, [Sample("d1", "t", 1_750_000_000_000_001, 2.0)]).encode().replace(
            b'"samples":[', b'"samples":[["d1"],', 1)  # one bad row, then a good one
        for payload in (b"{not json", mixed, b"\x08\x96\x01", good.encode()):
            pub.publish("shopfloor/v1/gw-x/samples", payload, qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 10
        with psycopg.connect(db) as conn:
            while time.monotonic() < deadline:
                (q,) = conn.execute("SELECT count(*) FROM quarantine").fetchone()  # type: ignore[misc]
                (s,) = conn.execute("SELECT count(*) FROM samples").fetchone()  # type: ignore[misc]
                if q == 3 and s == 2:
                    break
                time.sleep(0.1)
            reasons = [r[0] for r in conn.execute("SELECT reason FROM quarantine ORDER BY id")]
        assert s == 2 and q == 3, (s, q)  # the good row of the mixed batch went in beside the good batch
        assert "not JSON" in reasons[0] and "bad sample row 0 of batch gw-x/2" in reasons[1]
    finally:
        pub.loop_stop()
        stop.set()
        thread.join(10)


@pytest.mark.slow
def test_database_down_edge_buffers_then_drains(db: str, tmp_path: Path) -> None:
    """Single-node mode through a TCP proxy to PostgreSQL: cut it for a minute, nothing is lost."""
    from core.record import Sample
    from shopfloor.wiring import InProcessSink
    from tests.proxy import TcpProxy

    proxy = TcpProxy("127.0.0.1", 5432)
    url = db.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    cfg = synthetic_cfg(tmp_path)
    n_before, n_during = 2000, 3000

    async def main() -> Edge:
        edge = Edge(cfg, InProcessSink(url), device_ids=[])
        stop = asyncio.Event()
        task = asyncio.create_task(edge.run(stop))
        base = 1_760_000_000_000_000
        edge._emit([Sample("d1", "t", base + j, float(j)) for j in range(n_before)], [])
        await asyncio.sleep(1.5)
        proxy.cut()
        for i in range(0, n_during, 100):
            edge._emit([Sample("d1", "t", base + n_before + j, 0.0) for j in range(i, i + 100)], [])
            await asyncio.sleep(0.05)
        await asyncio.sleep(60.0 - n_during / 100 * 0.05)
        assert edge.buffer.queued_samples >= n_during * 0.9, "edge should be holding the samples while the DB is down"
        proxy.restore()
        deadline = time.monotonic() + 60
        while edge.buffer.queued_samples and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        stop.set()
        await task
        return edge

    try:
        asyncio.run(main())
    finally:
        proxy.close()
    with psycopg.connect(db) as conn:
        (count,) = conn.execute("SELECT count(*) FROM samples").fetchone()  # type: ignore[misc]
    assert count == n_before + n_during
