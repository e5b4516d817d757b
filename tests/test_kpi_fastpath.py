"""The fast backfill path (one query per machine-day, worker processes) stores exactly, to the last bit, the rows
of the plain path (one query per signal and bucket set), on data with the awkward parts: bad and NULL samples,
disconnects, a device silent on its signal tags while another tag reports, a text-mapped state, counter resets,
micro-stops and reduced speed (both read beyond the chunk's ends)."""

from __future__ import annotations

import struct
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pytest

from core.config import parse_config
from kpi.job import backfill

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")
DAY = datetime(2024, 3, 4, tzinfo=TZ)
CONFIG = """
plant: {id: p, timezone: Asia/Shanghai, emission_factor_kg_per_kwh: 0.5}
shifts: [{name: a, start: "08:00", end: "20:00"}, {name: n, start: "20:00", end: "08:00"}]
kpi: {calendar: shifts, micro_stop_s: 90, reduced_speed_ratio: 0.5}
assets:
  - id: line
    kind: line
    children:
      - {id: m1, kind: machine, ideal_cycle_time_s: 20, device: d1, signals: {
          state: {tag: status, map: {1: running, 2: idle, 3: down}}, total_count: {tag: parts},
          energy_kwh: {tag: energy}}}
      - {id: m2, kind: machine, ideal_cycle_time_s: 20, device: d2, signals: {
          state: {tag: status, map: {1: running, 3: down, 5: planned_stop}}, good_count: {tag: good},
          scrap_count: {tag: scrap}, power_kw: {tag: power}}}
      - {id: m3, kind: machine, device: d3, signals: {state: {tag: mode, map: {RUN: running, STOP: down}}}}
devices:
  - {id: d1, protocol: modbus, endpoint: "tcp://127.0.0.1:5020", poll_interval_s: 10, tags: [
      {name: status, address: 40001}, {name: parts, address: 40002, type: uint32}, {name: energy, address: 40004},
      {name: temp, address: 40006}]}
  - {id: d2, protocol: opcua, endpoint: "opc.tcp://127.0.0.1:4840", security: {policy: None}, tags: [
      {name: status, node: "ns=2;s=S"}, {name: good, node: "ns=2;s=G"}, {name: scrap, node: "ns=2;s=X"},
      {name: power, node: "ns=2;s=P"}, {name: heartbeat, node: "ns=2;s=H"}]}
  - {id: d3, protocol: opcua, endpoint: "opc.tcp://127.0.0.1:4841", security: {policy: None}, tags: [{name: mode, node: "ns=2;s=M"}]}
"""


def samples(days: int) -> list[tuple[Any, ...]]:
    """(device, tag, ts, value, value_text, quality): 10 s polling with noise, bad and NULL samples, resets."""
    rng = np.random.default_rng(18)
    out: list[tuple[Any, ...]] = []
    n = days * 8640
    t0 = DAY - timedelta(hours=3)
    ts = [t0 + timedelta(seconds=10 * i + int(j)) for i, j in enumerate(rng.integers(0, 3, n + 1080))]
    state = rng.choice([1, 1, 1, 2, 3], size=len(ts))
    parts = np.cumsum(rng.integers(0, 2, len(ts))).astype(float)
    parts[len(ts) // 2:] -= parts[len(ts) // 2]  # a PLC restart: the counter resets
    for i, t in enumerate(ts):
        q = "bad" if i % 997 == 0 else "good"
        out += [("d1", "status", t, float(state[i]), None, q), ("d1", "parts", t, parts[i], None, "good"),
                ("d1", "energy", t, i * 0.01, None, "uncertain" if i % 501 == 0 else "good"),
                ("d1", "temp", t, 20.0, None, "good")]
        silent = 3000 < i < 3600  # d2's signal tags stop; its heartbeat goes on (still networked)
        if not silent:
            out += [("d2", "status", t, float([1, 3, 5][i // 40 % 3]), None, "good"),
                    ("d2", "good", t, float(i // 3), None, "good"), ("d2", "scrap", t, float(i // 50), None, "good"),
                    ("d2", "power", t, None if i % 333 == 0 else 4.0 + i % 7, None, "good")]
        out.append(("d2", "heartbeat", t, 1.0, None, "good"))
        if i % 6 == 0:
            out.append(("d3", "mode", t, None, "RUN" if i % 24 else "STOP", "good"))
    return out


def load(url: str, days: int) -> None:
    with psycopg.connect(url) as c, c.cursor() as cur:
        with cur.copy("COPY samples (device_id, tag, ts, value, value_text, quality) FROM STDIN") as cp:
            for r in samples(days):
                cp.write_row(r)
        cur.executemany("INSERT INTO device_status (device_id, ts, state, reason) VALUES (%s, %s, %s, %s)",
                        [("d1", DAY + timedelta(hours=9), "disconnected", "timeout"),
                         ("d1", DAY + timedelta(hours=9, minutes=20), "connected", "")])


SNAPSHOT = """SELECT asset_id, kpi, bucket, bucket_start, shift_key, value, null_reason, unit, shift_name,
  definition_version, code_version, input_rows, coverage, bucket_end, is_final, provenance::text, bucket_date,
  quality_flags FROM kpi_values ORDER BY asset_id, kpi, bucket, bucket_start, shift_key"""


def snapshot(url: str) -> list[tuple[Any, ...]]:
    """Every stored KPI row, floats as their IEEE bits (so NaN, -0.0 and the last bit compare exactly)."""
    with psycopg.connect(url) as c:
        rows = c.execute(SNAPSHOT).fetchall()
    return [tuple(struct.pack("<d", v) if isinstance(v, float) else v for v in r) for r in rows]


def test_fast_path_and_workers_store_the_plain_paths_rows_to_the_last_bit(db: str) -> None:
    cfg = parse_config(CONFIG)
    load(db, 2)
    start, end = DAY, DAY + timedelta(days=2)
    plain = backfill(db, cfg, start, end, plain=True)
    assert not plain.failures and plain.rows_written > 0
    expected = snapshot(db)
    assert {r[0] for r in expected} == {"m1", "m2", "m3", "line", "p"}
    with psycopg.connect(db) as c:  # 06:00-07:00: d2's signal tags are silent, its heartbeat kept it networked
        networked = c.execute("SELECT kpi, value FROM kpi_values WHERE asset_id = 'm2' AND bucket = 'hour' AND "
                              "bucket_start = %s AND kpi IN ('networked_machines', 'coverage')",
                              (DAY + timedelta(hours=6),)).fetchall()
    assert dict(networked).get("networked_machines") == 1.0

    fast = backfill(db, cfg, start, end)
    assert not fast.failures and fast.revisions == 0 and fast.chunks == plain.chunks
    assert snapshot(db) == expected

    with psycopg.connect(db, autocommit=True) as c:
        c.execute("DELETE FROM kpi_values")
    two = backfill(db, cfg, start, end, workers=2)
    assert not two.failures and two.chunks == plain.chunks  # every machine-day once, no more
    assert snapshot(db) == expected
    with psycopg.connect(db) as c:
        left = c.execute("SELECT count(*) FROM kpi_work").fetchone()
    assert left == (0,)
