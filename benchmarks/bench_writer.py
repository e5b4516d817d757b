"""Ingest throughput: SampleWriter vs raw binary COPY vs executemany, and hypertable vs plain table.

    python benchmarks/bench_writer.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

Creates its own databases (plain, and TimescaleDB where the extension is available), migrates them with the
real schema (same table, same indexes), and drops them at the end. Targets: writer >= 0.7 x raw COPY,
writer >= 20 x executemany.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchdb import create_db, drop_db, timescaledb_available  # noqa: E402

from collector.writer import COPY_SAMPLES as _COPY_SAMPLES  # noqa: E402
from collector.writer import TYPES, SampleWriter, sample_rows, ts_from_us  # noqa: E402
from core.record import Sample  # noqa: E402

T0 = 1_717_200_000_000_000  # 2024-06-01T00:00:00Z


def make_samples(n: int, devices: int = 20, tags: int = 10) -> list[Sample]:
    """n samples: devices x tags series, one value per series every 100 ms (time-ordered like live data)."""
    per_tick = devices * tags
    return [Sample(f"dev-{(i % per_tick) // tags:03d}", f"tag-{i % tags:02d}", T0 + (i // per_tick) * 100_000,
                   float(i % 1000), gateway_id="gw-1", boot_epoch=1, seq=i) for i in range(n)]






def truncate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("TRUNCATE samples")
        c.execute("CHECKPOINT")


def dt_rows(samples: list[Sample]) -> list[tuple[object, ...]]:
    """The same rows the way a psycopg user writes them: aware datetimes, standard dumpers."""
    return [(*r[:2], ts_from_us(r[2]), *r[3:7], None if r[7] is None else ts_from_us(r[7]), *r[8:])
            for r in sample_rows(samples)]  # COLUMNS order: device_id, tag, ts, ...


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def raw_copy(url: str, rows: list[tuple[object, ...]], batch: int) -> None:
    """The floor: pre-built tuples, one binary COPY per batch, one transaction each, nothing else."""
    with psycopg.connect(url) as c:
        for i in range(0, len(rows), batch):
            with c.cursor() as cur, cur.copy(_COPY_SAMPLES) as cp:
                cp.set_types(TYPES)
                for r in rows[i:i + batch]:
                    cp.write_row(r)
            c.commit()


def writer(url: str, samples: list[Sample], batch: int) -> None:
    with SampleWriter(url) as w:
        for i in range(0, len(samples), batch):
            w.write(samples[i:i + batch], [])


def executemany(url: str, samples: list[Sample], batch: int) -> None:
    sql = """INSERT INTO samples (device_id, tag, ts, value, value_text, quality, status_code, server_ts, historical,
             gateway_id, boot_epoch, seq) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
             ON CONFLICT DO NOTHING"""
    with psycopg.connect(url) as c:
        for i in range(0, len(samples), batch):
            with c.cursor() as cur:
                cur.executemany(sql, dt_rows(samples[i:i + batch]))
            c.commit()


def bench(url: str, samples: list[Sample], small: int, batch: int, label: str) -> dict[str, float]:
    rows = dt_rows(samples)
    out: dict[str, float] = {}
    for name, fn, n in (("raw COPY", lambda: raw_copy(url, rows, batch), len(samples)),
                        ("SampleWriter", lambda: writer(url, samples, batch), len(samples)),
                        ("executemany", lambda: executemany(url, samples[:small], batch), small)):
        best = 0.0
        for _ in range(2 if name != "executemany" else 1):
            truncate(url)
            best = max(best, n / timed(fn))
        out[name] = best
        print(f"  {label:<12} {name:<13} {n:>8} rows  {best:>10,.0f} rows/s", flush=True)
    truncate(url)
    replay = len(samples[:batch * 4])
    writer(url, samples[:replay], batch)
    out["replay"] = replay / timed(lambda: writer(url, samples[:replay], batch))
    print(f"  {label:<12} {'replay (dup)':<13} {replay:>8} rows  {out['replay']:>10,.0f} rows/s", flush=True)
    return out




def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                    help="admin URL; the benchmark creates and drops its own databases")
    ap.add_argument("-n", "--rows", type=int, default=200_000)
    ap.add_argument("--executemany-rows", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=5000)
    args = ap.parse_args()
    samples = make_samples(args.rows)
    results: dict[str, dict[str, float]] = {}
    flavors = [False] + ([True] if timescaledb_available(args.database_url) else [])
    print(f"{args.rows} samples, batches of {args.batch}; executemany on {args.executemany_rows}")
    for ts in flavors:
        label = "timescaledb" if ts else "plain"
        url = create_db(args.database_url, ts)
        try:
            results[label] = bench(url, samples, args.executemany_rows, args.batch, label)
        finally:
            drop_db(args.database_url, url)
    print()
    ok = True
    for label, r in results.items():
        vs_copy = r["SampleWriter"] / r["raw COPY"]
        vs_many = r["SampleWriter"] / r["executemany"]
        ok &= vs_copy >= 0.7 and vs_many >= 20
        print(f"{label}: writer/raw COPY = {vs_copy:.2f} (target >= 0.7)   "
              f"writer/executemany = {vs_many:.1f} (target >= 20)")
    if len(results) == 2:
        print(f"hypertable/plain (writer) = {results['timescaledb']['SampleWriter'] / results['plain']['SampleWriter']:.2f}"
              f"   (raw COPY {results['timescaledb']['raw COPY'] / results['plain']['raw COPY']:.2f})")
    else:
        print("timescaledb not available on this server: hypertable ratio not measured (run `make timescaledb`)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
