"""Edge runtime: one supervisor task per device, a flusher into the disk buffer, and a forwarder to the uplink.

The runner owns scheduling and connection state (like Home Assistant's update coordinator): drivers only
connect, read and decode. A device that fails is logged once when it goes down and once when it recovers,
and retried with capped exponential backoff; its connection changes become `device_status` events.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.plant import PlantConfig
from core.record import Quality, Sample, StatusEvent, now_us
from edge.buffer import StoreAndForward
from edge.driver import DriverContext
from edge.drivers import driver_class
from edge.errors import NotConnected
from edge.uplink import Forwarder, Sink

log = logging.getLogger(__name__)
STOPPED = "edge stopped"  # the disconnect reason when the edge itself shuts down


@dataclass
class DeviceHealth:
    device_id: str
    protocol: str
    connected: bool = False
    reason: str = "not started"
    samples: int = 0
    bad_samples: int = 0
    reconnects: int = 0
    last_sample_us: int = 0


@dataclass
class EdgeStats:
    devices: dict[str, DeviceHealth] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    emitted_samples: int = 0  # every sample handed to the buffer, with the bad-quality ones that mark a disconnect


class DeviceRunner:
    """Connect, read, reconnect one device forever; push samples and status changes to the edge."""

    def __init__(self, device: Any, emit: Callable[[list[Sample], list[StatusEvent]], None],
                 health: DeviceHealth, backoff_max_s: float = 30.0, config_dir: str | None = None,
                 drivers: Callable[[str], Any] = driver_class) -> None:
        """drivers: protocol -> driver class (default: the registry); a test or benchmark may pass its own."""
        self.device = device
        self.emit = emit
        self.health = health
        self.backoff_max_s = backoff_max_s
        self.log = logging.getLogger(f"edge.device.{device.id}")
        ctx = DriverContext(self.log, Path(config_dir) if config_dir else Path.cwd())
        self.driver = drivers(device.protocol)(device, ctx)
        self.driver.on_state = self._on_device_state

    def _set_state(self, connected: bool, reason: str) -> None:
        if connected == self.health.connected and (connected or reason == self.health.reason):
            return
        self.health.connected, self.health.reason = connected, reason
        state = "connected" if connected else "disconnected"
        if connected:
            self.log.info("device=%s event=connected", self.device.id)
        elif reason == STOPPED:  # on purpose: nothing to check
            self.log.info("device=%s event=disconnected reason=%r", self.device.id, reason)
        else:
            self.log.warning("device=%s event=disconnected reason=%r hint='check the endpoint %s is reachable; "
                             "retrying with backoff'", self.device.id, reason, self.device.endpoint)
        ts = now_us()
        bad: list[Sample] = []
        if not connected:  # the gap is explicit in the data: one bad-quality sample per tag, with the reason
            bad = [Sample(self.device.id, t.name, ts, None, f"disconnected: {reason}"[:500], Quality.BAD)
                   for t in self.device.tags]
        self.emit(bad, [StatusEvent(self.device.id, ts, state, reason)])

    def _on_device_state(self, connected: bool, reason: str) -> None:
        self._set_state(connected, reason)

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                await self.driver.connect()
            except NotConnected as exc:
                self._set_state(False, str(exc) or type(exc).__name__)
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
                self.health.reconnects += 1
                continue
            self._set_state(True, "connected")
            backoff = 0.5
            try:
                await self._read_loop(stop)
            except NotConnected as exc:
                self._set_state(False, str(exc) or "connection lost")
                self.health.reconnects += 1
            finally:
                await self.driver.close()
        if self.health.connected:
            self._set_state(False, STOPPED)

    async def _read_loop(self, stop: asyncio.Event) -> None:
        interval = self.driver.poll_interval_s
        next_tick = time.monotonic()
        while not stop.is_set():
            if interval:
                delay = next_tick - time.monotonic()
                if delay > 0:
                    await _sleep_or_stop(stop, delay)
                    if stop.is_set():
                        return
                next_tick += interval
                if next_tick < time.monotonic():  # we fell behind: skip missed ticks, never burst
                    next_tick = time.monotonic() + interval
                samples = await self.driver.read()
            else:
                read = asyncio.ensure_future(self.driver.read())
                stopper = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait({read, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if read not in done:
                    read.cancel()
                    await asyncio.gather(read, return_exceptions=True)
                    return
                stopper.cancel()
                samples = read.result()
            if samples:
                self.health.samples += len(samples)
                self.health.bad_samples += sum(1 for s in samples if s.quality != "good")
                self.health.last_sample_us = samples[-1].ts_us
                self.emit(samples, [])


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


class Edge:
    """All devices of one plant file in one asyncio process, feeding one buffer and one uplink."""

    def __init__(self, cfg: PlantConfig, sink: Sink, buffer_path: str | None = None,
                 gateway_id: str | None = None, device_ids: list[str] | None = None,
                 config_dir: str | None = None, drivers: Callable[[str], Any] = driver_class) -> None:
        """config_dir: folder of the plant file; relative certificate and key paths resolve against it.
        drivers: protocol -> driver class (default: the `shopfloor.drivers` registry)."""
        self.cfg = cfg
        self.gateway_id = gateway_id or cfg.edge.gateway_id or socket.gethostname()
        self.buffer = StoreAndForward(buffer_path or cfg.edge.buffer_path, self.gateway_id,
                                      int(cfg.edge.buffer_max_mb * 1024 * 1024))
        self.stats = EdgeStats()
        devices = [d for d in cfg.devices if device_ids is None or d.id in device_ids]
        self._pending_samples: list[Sample] = []
        self._pending_events: list[StatusEvent] = []
        self.runners = []
        for d in devices:
            health = DeviceHealth(d.id, d.protocol)
            self.stats.devices[d.id] = health
            self.runners.append(DeviceRunner(d, self._emit, health, config_dir=config_dir, drivers=drivers))
        self.forwarder = Forwarder(self.buffer, sink, cfg.edge.batch_max_samples)

    @property
    def unflushed_samples(self) -> int:
        """Samples read but not yet written to the disk buffer."""
        return len(self._pending_samples)

    def _emit(self, samples: list[Sample], events: list[StatusEvent]) -> None:
        self.stats.emitted_samples += len(samples)
        self._pending_samples.extend(samples)
        self._pending_events.extend(events)

    async def _flush(self) -> None:
        if not self._pending_samples and not self._pending_events:
            return
        samples, events = self._pending_samples, self._pending_events
        self._pending_samples, self._pending_events = [], []
        try:
            await asyncio.to_thread(self.buffer.add, samples, events)
        except sqlite3.Error as exc:  # disk full, file removed: keep the data in memory and say what to do
            self._pending_samples[:0], self._pending_events[:0] = samples, events
            log.error("buffer=%s event=buffer_write_failed error=%r pending=%d hint='check free disk space and "
                      "permissions of edge.buffer_path; retrying'", self.buffer.path, str(exc), len(samples))
            return
        self.forwarder.wake()

    async def _flusher(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _sleep_or_stop(stop, self.cfg.edge.batch_max_delay_s)
            await self._flush()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("gateway=%s boot_epoch=%d devices=%d buffer=%s queued=%d event=edge_started", self.gateway_id,
                 self.buffer.boot_epoch, len(self.runners), self.buffer.path, self.buffer.queued_samples)
        tasks = [asyncio.create_task(r.run(stop), name=f"device:{r.device.id}") for r in self.runners]
        flusher = asyncio.create_task(self._flusher(stop), name="flusher")
        fwd_stop = asyncio.Event()
        forwarder = asyncio.create_task(self.forwarder.run(fwd_stop), name="forwarder")
        try:
            waiter = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({waiter, flusher, forwarder}, return_when=asyncio.FIRST_COMPLETED)
            if waiter not in done:  # a programming error in the edge itself: fail loudly, do not limp on
                stop.set()
                for t in done:
                    t.result()
        finally:
            await asyncio.gather(*tasks, return_exceptions=True)
            await flusher
            await self._flush()
            await self.forwarder.drain(timeout_s=5.0)
            fwd_stop.set()
            await forwarder
            self.buffer.close()
            log.info("gateway=%s event=edge_stopped", self.gateway_id)
