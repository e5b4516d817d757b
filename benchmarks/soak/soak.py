"""Soak run: the whole pipeline under random faults for N minutes, then the figures a certifier can check.

    .venv/bin/python benchmarks/soak/soak.py [--minutes 30] [--rate 100] [--seed 1] [--json out.json]

Real processes on loopback: a device broker with a numbered publisher (the machine, and the truth of what was
offered), `shopfloor edge` (MQTT device, disk buffer on its own small tmpfs when run as root), a TCP proxy,
the uplink mosquitto, `shopfloor collector`, and a throw-away PostgreSQL database. Faults, one at a time,
in a seeded random order that goes through every kind before repeating: proxy cut, kill -9 of the edge, of the
collector and of the uplink broker, hostile payloads on the device topic and on the uplink, disk full under
the edge buffer. After each fault clears, the recovery time is how long until the newest stored sample is
less than 2 s old again.

Figures (JSON and a summary): offered, stored, duplicated (numbers stored more than once; must be 0), dropped
with a gap record (by reason), lost beyond that (must be 0), numbers published while the edge was killed
(the device session is not persistent: reported apart, not counted as stored or lost), bad samples at the
edge and quarantined payloads by reason, recovery time per fault, buffer peak (rows, bytes on disk), peak
memory of edge and collector.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchdb import create_db, drop_db  # noqa: E402
from harness import (  # noqa: E402
    DEVICE,
    Monitor,
    Proc,
    Publisher,
    count,
    free_port,
    lag_s,
    mosquitto,
    wait_port,
)

from tests.proxy import TcpProxy  # noqa: E402

BIN = Path(sys.executable).parent
FAULTS = ("proxy_cut", "kill_edge", "kill_collector", "kill_broker", "hostile", "disk_full")
GATEWAY = "soak-gw"


def plant(work: Path, device_port: int, buffer: Path) -> Path:
    doc = {"plant": {"id": "soak"},
           "assets": [{"id": "m1", "kind": "machine", "device": DEVICE}],
           "devices": [{"id": DEVICE, "protocol": "mqtt", "endpoint": f"mqtt://127.0.0.1:{device_port}",
                        "tags": [{"name": "n", "topic": "soak/src", "json_path": "$.n", "timestamp_path": "$.ts"}]}],
           "edge": {"gateway_id": GATEWAY, "buffer_path": str(buffer), "buffer_max_mb": 4,
                    "memory_queue_max_mb": 0.1, "batch_max_delay_s": 0.2}}
    path = work / "plant.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class Soak:
    def __init__(self, args: argparse.Namespace, work: Path, db_url: str) -> None:
        self.args, self.work, self.db_url = args, work, db_url
        self.rng = random.Random(args.seed)
        self.disk: Path | None = None
        if os.geteuid() == 0:
            self.disk = work / "disk"
            self.disk.mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(self.disk)], check=True)
        buffer = (self.disk or work) / "buffer.sqlite"
        self.device_port, self.uplink_port = free_port(), free_port()
        self.device_broker = mosquitto(self.device_port, work)
        self.broker = mosquitto(self.uplink_port, work)
        for b in (self.device_broker, self.broker):
            b.start()
        wait_port(self.device_port)
        wait_port(self.uplink_port)
        self.proxy = TcpProxy("127.0.0.1", self.uplink_port)
        cfg = plant(work, self.device_port, buffer)
        shopfloor = str(BIN / "shopfloor")
        self.edge = Proc("edge", [shopfloor, "edge", "--config", str(cfg), "--broker-url",
                                  f"mqtt://127.0.0.1:{self.proxy.port}"], work / "edge.log")
        self.collector = Proc("collector", [shopfloor, "collector", "--config", str(cfg), "--database-url", db_url,
                                            "--broker-url", f"mqtt://127.0.0.1:{self.uplink_port}"],
                              work / "collector.log")
        self.publisher = Publisher(self.device_port, args.rate)
        self.monitor = Monitor({"edge": self.edge, "collector": self.collector}, buffer)
        self.faults: list[dict[str, Any]] = []
        self.edge_down: list[tuple[float, float]] = []

    def start(self) -> None:
        self.collector.start()
        mark = self.edge.log_size()
        self.edge.start()
        if not self.edge.wait_log("mqtt connected device=", mark, 30):
            raise RuntimeError(f"the edge did not connect to its device; see {self.edge.log}")
        self.publisher.start()

    # ------------------------------------------------------------------ faults
    def fault(self, kind: str) -> None:
        t0 = time.time()
        hold = self.rng.uniform(2, self.args.max_fault_s)
        if kind == "proxy_cut":
            self.proxy.cut()
            time.sleep(hold)
            self.proxy.restore()
        elif kind == "kill_edge":
            self.edge.kill9()
            time.sleep(hold)
            mark = self.edge.log_size()
            self.edge.start()
            self.edge.wait_log("mqtt connected device=", mark, 30)
            # what the edge had read but not yet written (one flush interval) and what was published meanwhile
            self.edge_down.append((t0 - 1.0, time.time()))
        elif kind == "kill_collector":
            self.collector.kill9()
            time.sleep(hold)
            self.collector.start()
        elif kind == "kill_broker":
            self.broker.kill9()
            time.sleep(hold)
            self.broker.start()
        elif kind == "hostile":
            self.publisher.hostile()
            self._hostile_uplink()
            hold = 0.0
        elif kind == "disk_full":
            if self.disk is None:
                return
            # with the uplink down too, so the buffer uses up its own free pages and the disk refuses it
            self.proxy.cut()
            mark = self.edge.log_size()
            filler = self.disk / "filler"
            subprocess.run(["fallocate", "-l", "64m", str(filler)], check=False, capture_output=True)
            with open(filler, "ab", buffering=0) as f:  # whatever fallocate left
                try:
                    while True:
                        f.write(b"\0" * 65536)
                except OSError:
                    pass
            # until the memory queue overflows: the policy's counted drops are part of what is checked
            self.edge.wait_log("event=memory_queue_full", mark, 90)
            time.sleep(hold)
            filler.unlink()
            self.proxy.restore()
            hold = time.time() - t0
        cleared = time.time()
        self.faults.append({"fault": kind, "at_s": round(t0 - self.t_start, 1), "held_s": round(hold, 1),
                            "recovery_s": self._recovery(cleared)})
        print(f"  {self.faults[-1]}", flush=True)

    def _hostile_uplink(self) -> None:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        c.connect("127.0.0.1", self.uplink_port)
        c.loop_start()
        bad_row = json.dumps({"v": 1, "gateway_id": "soak-intruder", "batch_id": 1,
                              "samples": [["x", "t", 1, None, None, "weird", 0, None, False, "", 0, 1]]})
        for payload in (b"not json at all", bad_row.encode()):
            c.publish("shopfloor/v1/soak-intruder/samples", payload, qos=1).wait_for_publish(5)
        c.disconnect()
        c.loop_stop()

    def _recovery(self, cleared: float) -> float | None:
        """Seconds from the fault's end until the newest stored sample is under 2 s old again."""
        while time.time() - cleared < 120:
            lag = lag_s(self.db_url)
            if lag is not None and lag < 2.0:
                return round(time.time() - cleared, 2)
            time.sleep(0.25)
        return None

    # ------------------------------------------------------------------ run
    def run(self) -> dict[str, Any]:
        self.t_start = time.time()
        self.start()
        end = self.t_start + self.args.minutes * 60
        order: list[str] = []
        while time.time() < end - self.args.max_fault_s - 10:
            time.sleep(self.rng.uniform(3, self.args.gap_s))
            if not order:
                order = list(FAULTS)
                self.rng.shuffle(order)
            self.fault(order.pop())
        time.sleep(max(end - time.time(), 0))
        self.publisher.stop()
        drained = self._recovery(time.time())
        time.sleep(3)  # the last batches' acknowledgements
        figures = count(self.db_url, self.publisher.sent, self.edge_down)
        self.monitor.stop()
        figures.update({
            "minutes": self.args.minutes, "rate_hz": self.args.rate, "seed": self.args.seed,
            "faults": self.faults, "final_drain_s": drained,
            "recovery_s_max": max((f["recovery_s"] or 0 for f in self.faults), default=0),
            "recovery_failed": sum(1 for f in self.faults if f["recovery_s"] is None),
            "hostile_payloads_sent": self.publisher.hostile_sent,
            "buffer_peak_rows": self.monitor.buffer_peak_rows, "buffer_peak_bytes": self.monitor.buffer_peak_bytes,
            "memory_peak_mib": {k: round(v / 1024, 1) for k, v in self.monitor.peak_kb.items()},
            "disk_full_tested": self.disk is not None,
        })
        return figures

    def close(self) -> None:
        for p in (self.edge, self.collector, self.broker, self.device_broker):
            p.stop()
        self.proxy.close()
        if self.disk is not None:
            subprocess.run(["umount", "-l", str(self.disk)], check=False)


