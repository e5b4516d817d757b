"""Incremental `kpi run` cycle cost early vs late in a day, for the same arrival rate.

One day of one-second data (bench_backfill's workload) is loaded; a cycle is `kpi.job.run_once(until=T)` after
a previous cycle at T - interval, so each cycle has `interval` seconds of new data per machine. The cycle at
01:00 (early) and at 23:00 (late) are timed (best of --repeat) and their ratio printed: a cycle whose cost
is proportional to the new data has a ratio near 1.

    python benchmarks/kpi/bench_incremental.py [--machines 20] [--interval 60] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_backfill import ADMIN, START, load, plant  # noqa: E402


def cycle(url: str, machines: int, at: datetime, interval: int, repeat: int) -> float:
    """Best wall seconds of run_once(until=at) right after run_once(until=at - interval)."""
    from kpi.job import run_once

    cfg = plant(machines)
    best = float("inf")
    for _ in range(repeat):
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("TRUNCATE kpi_values, kpi_value_revisions, kpi_watermarks")
        run_once(url, cfg, until=at - timedelta(seconds=interval))
        t0 = time.perf_counter()
        run_once(url, cfg, until=at)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--machines", type=int, default=20)
    ap.add_argument("--interval", type=int, default=60, help="seconds between cycles (new data per cycle)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--admin-url", default=ADMIN)
    args = ap.parse_args()
    from collector.db import migrate
    from shopfloor.stages import schema_dirs

    name = f"sf_bench_inc_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = args.admin_url.rsplit("/", 1)[0] + "/" + name
    try:
        migrate(url, log=lambda _: None, schema_dirs=schema_dirs())
        rows, _, _ = load(url, args.machines, 1)
        print(f"loaded {rows:,} rows ({args.machines} machines x 1 day, 1 row/s each)")
        early = cycle(url, args.machines, START + timedelta(hours=1), args.interval, args.repeat)
        late = cycle(url, args.machines, START + timedelta(hours=23), args.interval, args.repeat)
        print(f"kpi run cycle with {args.interval} s of new data per machine: at 01:00 {early:.2f} s, at 23:00 "
              f"{late:.2f} s -> late / early = {late / early:.1f} (target <= 2)")
    finally:
        with psycopg.connect(args.admin_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
