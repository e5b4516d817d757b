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

from core.mqtt import redact_url
from core.plant import PlantConfig
from core.record import Quality, Sample, StatusEvent, now_us
from edge.buffer import StoreAndForward, is_disk_full
from edge.driver import DriverContext
from edge.drivers import driver_class
from edge.errors import NotConnected
from edge.memqueue import MemoryQueue
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
    crashes: int = 0
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
        self.ctx = DriverContext(self.log, Path(config_dir) if config_dir else Path.cwd())
        self.drivers = drivers
        self.driver = self.new_driver()

    def new_driver(self) -> Any:
        """A fresh driver instance (at start, and after a crash left the old one in an unknown state)."""
        driver = self.drivers(self.device.protocol)(self.device, self.ctx)
        driver.on_state = self._on_device_state
        return driver

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
                             "retrying with backoff'", self.device.id, reason, redact_url(self.device.endpoint))
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
            except Exception as exc:  # a driver failure: a state with its reason, then a fresh connection
                self.health.crashes += 1
                self.log.debug("device=%s driver error", self.device.id, exc_info=True)
                self._set_state(False, f"driver error: {crash_reason(exc)}")
                self.health.reconnects += 1
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
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


def crash_reason(exc: BaseException) -> str:
    """One line for a status event: the exception type and the start of its message."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


async def supervise(runner: DeviceRunner, stop: asyncio.Event, backoff_max_s: float = 30.0) -> None:
    """Run one device's task; if it dies, log it, report the device disconnected with the reason, restart it."""
    backoff = 1.0
    while not stop.is_set():
        try:
            await runner.run(stop)
            return
        except Exception as exc:  # never let one device's failure end its data silently
            runner.health.crashes += 1
            reason = f"device task failed: {crash_reason(exc)}"
            log.error("device=%s event=task_died reason=%r hint='restarting it in %.0f s; report this with the "
                      "debug log'", runner.device.id, reason, backoff, exc_info=log.isEnabledFor(logging.DEBUG))
            try:
                runner._set_state(False, reason)
                await runner.driver.close()
            except Exception:  # the driver is in an unknown state: a new one replaces it
                log.debug("device=%s close after crash failed", runner.device.id, exc_info=True)
            await _sleep_or_stop(stop, backoff)
            backoff = min(backoff * 2, backoff_max_s)
            runner.driver = runner.new_driver()


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
        e = cfg.edge
        self.buffer = StoreAndForward(buffer_path or e.buffer_path, self.gateway_id, int(e.buffer_max_mb * 1024 * 1024),
                                      chunk_max_bytes=e.batch_max_bytes - e.batch_max_bytes // 8)
        self.stats = EdgeStats()
        devices = [d for d in cfg.devices if device_ids is None or d.id in device_ids]
        self.queue = MemoryQueue(int(e.memory_queue_max_mb * 1024 * 1024))
        self.disk_failing = False
        self.outage_dropped = 0  # samples the memory queue dropped since the disk started refusing writes
        self.runners = []
        for d in devices:
            health = DeviceHealth(d.id, d.protocol)
            self.stats.devices[d.id] = health
            self.runners.append(DeviceRunner(d, self._emit, health, config_dir=config_dir, drivers=drivers))
        self.forwarder = Forwarder(self.buffer, sink, e.batch_max_samples, batch_max_bytes=e.batch_max_bytes)

    @property
    def unflushed_samples(self) -> int:
        """Samples read but not yet written to the disk buffer."""
        return len(self.queue)

    def _emit(self, samples: list[Sample], events: list[StatusEvent]) -> None:
        self.stats.emitted_samples += len(samples)
        self.queue.push(samples, events)

    async def _flush(self) -> None:
        if not self.queue.samples and not self.queue.events and not self.queue.gaps.spans:
            return
        samples, events, gaps = self.queue.take()
        try:
            oversize = await asyncio.to_thread(self.buffer.add, samples, events, gaps)
        except sqlite3.Error as exc:  # disk full, file removed: keep the data in memory (bounded) and say so
            self.queue.put_back(samples, events, gaps)
            self._count_memory_drops()
            if not self.disk_failing:
                self.disk_failing = True
                log.error("buffer=%s event=buffer_write_failed error=%r disk_full=%s queued_in_memory=%d "
                          "memory_queue_max_mb=%.1f hint='free disk space at edge.buffer_path; the edge keeps "
                          "running and writes the queue as soon as it can, dropping the oldest samples (counted, "
                          "reported as gaps) past the memory limit'", self.buffer.path, str(exc),
                          is_disk_full(exc), len(self.queue), self.queue.max_bytes / 1048576)
            return
        if self.disk_failing:
            self.disk_failing = False
            self._count_memory_drops()
            log.info("buffer=%s event=buffer_write_recovered dropped_in_outage=%d dropped_total=%d",
                     self.buffer.path, self.outage_dropped, self.buffer.dropped_samples)
            self.outage_dropped = 0
        if oversize:
            self.queue.gaps.add(oversize, "oversize")
            self.buffer.count_dropped(len(oversize))
            log.warning("buffer=%s event=oversize_dropped samples=%d first=%s/%s batch_max_bytes=%d hint='a "
                        "single sample is larger than one uplink batch may be; shorten the text value at the "
                        "source or raise edge.batch_max_bytes'", self.buffer.path, len(oversize),
                        oversize[0].device_id, oversize[0].tag, self.cfg.edge.batch_max_bytes)
        self._count_memory_drops()
        self.forwarder.wake()

    def _count_memory_drops(self) -> None:
        n = self.queue.take_dropped()
        if not n:
            return
        self.buffer.count_dropped(n)
        if not self.outage_dropped:  # once per outage; the total comes with the recovery line
            log.warning("buffer=%s event=memory_queue_full dropped=%d dropped_total=%d policy=drop_oldest "
                        "hint='the disk buffer refuses writes; free disk space at edge.buffer_path; every drop is "
                        "counted and sent to the collector as a gap'", self.buffer.path, n,
                        self.buffer.dropped_samples)
        self.outage_dropped += n

    async def _flusher(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _sleep_or_stop(stop, self.cfg.edge.batch_max_delay_s)
            await self._flush()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("gateway=%s boot_epoch=%d devices=%d buffer=%s queued=%d event=edge_started", self.gateway_id,
                 self.buffer.boot_epoch, len(self.runners), self.buffer.path, self.buffer.queued_samples)
        tasks = [asyncio.create_task(supervise(r, stop), name=f"device:{r.device.id}") for r in self.runners]
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
            if len(self.queue):  # the disk still refuses writes: these samples end with the process
                self.buffer.count_dropped(len(self.queue))
                log.error("buffer=%s event=stopped_with_unwritten_samples samples=%d hint='free disk space at "
                          "edge.buffer_path before stopping the edge'", self.buffer.path, len(self.queue))
            await self.forwarder.drain(timeout_s=5.0)
            fwd_stop.set()
            await forwarder
            self.buffer.close()
            log.info("gateway=%s event=edge_stopped", self.gateway_id)
