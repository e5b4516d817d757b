"""The simulated factory: machines played from a seed behind real OPC UA, Modbus TCP and MQTT endpoints.

`Factory` starts the protocol servers on loopback, advances every machine on a fixed tick, writes a
plant file that reads exactly these endpoints, and the ground truth (state intervals, every count) on stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from core.times import now_us
from simulator.machine import Machine, MachineSpec, write_ground_truth

log = logging.getLogger(__name__)


@dataclass
class FactoryPlan:
    modbus: int = 2
    opcua: int = 1
    mqtt: int = 1
    sparkplug: int = 1
    seed: int = 42
    speed: float = 1.0
    duration_scale: float = 1.0
    host: str = "127.0.0.1"
    modbus_port: int = 5020
    opcua_port: int = 4840
    broker_host: str = "127.0.0.1"
    broker_port: int = 1883
    tick_s: float = 0.1
    poll_interval_s: float = 0.5
    counter_bits: int = 32
    unnetworked: int = 1  # machines in the register with no device: they count against the networking rate


class Factory:
    def __init__(self, plan: FactoryPlan) -> None:
        self.plan = plan
        start = now_us()
        self.groups: dict[str, list[Machine]] = {}
        n = 0
        for proto, count, prefix, cycle in (("modbus", plan.modbus, "press", 2.0), ("opcua", plan.opcua, "cnc", 6.0),
                                            ("mqtt", plan.mqtt, "mill", 4.0), ("sparkplug", plan.sparkplug, "robot", 3.0)):
            machines = []
            for i in range(count):
                n += 1
                spec = MachineSpec(id=f"{prefix}-{i + 1:02d}", seed=plan.seed * 1000 + n, ideal_cycle_time_s=cycle,
                                   speed=plan.speed, duration_scale=plan.duration_scale, counter_bits=plan.counter_bits)
                machines.append(Machine(spec, start))
            self.groups[proto] = machines
        self.servers: list[Any] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def machines(self) -> list[Machine]:
        return [m for ms in self.groups.values() for m in ms]

    # ------------------------------------------------------------------ config
    def plant_config(self, plant_id: str = "sim-plant") -> dict[str, Any]:
        """A plant file (as a dict) whose devices read this factory's endpoints."""
        from simulator import modbus_server, mqtt_publisher, opcua_server

        p = self.plan
        devices: list[dict[str, Any]] = []
        machines: list[dict[str, Any]] = []
        makers = {
            "modbus": (lambda ids: modbus_server.device_config(ids, p.host, p.modbus_port, p.poll_interval_s),
                       modbus_server.signals_config()),
            "opcua": (lambda ids: opcua_server.device_config(ids, p.host, p.opcua_port), opcua_server.signals_config()),
            "mqtt": (lambda ids: mqtt_publisher.device_config(ids, p.broker_host, p.broker_port, "json"),
                     mqtt_publisher.signals_config()),
            "sparkplug": (lambda ids: mqtt_publisher.device_config(ids, p.broker_host, p.broker_port, "sparkplug"),
                          mqtt_publisher.signals_config()),
        }
        for proto, ms in self.groups.items():
            if not ms:
                continue
            make_devices, signals = makers[proto]
            devs = make_devices([m.spec.id for m in ms])
            devices.extend(devs)
            for m, d in zip(ms, devs, strict=True):
                # timestamps are wall-clock: at speed 10 a 2 s cycle takes 0.2 wall seconds, so PRU is 0.2 s
                machines.append({"id": m.spec.id, "kind": "machine",
                                 "ideal_cycle_time_s": m.spec.ideal_cycle_time_s / m.spec.speed,
                                 "device": d["id"], "signals": signals})
        for i in range(p.unnetworked):
            machines.append({"id": f"manual-{i + 1:02d}", "kind": "machine", "ideal_cycle_time_s": 30.0})
        return {
            "plant": {"id": plant_id, "name": "Simulated plant", "timezone": "UTC", "emission_factor_kg_per_kwh": 0.5703},
            "shifts": [{"name": "early", "start": "00:00", "end": "08:00"},
                       {"name": "day", "start": "08:00", "end": "16:00"},
                       {"name": "late", "start": "16:00", "end": "00:00"}],
            "assets": [{"id": "sim-area", "kind": "area", "children": [
                {"id": "sim-line-1", "kind": "line", "children": machines}]}],
            "devices": devices,
            "edge": {"gateway_id": "sim-gw", "buffer_path": "var/edge-buffer.sqlite"},
        }

    def write_config(self, path: str | Path, **overrides: Any) -> dict[str, Any]:
        doc = self.plant_config()
        for key, value in overrides.items():
            doc[key] = {**doc.get(key, {}), **value} if isinstance(value, dict) else value
        Path(path).write_text("# written by `shopfloor simulate`; reads the simulated factory's endpoints\n"
                              + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        return doc

    # ------------------------------------------------------------------ running
    async def start(self) -> None:
        p = self.plan
        if self.groups["modbus"]:
            from simulator.modbus_server import ModbusPlc

            self.servers.append(ModbusPlc(self.groups["modbus"], p.host, p.modbus_port))
        if self.groups["opcua"]:
            from simulator.opcua_server import OpcUaPlc

            self.servers.append(OpcUaPlc(self.groups["opcua"], p.host, p.opcua_port))
        for mode in ("mqtt", "sparkplug"):
            if self.groups[mode]:
                from simulator.mqtt_publisher import MqttMachinePublisher

                self.servers.append(MqttMachinePublisher(self.groups[mode], p.broker_host, p.broker_port,
                                                         "json" if mode == "mqtt" else "sparkplug"))
        for s in self.servers:
            r = s.start()
            if asyncio.iscoroutine(r):
                await r
        t0 = now_us()  # the story starts when every endpoint can be read, not when the plan was made
        for m in self.machines:
            m.reset(t0)
        await self.tick()
        self._task = asyncio.create_task(self._run(), name="factory")
        log.info("event=factory_started machines=%d modbus=%s:%d opcua=opc.tcp://%s:%d broker=%s:%d",
                 len(self.machines), p.host, p.modbus_port, p.host, p.opcua_port, p.broker_host, p.broker_port)

    async def tick(self) -> None:
        t = now_us()
        for m in self.machines:
            m.advance_to(t)
        for s in self.servers:
            fn = getattr(s, "update", None) or s.publish
            r = fn()
            if asyncio.iscoroutine(r):
                await r

    async def _run(self) -> None:
        next_t = time.monotonic()
        while True:
            next_t += self.plan.tick_s
            await asyncio.sleep(max(0.0, next_t - time.monotonic()))
            await self.tick()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for s in reversed(self.servers):
            r = s.stop()
            if asyncio.iscoroutine(r):
                await r
        self.servers.clear()

    def write_ground_truth(self, path: str | Path, until_us: int | None = None) -> None:
        with open(path, "w", encoding="utf-8") as fp:
            write_ground_truth(self.machines, fp, until_us)
