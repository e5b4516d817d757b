"""Evidence packs and verification, as ratios to the KPI backfill of the same data (one run, one machine).

Target: a pack for a month of a 200-machine plant, and `evidence verify --raw` (every KPI recomputed from the
raw export, every device-hour hashed against the ledger) for 50 machines x a month. Default run is scaled down
(--days 3, one sample per 60 s of state and per 60 s of counter and meter: 4,320 rows per machine-day) so it
finishes in a few minutes on 2 shared cores; all three jobs grow linearly in machine-days, so the ratios hold.

Steps: fresh database; load by binary COPY; seal the ledger; backfill the whole plant (timed: the reference for
the pack); backfill line-1 alone (50 machines, timed: the reference for verify); pack for the plant over the
period (timed); pack for line-1 with its raw export (Parquet, timed apart); verify that pack with --raw (timed).

    python benchmarks/evidence/bench_evidence.py [--days 3] [--machines 200] [--admin-url URL]
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.benchdb import create_db, drop_db  # noqa: E402
from benchmarks.kpi.bench_backfill import START, copy_block, machine_series  # noqa: E402

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
LINE = 50
KEEP_EVERY = {"status": 30, "parts": 15, "energy": 15}  # one sample per minute of each signal


def plant_text(machines: int) -> str:
    lines = []
    for li in range(0, machines, LINE):
        ms = "\n".join(
            f"      - {{id: m{i:03d}, kind: machine, device: d{i:03d}, ideal_cycle_time_s: 4.0, signals: {{state: "
            f"{{tag: status, map: {{1: running, 2: idle, 3: down, 4: setup, 5: planned_stop}}}}, total_count: "
            f"{{tag: parts}}, energy_kwh: {{tag: energy}}}}}}" for i in range(li, min(li + LINE, machines)))
        lines.append(f"  - id: line-{li // LINE + 1}\n    kind: line\n    children:\n{ms}")
    ds = "\n".join(f'  - {{id: d{i:03d}, protocol: modbus, endpoint: "tcp://127.0.0.1:502", poll_interval_s: 60, '
                   f'tags: [{{name: status, address: 40001}}, {{name: parts, address: 40002, type: uint32}}, '
                   f'{{name: energy, address: 40004, type: float32}}]}}' for i in range(machines))
    return ("plant: {id: bench, timezone: Asia/Shanghai, emission_factor_kg_per_kwh: 0.5617}\n"
            "kpi: {calendar: always}\nassets:\n" + "\n".join(lines) + "\ndevices:\n" + ds + "\n")


def _copy(url: str, machines: range, days: int) -> int:
    rng = np.random.default_rng(11 + machines.start)
    rows = 0
    with psycopg.connect(url) as c, c.cursor() as cur, \
            cur.copy("COPY samples (ts, device_id, tag, value) FROM STDIN (FORMAT binary)") as cp:
        cp.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
        for i in machines:
            for tag, (ts, v) in machine_series(rng, days * 86400).items():
                k = KEEP_EVERY[tag]
                cp.write(copy_block(f"d{i:03d}", tag, ts[::k], v[::k]))
                rows += ts[::k].shape[0]
        cp.write(struct.pack(">h", -1))
    return rows


def timed(label: str, fn: object, *args: object, **kw: object) -> float:
    t0 = time.perf_counter()
    fn(*args, **kw)  # type: ignore[operator]
    s = time.perf_counter() - t0
    print(f"  {label:52s} {s:8.1f} s", flush=True)
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--machines", type=int, default=200)
    ap.add_argument("--admin-url", default=ADMIN)
    args = ap.parse_args()
    from api.evidence.pack import PackRequest, build
    from api.evidence.signing import keygen
    from api.evidence.verify import Check, verify
    from collector.ledger import seal_hours
    from core.config import parse_config
    from kpi.job import backfill

    url = create_db(args.admin_url, False, "sf_bench_ev")
    tmp = Path(tempfile.mkdtemp(prefix="sf-bench-ev-"))
    try:
        text = plant_text(args.machines)
        (tmp / "plant.yaml").write_text(text)
        (tmp / "line.yaml").write_text(plant_text(min(LINE, args.machines)))
        cfg, line_cfg = parse_config(text), parse_config(plant_text(min(LINE, args.machines)))
        t0 = time.perf_counter()
        parts = [range(k, args.machines, 2) for k in range(2)]
        with ThreadPoolExecutor(2) as pool:
            rows = sum(pool.map(lambda r: _copy(url, r, args.days + 1), parts))
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("VACUUM ANALYZE samples")
            seal_hours(c, datetime.now(UTC))
        print(f"loaded and sealed {rows:,} rows ({args.machines} machines x {args.days + 1} days) in "
              f"{time.perf_counter() - t0:.1f} s")
        start, end = START + timedelta(days=1), START + timedelta(days=args.days + 1)
        priv, pub = keygen(tmp / "keys")
        print(f"period {start.isoformat()} .. {end.isoformat()} ({args.days} days):")
        t_bf = timed(f"backfill, {args.machines} machines", backfill, url, cfg, start, end)
        t_bf_line = timed(f"backfill, line-1 alone ({LINE} machines)", backfill, url, line_cfg, start, end)
        req = PackRequest(tmp / "plant.yaml", url, "cn-national-smart-factory-tiers", "bench", start, end, priv,
                          tmp / "plant.zip", bucket="hour")
        t_pack = timed(f"evidence pack, plant ({args.machines} machines, hour rows)", build, req)
        req_line = PackRequest(tmp / "plant.yaml", url, "cn-national-smart-factory-tiers", "line-1", start, end,
                               priv, tmp / "line.zip", bucket="hour")
        t_pack_line = timed(f"evidence pack, line-1 ({LINE} machines)", build, req_line)
        req_line.raw_out, req_line.out = tmp / "raw", tmp / "line2.zip"
        t_pack_raw = timed("evidence pack, line-1 + Parquet raw export", build, req_line)
        result: list[Check] = []
        t_verify = timed(f"evidence verify --raw, line-1 ({LINE} machines)",
                         lambda: result.extend(verify(tmp / "line2.zip", pub, tmp / "raw")))
        bad = [c for c in result if not c.ok]
        print(f"verify: {'all checks passed' if not bad else 'FAILED: ' + ', '.join(c.name for c in bad)}")
        print(f"ratios (same data, same run): pack / backfill ({args.machines} machines) = {t_pack / t_bf:.3f}; "
              f"pack with raw export / backfill (line-1) = {t_pack_raw / t_bf_line:.2f}; "
              f"verify with recompute / backfill (line-1) = {t_verify / t_bf_line:.2f}")
        print(f"(line-1 pack without export / its backfill = {t_pack_line / t_bf_line:.3f})")
    finally:
        drop_db(args.admin_url, url)


if __name__ == "__main__":
    main()