def summary(f: dict[str, Any]) -> str:
    lines = [f"soak {f['minutes']} min at {f['rate_hz']} samples/s, seed {f['seed']}: {len(f['faults'])} faults "
             f"({', '.join(sorted({x['fault'] for x in f['faults']}))})",
             f"  offered {f['offered']}  stored {f['stored']}  duplicated {f['duplicated']}  lost {f['lost']}",
             f"  dropped with a gap record {f['dropped_counted']} {f['dropped_by_reason']}; published while the "
             f"edge was killed {f['unread_while_edge_killed']}",
             f"  recovery max {f['recovery_s_max']} s (failed {f['recovery_failed']}), final drain {f['final_drain_s']} s",
             f"  buffer peak {f['buffer_peak_rows']} rows, {f['buffer_peak_bytes'] / 1048576:.1f} MiB on disk; "
             f"memory peak {f['memory_peak_mib']}",
             f"  bad samples at the edge {f['bad_samples_at_edge']}", f"  quarantined {f['quarantined']}"]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--rate", type=float, default=100, help="samples per second from the numbered publisher")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--gap-s", type=float, default=20, help="longest pause between faults")
    ap.add_argument("--max-fault-s", type=float, default=15, help="longest fault")
    ap.add_argument("--admin-url", default=os.environ.get("SHOPFLOOR_ADMIN_URL",
                                                          "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = ap.parse_args()
    if shutil.which("mosquitto") is None:
        print("error: mosquitto is not installed (apt-get install mosquitto)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="sf-soak-"))
    db_url = create_db(args.admin_url, timescaledb=False, prefix="sf_soak")
    soak = Soak(args, work, db_url)
    try:
        figures = soak.run()
    finally:
        soak.close()
        drop_db(args.admin_url, db_url)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(summary(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0 if figures["lost"] == 0 and figures["duplicated"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
