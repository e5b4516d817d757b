"""Soak harness: the real processes (mosquitto, `shopfloor edge`, `shopfloor collector`), a numbered publisher
standing in for a machine, a monitor for memory and buffer peaks, and the checker that counts what arrived."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

DEVICE = "soak-src"
TAG = "n"
DEEP = b'{"n":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
HUGE_INT = b'{"n": 1' + b"0" * 400 + b', "ts": 0}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float = 10) -> None:
    end = time.time() + timeout_s
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


class Proc:
    """One process of the pipeline, restartable, with its output appended to a log file."""

    def __init__(self, name: str, cmd: list[str], log: Path) -> None:
        self.name, self.cmd, self.log = name, cmd, log
        self.p: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115 - handed to the child
        self.p = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        self.starts += 1

    def kill9(self) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait(10)

    def stop(self) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9()

    @property
    def pid(self) -> int | None:
        return self.p.pid if self.p is not None and self.p.poll() is None else None

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def wait_log(self, text: str, after: int, timeout_s: float) -> bool:
        """True once `text` appears in the log past byte offset `after`."""
        end = time.time() + timeout_s
        while time.time() < end:
            with open(self.log, "rb") as f:
                f.seek(after)
                if text.encode() in f.read():
                    return True
            time.sleep(0.1)
        return False


def mosquitto(port: int, work: Path) -> Proc:
    conf = work / f"mosquitto-{port}.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n"
                    "max_inflight_messages 0\npersistence false\n")
    return Proc(f"mosquitto:{port}", ["mosquitto", "-c", str(conf)], work / f"mosquitto-{port}.log")


@dataclass
class Publisher:
    """A machine publishing a numbered sample `{"n": k, "ts": us}` every 1/rate s; the truth of what was offered."""

    port: int
    rate_hz: float
    topic: str = "soak/src"
    sent: list[tuple[int, int]] = field(default_factory=list)  # (n, ts_us)
    hostile_sent: int = 0

    def __post_init__(self) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        n, last_ts, period = 0, 0, 1.0 / self.rate_hz
        nxt = time.monotonic()
        while not self._stop.is_set():
            n += 1
            ts = max(time.time_ns() // 1000, last_ts + 1)
            last_ts = ts
            self.client.publish(self.topic, json.dumps({"n": n, "ts": ts}), qos=1)
            self.sent.append((n, ts))
            nxt += period
            time.sleep(max(nxt - time.monotonic(), 0))

    def hostile(self) -> None:
        for payload in (DEEP, HUGE_INT, b"\xff\xfe not json"):
            self.client.publish(self.topic, payload, qos=1)
            self.hostile_sent += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()


def proc_memory_kb(pid: int | None) -> int:
    """Peak resident set (VmHWM) of a live process, in KiB; 0 when it is gone."""
    if pid is None:
        return 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Monitor:
    """Every 0.5 s: peak memory of edge and collector, buffer footprint on disk and rows in it."""

    def __init__(self, procs: dict[str, Proc], buffer_path: Path) -> None:
        self.procs, self.buffer_path = procs, buffer_path
        self.peak_kb: dict[str, int] = dict.fromkeys(procs, 0)
        self.buffer_peak_bytes = 0
        self.buffer_peak_rows = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _rows(self) -> int:
        try:
            db = sqlite3.connect(f"file:{self.buffer_path}?mode=ro", uri=True, timeout=0.2)
            try:
                return int(db.execute("SELECT COALESCE(SUM(n_samples), 0) FROM chunk").fetchone()[0])
            finally:
                db.close()
        except sqlite3.Error:
            return 0

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for name, p in self.procs.items():
                self.peak_kb[name] = max(self.peak_kb[name], proc_memory_kb(p.pid))
            size = 0
            for suffix in ("", "-wal", ".reserve"):
                try:
                    size += os.path.getsize(str(self.buffer_path) + suffix)
                except OSError:
                    pass
            self.buffer_peak_bytes = max(self.buffer_peak_bytes, size)
            self.buffer_peak_rows = max(self.buffer_peak_rows, self._rows())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def lag_s(db_url: str) -> float | None:
    """Seconds between now and the newest stored good sample of the source (None before the first)."""
    try:
        with psycopg.connect(db_url, connect_timeout=3) as conn:
            row = conn.execute("SELECT extract(epoch FROM now() - max(ts)) FROM samples WHERE device_id = %s "
                               "AND quality = 'good'", (DEVICE,)).fetchone()
    except psycopg.Error:
        return None
    return float(row[0]) if row and row[0] is not None else None


def count(db_url: str, sent: list[tuple[int, int]], excluded: list[tuple[float, float]]) -> dict[str, Any]:
    """The figures: offered, stored, duplicated, dropped with a record, lost beyond that, quarantine by reason."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT value FROM samples WHERE device_id = %s AND tag = %s AND quality = 'good'",
                            (DEVICE, TAG)).fetchall()
        gaps = conn.execute("SELECT from_ts, to_ts, dropped, reason FROM edge_gaps WHERE device_id = %s",
                            (DEVICE,)).fetchall()
        bad = conn.execute("SELECT left(value_text, 60), count(*) FROM samples WHERE device_id = %s AND "
                           "quality = 'bad' GROUP BY 1 ORDER BY 2 DESC", (DEVICE,)).fetchall()
        quarantine = conn.execute("SELECT left(reason, 60), count(*) FROM quarantine GROUP BY 1 ORDER BY 2 DESC"
                                  ).fetchall()
    stored = [int(r[0]) for r in rows]
    have = set(stored)
    gap_ranges = [(g[0].timestamp() * 1e6, g[1].timestamp() * 1e6) for g in gaps]
    dropped_counted = sum(int(g[2]) for g in gaps)
    missing = [(n, ts) for n, ts in sent if n not in have]
    in_gaps = [m for m in missing if any(lo <= m[1] <= hi for lo, hi in gap_ranges)]
    in_kill = [m for m in missing if m not in in_gaps and any(a * 1e6 <= m[1] <= b * 1e6 for a, b in excluded)]
    explained = min(len(in_gaps), dropped_counted)
    return {
        "offered": len(sent), "stored": len(have), "duplicated": len(stored) - len(have),
        "dropped_counted": dropped_counted, "dropped_by_reason": _by_reason(gaps),
        "missing": len(missing), "missing_inside_gaps": len(in_gaps),
        "unread_while_edge_killed": len(in_kill),
        "lost": len(missing) - explained - len(in_kill),
        "bad_samples_at_edge": {str(k): int(v) for k, v in bad},
        "quarantined": {str(k): int(v) for k, v in quarantine},
    }


def _by_reason(gaps: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for g in gaps:
        out[str(g[3])] = out.get(str(g[3]), 0) + int(g[2])
    return out
