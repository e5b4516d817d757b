"""Full KPI backfill on one-second data: where the time goes (database, kernels, Python glue) vs a plain scan.

The target workload is one year of one-second data for 50 machines (50 x 31.5M = 1.6 billion rows) on 2 cores.
That does not fit here, so the default is a scaled run (2 days, 50 machines: 8.6M rows, about 2.5 minutes on
2 cores including the load; `--days 7` = 30M rows takes about 7 minutes); the job works per machine and local
day, so its time grows linearly in machine-days and the year is extrapolated as time x 365 / days (printed). Every machine delivers one sample per second: its state every 2 s, its parts
counter and its energy meter every 4 s (a Modbus PLC polled each second, one tag group per poll).

Steps: create a fresh database on --admin-url, migrate, load the rows by binary COPY (built with NumPy; the
unique key is rebuilt after the load, as for a historian import), run kpi.job.backfill over the whole range,
then the reference scan `SELECT count(*), sum(value) FROM samples` over the same rows, drop the database.

    python benchmarks/kpi/bench_backfill.py [--days 2] [--machines 50] [--keep]
"""

from __future__ import annotations

import argparse
import struct
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg

from core.config import parse_config
from core.plant import PlantConfig

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00Z: PostgreSQL's binary timestamp origin
START = datetime(2024, 1, 1, tzinfo=UTC) - timedelta(hours=8)  # local (Asia/Shanghai) midnight
STATE_CODES = np.array([1, 2, 3, 4, 5])  # running, idle, down, setup, planned_stop
STATE_P = np.array([0.55, 0.2, 0.1, 0.1, 0.05])
STATE_MEAN_S = np.array([600.0, 90.0, 180.0, 300.0, 900.0])


def plant(machines: int) -> PlantConfig:
    ms = ",\n".join(
        f'      {{id: m{i:03d}, kind: machine, device: d{i:03d}, ideal_cycle_time_s: 4.0, signals: {{state: {{tag: '
        f'status, map: {{1: running, 2: idle, 3: down, 4: setup, 5: planned_stop}}}}, total_count: {{tag: parts}}, '
        f'energy_kwh: {{tag: energy}}}}}}' for i in range(machines))
    ds = ",\n".join(f'  {{id: d{i:03d}, protocol: modbus, endpoint: "tcp://127.0.0.1:502", unit_id: {i % 250}, '
                    f'tags: [{{name: status, address: 40001}}, {{name: parts, address: 40002, type: uint32}}, '
                    f'{{name: energy, address: 40004, type: float32}}]}}' for i in range(machines))
    return parse_config(f"""
plant: {{id: bench, timezone: Asia/Shanghai, emission_factor_kg_per_kwh: 0.5366}}
shifts: [{{name: a, start: "06:00", end: "14:00"}}, {{name: b, start: "14:00", end: "22:00"}},
         {{name: c, start: "22:00", end: "06:00"}}]
kpi: {{calendar: shifts}}
assets:
  - id: line-1
    kind: line
    children: [
{ms}]
devices: [
{ds}]
""")


