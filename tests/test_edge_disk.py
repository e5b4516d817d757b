"""The edge survives its own disk: a full filesystem under the buffer keeps the edge up with a bounded memory
queue, drops by the stated policy with a count and gap records, recovers by itself, and restarts cleanly.

The buffer lives on a private 2 MiB tmpfs (the tests run as root, as `make test` does here); a filler file
takes the rest of the space, as a log or a core dump would on a real gateway.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.record import Gap, Sample, StatusEvent
from edge.buffer import StoreAndForward
from edge.runner import Edge
from edge.uplink import Outgoing
from simulator.machine import Machine, MachineSpec
from simulator.modbus_server import ModbusPlc
from simulator.modbus_server import device_config as modbus_devices
from tests.conftest import free_port
from tests.test_edge_faults import cfg_with, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for this test only."""
    if os.geteuid() != 0:
        pytest.fail("the disk-full tests mount a tmpfs and need root (run the suite as root, as `make test` does)")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of the filesystem with a filler file."""
    filler = disk / "filler"
    with open(filler, "ab", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


class GateSink:
    """Our own seam: keeps what it is sent and confirms it, or refuses everything while `up` is False."""

    def __init__(self) -> None:
        self.up = True
        self.samples: list[Sample] = []
        self.events: list[StatusEvent] = []
        self.gaps: list[Gap] = []
        self.max_payload = 0
        self.on_ack: Any = None

    async def start(self) -> None:
        return None

    async def send(self, batch: Outgoing) -> bool:
        if not self.up:
            return False
        self.max_payload = max(self.max_payload, len(batch.payload()))
        self.samples.extend(batch.pending.samples())
        self.events.extend(batch.pending.events())
        self.gaps.extend(batch.pending.gaps())
        if self.on_ack is not None:
            self.on_ack([batch.batch_id])
        return True

    async def stop(self) -> None:
        return None


def test_full_disk_keeps_the_edge_up_bounded_counted_and_it_recovers(small_disk: Path, tmp_path: Path) -> None:
    port = free_port()
    machines = [Machine(MachineSpec(f"m{i}", seed=i, ideal_cycle_time_s=0.2), 0) for i in range(2)]
    cfg = cfg_with(modbus_devices(["m0", "m1"], "127.0.0.1", port, poll_interval_s=0.02), tmp_path)
    cfg = cfg.model_copy(update={"edge": cfg.edge.model_copy(update={
        "buffer_path": str(small_disk / "b.sqlite"), "buffer_max_mb": 1.5, "memory_queue_max_mb": 0.2})})
    sink = GateSink()
    emitted: list[Sample] = []

    async def main() -> None:
        plc = ModbusPlc(machines, "127.0.0.1", port)
        await plc.start()
        edge = Edge(cfg, sink)
        real_emit = edge._emit

        def counting_emit(samples: list[Sample], events: list[StatusEvent]) -> None:
            emitted.extend(samples)
            real_emit(samples, events)

        for r in edge.runners:
            r.emit = counting_emit
        stop = asyncio.Event()
        task = asyncio.create_task(edge.run(stop))
        assert await wait_for(lambda: len(sink.samples) > 50, 10)
        sink.up = False  # the uplink is down, and then the disk fills up
        filler = fill(small_disk)
        assert await wait_for(lambda: edge.disk_failing, 10), "a full disk was never noticed"
        assert await wait_for(lambda: edge.buffer.dropped_samples > 200, 30), "the memory queue never overflowed"
        assert not task.done(), "the edge stopped on a full disk"
        assert edge.queue.nbytes <= edge.queue.max_bytes  # bounded memory
        filler.unlink()  # space returns, then the uplink: no restart, no manual step
        sink.up = True
        assert await wait_for(lambda: not edge.disk_failing, 10), "the edge did not recover when space returned"
        stop.set()
        await task
        await plc.stop()
        assert edge.buffer.queued_samples == 0

    asyncio.run(main())
    received = {(s.device_id, s.tag, s.ts_us) for s in sink.samples}
    assert len(received) == len(sink.samples), "a sample arrived twice"
    dropped = sum(g.count for g in sink.gaps)
    assert dropped > 0 and {g.reason for g in sink.gaps} == {"memory_full"}
    assert {g.device_id for g in sink.gaps} == {"m0-plc", "m1-plc"}
    emitted_keys = {(s.device_id, s.tag, s.ts_us) for s in emitted}
    missing = emitted_keys - received
    assert len(missing) == dropped, "every sample is either delivered or counted in a gap"
    for dev, _tag, ts in missing:  # and every missing one lies inside a reported gap of its device
        assert any(g.device_id == dev and g.from_us <= ts <= g.to_us for g in sink.gaps)


def test_restart_on_a_full_disk_does_not_crash_and_drains(small_disk: Path) -> None:
    path = small_disk / "b.sqlite"
    b = StoreAndForward(path, "gw", max_bytes=1024 * 1024)
    b.add([Sample("d", "t", 1_700_000_000_000_000 + i, float(i)) for i in range(500)])
    epoch = b.boot_epoch
    b.close()
    fill(small_disk)
    b = StoreAndForward(path, "gw", max_bytes=1024 * 1024)  # a service manager restarts the edge
    assert b.boot_epoch == epoch + 1
    added = 0
    with pytest.raises(sqlite3.OperationalError, match="full"):
        for i in range(10_000):  # whatever free pages are left fill up; then the disk refuses, cleanly
            b.add([Sample("d", "t", 1_800_000_000_000_000 + i, None, "z" * 2000)])
            added += 1
    p = b.begin(100_000, 10**9)
    assert p is not None and len(p.samples()) == 500 + added
    b.end(p)  # the acknowledged chunks leave, even with the disk full
    assert b.queued_samples == 0
    b.close()
    b = StoreAndForward(path, "gw", max_bytes=1024 * 1024)
    assert b.begin(10_000) is None and b.boot_epoch == epoch + 2
    b.close()


def test_batches_stay_under_the_byte_cap_and_an_oversize_sample_is_counted(tmp_path: Path) -> None:
    b = StoreAndForward(tmp_path / "b.sqlite", "gw", chunk_max_bytes=64 * 1024)
    big = [Sample("d", "t", 1_700_000_000_000_000 + i, None, "x" * 5000) for i in range(100)]
    oversize = b.add([*big, Sample("d", "huge", 1_700_000_000_000_000, None, "y" * 100_000)])
    assert [s.tag for s in oversize] == ["huge"]
    got = 0
    while (p := b.begin(5000, 64 * 1024)) is not None:
        assert p.nbytes <= 64 * 1024
        got += len(p.samples())
        b.end(p)
    assert got == 100
    b.close()


def test_the_forwarder_never_builds_a_batch_over_batch_max_bytes(tmp_path: Path) -> None:
    """After an outage with large text values, every payload on the wire stays under the cap."""
    from edge.uplink import Forwarder

    cap = 128 * 1024
    b = StoreAndForward(tmp_path / "b.sqlite", "gw", chunk_max_bytes=cap - cap // 8)
    for i in range(40):  # the backlog of a cut: 40 flushes of 20 samples with 3 kB texts
        b.add([Sample("d", "t", 1_700_000_000_000_000 + i * 100 + j, None, "x" * 3000) for j in range(20)])
    sink = GateSink()
    fwd = Forwarder(b, sink, batch_max_samples=5000, batch_max_bytes=cap)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(fwd.run(stop))
        assert await wait_for(lambda: b.queued_samples == 0, 10)
        stop.set()
        await task

    asyncio.run(main())
    assert len(sink.samples) == 800
    assert cap // 2 < sink.max_payload <= cap
    b.close()
