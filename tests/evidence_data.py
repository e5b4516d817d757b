"""A small plant with known synthetic history loaded straight into the database (for the evidence tests)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

PLANT = """
plant: {id: ev-plant, name: Evidence test plant, timezone: Asia/Shanghai, emission_factor_kg_per_kwh: 0.5617}
shifts: [{name: day, start: "08:00", end: "20:00"}]
kpi: {calendar: always, micro_stop_s: 120}
assets:
  - id: line-1
    kind: line
    children:
%(machines)s
      - {id: manual-1, kind: machine, ideal_cycle_time_s: 5.0}
devices:
%(devices)s
"""
MACHINE = """      - id: m%(i)d
        kind: machine
        ideal_cycle_time_s: 20.0
        device: d%(i)d
        signals:
          state: {tag: status, map: {1: running, 2: idle, 3: down, 4: setup, 5: planned_stop}}
          total_count: {tag: parts_total}
          scrap_count: {tag: parts_scrap}
          energy_kwh: {tag: energy_total}
"""
DEVICE = """  - {id: d%(i)d, protocol: modbus, endpoint: "tcp://127.0.0.1:50%(i)02d", poll_interval_s: 60, tags: [
      {name: status, address: 40001}, {name: parts_total, address: 40002, type: uint32},
      {name: parts_scrap, address: 40004}, {name: energy_total, address: 40005, type: float32}]}
"""
TZ = ZoneInfo("Asia/Shanghai")


def plant_yaml(n: int) -> str:
    return PLANT % {"machines": "".join(MACHINE % {"i": i} for i in range(1, n + 1)),
                    "devices": "".join(DEVICE % {"i": i} for i in range(1, n + 1))}


def day0(days_ago: int = 12) -> datetime:
    """Local midnight `days_ago` days before today (Asia/Shanghai)."""
    today = datetime.now(TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago)


def machine_rows(device: str, start: datetime, end: datetime, seed: int, step_s: int = 60) -> list[tuple[Any, ...]]:
    """Minute samples of one machine: a random state walk, counters and an energy meter that follow it."""
    rnd = random.Random(seed)
    rows: list[tuple[Any, ...]] = []
    t, state, total, scrap, energy = start, 1, 1000, 10, 500.0
    change = t
    while t < end:
        if t >= change:
            state = rnd.choices([1, 2, 3, 4, 5], [70, 10, 10, 5, 5])[0]
            change = t + timedelta(minutes=rnd.randint(3, 40))
        if state == 1:
            made = rnd.randint(2, 3)
            total += made
            scrap += 1 if rnd.random() < 0.05 else 0
        energy += {1: 0.35, 2: 0.1, 3: 0.05, 4: 0.2, 5: 0.02}[state] * step_s / 60
        ts = t.astimezone(UTC) + timedelta(microseconds=rnd.randint(0, 999_999))
        rows += [(ts, device, "status", float(state)), (ts, device, "parts_total", float(total)),
                 (ts, device, "parts_scrap", float(scrap)), (ts, device, "energy_total", round(energy, 3))]
        t += timedelta(seconds=step_s)
    return rows


def load(url: str, n: int, start: datetime, end: datetime, step_s: int = 60) -> int:
    """Samples and a connectivity log for n devices; seals the ledger. Returns rows written."""
    from collector.ledger import seal_hours

    written = 0
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(1, n + 1):
            rows = machine_rows(f"d{i}", start, end, seed=i, step_s=step_s)
            with conn.cursor() as cur, cur.copy("COPY samples (ts, device_id, tag, value) FROM STDIN") as cp:
                for r in rows:
                    cp.write_row(r)
            written += len(rows)
            conn.execute("INSERT INTO device_status (ts, device_id, state, reason) VALUES (%s, %s, 'connected', '')",
                         (start, f"d{i}"))
        seal_hours(conn, datetime.now(UTC))
    return written


def write_plant(tmp: Path, n: int) -> Path:
    p = tmp / "plant.yaml"
    p.write_text(plant_yaml(n), encoding="utf-8")
    return p
