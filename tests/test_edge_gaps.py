"""Buffer drops reach the centre: a gateway's gap records (device, time range, count, reason) travel in the
uplink batch, land in `edge_gaps` once however often they are re-sent, and show in `collector status` and
the networking-rate report, so a certifier sees the gap instead of a silent hole."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from collector.ingest import BatchProcessor, IngestStats
from collector.writer import SampleWriter
from core.config import parse_config
from core.record import Sample
from edge.buffer import StoreAndForward
from edge.uplink import Outgoing
from kpi.networking import format_status, networking_rate

T0 = 1_700_000_000_000_000
PLANT = """
plant: {id: plant-1}
assets:
  - {id: m1, kind: machine, device: d1}
  - {id: m2, kind: machine, device: d2}
devices:
  - {id: d1, protocol: modbus, endpoint: "tcp://127.0.0.1:5020", tags: [{name: t, address: 40001}]}
  - {id: d2, protocol: modbus, endpoint: "tcp://127.0.0.1:5020", tags: [{name: t, address: 40001}]}
"""


def overflowed_buffer(path: Path) -> StoreAndForward:
    """A real buffer that went over its budget while the uplink was down: it dropped its oldest d1 samples."""
    b = StoreAndForward(path, "gw-7", max_bytes=400_000)
    for i in range(60):
        b.add([Sample("d1", "t", T0 + (i * 200 + j) * 1_000_000, float(j)) for j in range(200)])
    assert b.dropped_samples > 0
    return b


def test_gap_records_are_stored_once_and_listed_for_the_machine(db: str, tmp_path: Path) -> None:
    b = overflowed_buffer(tmp_path / "b.sqlite")
    payloads = []
    while (p := b.begin(100_000, 10**9)) is not None:
        payloads.append(Outgoing("gw-7", len(payloads) + 1, p).payload())
        b.end(p)
    proc = BatchProcessor(SampleWriter(db), IngestStats())
    for payload in payloads + payloads:  # every batch delivered twice (at-least-once)
        proc.process([("shopfloor/v1/gw-7/samples", payload)])
    proc.writer.close()
    with psycopg.connect(db) as conn:
        rows = conn.execute("SELECT device_id, gateway_id, dropped, reason, from_ts, to_ts FROM edge_gaps").fetchall()
        stored = conn.execute("SELECT count(*) FROM samples").fetchone()[0]  # type: ignore[index]
        cfg = parse_config(PLANT, "plant.yaml")
        start = datetime.fromtimestamp(T0 / 1e6, UTC)
        rate = networking_rate(conn, cfg, None, start, start + timedelta(hours=5))
    assert sum(r[2] for r in rows) == b.dropped_samples and stored + b.dropped_samples == 12_000
    assert {(r[0], r[1], r[3]) for r in rows} == {("d1", "gw-7", "buffer_full")}
    assert min(r[4] for r in rows) == start  # the oldest samples went first
    assert [g.machine_id for g in rate.gaps] == ["m1"] * len(rows)
    text = format_status(rate)
    assert f"samples dropped at the edge (gateway buffer policy): {b.dropped_samples}" in text
    assert "m1  d1  2023-11-14 22:13:20.." in text and "buffer_full  (gateway gw-7)" in text
    b.close()


def test_collector_status_shows_the_gaps(db: str, tmp_path: Path) -> None:
    b = overflowed_buffer(tmp_path / "b.sqlite")
    proc = BatchProcessor(SampleWriter(db), IngestStats())
    while (p := b.begin(100_000, 10**9)) is not None:
        proc.process([("shopfloor/v1/gw-7/samples", Outgoing("gw-7", 1, p).payload())])
        b.end(p)
    proc.writer.close()
    plant = tmp_path / "plant.yaml"
    plant.write_text(PLANT)
    start = datetime.fromtimestamp(T0 / 1e6, UTC)
    r = subprocess.run([sys.executable, "-m", "shopfloor.cli", "collector", "status", "--config", str(plant),
                        "--database-url", db, "--from", start.isoformat(),
                        "--to", (start + timedelta(hours=5)).isoformat()], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"samples dropped at the edge (gateway buffer policy): {b.dropped_samples}" in r.stdout
    b.close()