def machine_series(rng: np.random.Generator, seconds: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Seconds since START -> (ts us, value) per tag: state every 2 s, parts and energy every 4 s (offset 1, 3)."""
    n_runs = int(seconds / STATE_MEAN_S.min()) + 10
    states = rng.choice(5, size=n_runs, p=STATE_P)
    lengths = np.maximum(1, rng.exponential(STATE_MEAN_S[states])).astype(np.int64)
    ends = np.cumsum(lengths)
    sec = np.arange(seconds, dtype=np.int64)
    state_at = states[np.minimum(np.searchsorted(ends, sec, side="right"), n_runs - 1)]
    running = state_at == 0
    parts = np.cumsum(running & (rng.random(seconds) < 0.25)).astype(np.float64)
    power = np.array([11.0, 2.5, 0.8, 3.0, 0.5])[state_at]
    energy = np.cumsum(power) / 3600.0
    us = sec * 1_000_000
    return {"status": (us[0::2], STATE_CODES[state_at[0::2]].astype(np.float64)),
            "parts": (us[1::4], parts[1::4]), "energy": (us[3::4], energy[3::4])}


def copy_block(device: str, tag: str, ts_us: np.ndarray, values: np.ndarray) -> bytes:
    """PGCOPY binary tuples (ts, device_id, tag, value) for one device and tag, built without a Python loop."""
    dev, tg = device.encode(), tag.encode()
    dt = np.dtype([("nf", ">i2"), ("l1", ">i4"), ("ts", ">i8"), ("l2", ">i4"), ("dev", f"S{len(dev)}"),
                   ("l3", ">i4"), ("tag", f"S{len(tg)}"), ("l4", ">i4"), ("val", ">f8")])
    a = np.empty(ts_us.shape[0], dtype=dt)
    a["nf"], a["l1"], a["l2"], a["l3"], a["l4"] = 4, 8, len(dev), len(tg), 8
    a["ts"] = ts_us + (START.timestamp() * 1e6 - PG_EPOCH_US)
    a["dev"], a["tag"], a["val"] = dev, tg, values
    return a.tobytes()


def _copy(url: str, machines: range, days: int) -> int:
    rng = np.random.default_rng(7 + machines.start)
    rows = 0
    with psycopg.connect(url) as c, c.cursor() as cur, \
            cur.copy("COPY samples (ts, device_id, tag, value) FROM STDIN (FORMAT binary)") as cp:
        cp.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
        for i in machines:
            for tag, (ts, v) in machine_series(rng, days * 86400).items():
                cp.write(copy_block(f"d{i:03d}", tag, ts, v))
                rows += ts.shape[0]
        cp.write(struct.pack(">h", -1))
    return rows


def load(url: str, machines: int, days: int, jobs: int = 2) -> tuple[int, float, float]:
    """Rows loaded, seconds for COPY (one connection per core), seconds to rebuild the unique key."""
    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("ALTER TABLE samples DROP CONSTRAINT samples_device_tag_ts_key")
    parts = [range(k, machines, jobs) for k in range(jobs)]
    with ThreadPoolExecutor(jobs) as pool:
        rows = sum(pool.map(lambda r: _copy(url, r, days), parts))
    t1 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("SET maintenance_work_mem = '512MB'")
        c.execute("ALTER TABLE samples ADD CONSTRAINT samples_device_tag_ts_key UNIQUE (device_id, tag, ts)")
        c.execute("VACUUM ANALYZE samples")
    return rows, t1 - t0, time.perf_counter() - t1


def scan(url: str) -> tuple[float, Any]:
    t0 = time.perf_counter()
    with psycopg.connect(url) as c:
        row = c.execute("SELECT count(*), sum(value) FROM samples").fetchone()
    return time.perf_counter() - t0, row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--machines", type=int, default=50)
    ap.add_argument("--admin-url", default=ADMIN)
    ap.add_argument("--keep", action="store_true", help="keep the database (its URL is printed)")
    args = ap.parse_args()
    from collector.db import migrate
    from kpi.job import backfill
    from shopfloor.stages import schema_dirs

    name = f"sf_bench_kpi_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = args.admin_url.rsplit("/", 1)[0] + "/" + name
    try:
        migrate(url, log=lambda _: None, schema_dirs=schema_dirs())
        cfg = plant(args.machines)
        rows, t_copy, t_index = load(url, args.machines, args.days)
        print(f"loaded {rows:,} rows ({args.machines} machines x {args.days} days, 1 row/s each): "
              f"COPY {t_copy:.1f} s ({rows / t_copy / 1e6:.2f} M rows/s), unique key {t_index:.1f} s")
        end = START + timedelta(days=args.days)
        t0 = time.perf_counter()
        report = backfill(url, cfg, START, end)
        total = time.perf_counter() - t0
        scan_s, (n, _) = scan(url)
        assert n == rows
        tm = report.timings
        db = tm.get("read", 0) + tm.get("write", 0) + tm.get("rollup", 0)
        kern = tm.get("kernels", 0)
        print(f"backfill: {total:.1f} s, {report.chunks} chunks, {report.rows_written:,} kpi rows, "
              f"{rows / total / 1e6:.2f} M samples/s")
        for phase in ("read", "write", "rollup", "kernels", "glue"):
            print(f"  {phase:8s} {tm.get(phase, 0):7.2f} s  {tm.get(phase, 0) / total:6.1%}")
        other = total - sum(tm.values())
        print(f"  {'other':8s} {other:7.2f} s  {other / total:6.1%}  (connect, claim, bucket setup)")
        print(f"  database (read + write + rollup) {db / total:.1%}, kernels {kern / total:.1%}, "
              f"Python glue {(total - db - kern) / total:.1%}")
        print(f"reference scan SELECT count(*), sum(value): {scan_s:.2f} s -> backfill / scan = {total / scan_s:.1f}")
        year = total * 365 / args.days * 50 / args.machines
        print(f"extrapolated: one year x 50 machines ({50 * 365 * 86400 / 1e9:.2f} G rows) ~ {year / 60:.0f} min "
              f"(linear in machine-days, one worker)")
    finally:
        if args.keep:
            print(f"kept {url}")
        else:
            with psycopg.connect(args.admin_url, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
