"""Edge runtime against real simulated PLCs: a PLC restart resumes data with no manual step, and the
connection changes become status events with reasons."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config import parse_config
from core.plant import PlantConfig
from core.record import Sample, StatusEvent
from edge.runner import Edge
from edge.uplink import Outgoing
from simulator.machine import Machine, MachineSpec
from simulator.modbus_server import ModbusPlc
from simulator.modbus_server import device_config as modbus_devices
from simulator.opcua_server import OpcUaPlc
from simulator.opcua_server import device_config as opcua_devices
from tests.conftest import free_port

pytestmark = pytest.mark.integration


class ListSink:
    """Our own seam (like Telegraf's testutil.Accumulator): keeps batches, confirms them at once."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.events: list[StatusEvent] = []
        self.on_ack: Any = None

    async def start(self) -> None:
        return None

    async def send(self, batch: Outgoing) -> bool:
        self.samples.extend(batch.pending.samples())
        self.events.extend(batch.pending.events())
        if self.on_ack is not None:
            self.on_ack([batch.batch_id])
        return True

    async def stop(self) -> None:
        return None


def cfg_with(devices: list[dict[str, Any]], tmp_path: Path) -> PlantConfig:
    doc = {"plant": {"id": "p"}, "devices": devices,
           "edge": {"gateway_id": "gw", "buffer_path": str(tmp_path / "b.sqlite"), "batch_max_delay_s": 0.05}}
    return parse_config(yaml.safe_dump(doc), "faults.yaml")


async def wait_for(cond: Any, timeout_s: float) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while loop.time() < end:
        if cond():
            return True
        await asyncio.sleep(0.05)
    return False


def test_modbus_plc_restart_resumes_and_is_logged_as_status_events(tmp_path: Path) -> None:
    port = free_port()
    machine = Machine(MachineSpec("m1", seed=1, ideal_cycle_time_s=0.2), 0)
    cfg = cfg_with(modbus_devices(["m1"], "127.0.0.1", port, poll_interval_s=0.1), tmp_path)
    sink = ListSink()

    async def main() -> None:
        plc = ModbusPlc([machine], "127.0.0.1", port)
        await plc.start()
        edge = Edge(cfg, sink)
        stop = asyncio.Event()
        task = asyncio.create_task(edge.run(stop))
        assert await wait_for(lambda: len(sink.samples) > 20, 10)
        await plc.stop()  # the PLC reboots
        assert await wait_for(lambda: any(e.state == "disconnected" for e in sink.events), 10)
        before = len(sink.samples)
        await asyncio.sleep(1.0)
        plc = ModbusPlc([machine], "127.0.0.1", port)
        await plc.start()
        assert await wait_for(lambda: len(sink.samples) > before + 20, 20), "data did not resume after the restart"
        stop.set()
        await task
        await plc.stop()

    asyncio.run(main())
    states = [e.state for e in sink.events]
    assert states[0] == "connected" and "disconnected" in states
    assert states[states.index("disconnected"):].count("connected") >= 1
    down = next(e for e in sink.events if e.state == "disconnected")
    assert down.reason and down.device_id == "m1-plc" and down.gateway_id == "gw"
    # the outage is explicit in the data too: every tag gets a bad-quality sample at the disconnect
    gap = [s for s in sink.samples if s.ts_us == down.ts_us]
    assert {s.tag for s in gap} == {t.name for t in cfg.devices[0].tags}
    assert all(s.quality == "bad" and s.value is None and "disconnected" in (s.text or "") for s in gap)


def test_opcua_server_restart_resubscribes_without_manual_step(tmp_path: Path) -> None:
    port = free_port()
    machine = Machine(MachineSpec("c1", seed=2, ideal_cycle_time_s=0.2), 0)
    cfg = cfg_with(opcua_devices(["c1"], "127.0.0.1", port), tmp_path)
    sink = ListSink()

    async def main() -> None:
        from core.record import now_us

        plc = OpcUaPlc([machine], "127.0.0.1", port)
        await plc.start()
        machine.reset(now_us())
        edge = Edge(cfg, sink)
        stop = asyncio.Event()
        task = asyncio.create_task(edge.run(stop))

        async def feed() -> None:
            while True:
                machine.advance_to(now_us())
                try:
                    await plc.update()
                except Exception:  # noqa: BLE001 - the server is being restarted under us
                    pass
                await asyncio.sleep(0.05)

        feeder = asyncio.create_task(feed())
        assert await wait_for(lambda: any(s.tag == "parts_total" for s in sink.samples), 20)
        await plc.stop()
        assert await wait_for(lambda: any(e.state == "disconnected" for e in sink.events), 20)
        plc = OpcUaPlc([machine], "127.0.0.1", port)
        await plc.start()
        before = max(s.ts_us for s in sink.samples if s.tag == "parts_total")
        assert await wait_for(lambda: any(s.tag == "parts_total" and s.ts_us > before for s in sink.samples), 30), \
            "subscription was not re-created after the server restart"
        feeder.cancel()
        stop.set()
        await task
        await plc.stop()

    asyncio.run(main())
    assert [e.state for e in sink.events].count("connected") >= 2
