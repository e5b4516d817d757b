"""Store-and-forward: survives kill -9, deletes only confirmed chunks, drops oldest when full and counts it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from core.record import Sample, StatusEvent
from edge.buffer import StoreAndForward


def samples(n: int, start: int = 0) -> list[Sample]:
    return [Sample("dev", "t", 1_700_000_000_000_000 + i, float(i)) for i in range(start, start + n)]


def test_stamps_gateway_boot_and_sequence(tmp_path: Path) -> None:
    b = StoreAndForward(tmp_path / "b.sqlite", "gw-1")
    s = samples(3)
    b.add(s)
    assert [(x.gateway_id, x.boot_epoch, x.seq) for x in s] == [("gw-1", 1, 1), ("gw-1", 1, 2), ("gw-1", 1, 3)]
    b.close()
    b2 = StoreAndForward(tmp_path / "b.sqlite", "gw-1")
    assert b2.boot_epoch == 2  # a restart is a new boot: (boot_epoch, seq) never repeats
    b2.close()


def test_only_confirmed_chunks_leave(tmp_path: Path) -> None:
    b = StoreAndForward(tmp_path / "b.sqlite", "gw")
    b.add(samples(10), [StatusEvent("dev", 1, "connected", "ok")])
    b.add(samples(10, 10))
    p1 = b.begin(11)
    assert p1 is not None and len(p1.samples()) == 10 and len(p1.events()) == 1 and p1.n_samples == 10
    p2 = b.begin(100)
    assert p2 is not None and [s.value for s in p2.samples()] == [float(i) for i in range(10, 20)]
    assert b.begin(100) is None  # everything is in flight
    b.give_back(p2)
    b.end(p1)
    assert b.queued_samples == 10
    again = b.begin(100)
    assert again is not None and again.chunk_ids == p2.chunk_ids
    b.close()


def test_drop_oldest_when_full_is_counted_and_persisted(tmp_path: Path) -> None:
    b = StoreAndForward(tmp_path / "b.sqlite", "gw", max_bytes=400_000)
    for i in range(100):
        b.add(samples(200, i * 200))
    assert b.footprint() <= 400_000  # pages in use, the write-ahead log and the reserve
    assert b.dropped_samples > 0
    kept = b.begin(100_000, 10**9)
    assert kept is not None
    assert kept.samples()[-1].value == 19999.0  # the newest survived
    assert len(kept.samples()) + b.dropped_samples == 20000  # nothing vanished without being counted
    gaps = kept.gaps()  # and every drop is a gap record for the centre, with its range and count
    assert gaps and all(g.reason == "buffer_full" and g.device_id == "dev" for g in gaps)
    assert sum(g.count for g in gaps) == b.dropped_samples
    assert min(g.from_us for g in gaps) == 1_700_000_000_000_000
    dropped = b.dropped_samples
    b.close()
    assert StoreAndForward(tmp_path / "b.sqlite", "gw").dropped_samples == dropped


def test_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from edge.buffer import StoreAndForward
        from core.record import Sample
        b = StoreAndForward({str(path)!r}, "gw")
        for i in range(100):
            b.add([Sample("dev", "t", 1_700_000_000_000_000 + i, float(i))])
        print("added", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == -signal.SIGKILL and "added" in r.stdout
    b = StoreAndForward(path, "gw")
    p = b.begin(1000)
    assert p is not None and [s.value for s in p.samples()] == [float(i) for i in range(100)]
    assert os.path.exists(path)
    b.close()


def test_status_events_and_gap_records_survive_a_drop_of_their_chunk(tmp_path: Path) -> None:
    from core.record import Gap

    b = StoreAndForward(tmp_path / "b.sqlite", "gw", max_bytes=400_000)
    b.add(samples(200), [StatusEvent("dev", 5, "disconnected", "cable")], [Gap("dev", 1, 2, 7, "memory_full")])
    for i in range(1, 100):
        b.add(samples(200, i * 200))
    assert b.dropped_samples > 0
    kept = b.begin(100_000, 10**9)
    assert kept is not None
    assert [(e.state, e.reason) for e in kept.events()] == [("disconnected", "cable")]
    assert ("memory_full", 7) in [(g.reason, g.count) for g in kept.gaps()]
    b.close()
