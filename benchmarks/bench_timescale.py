"""TimescaleDB hypertable vs plain PostgreSQL table: collector ingest, and the KPI job's reads over a month.

    python benchmarks/bench_timescale.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

Creates two databases on the server (plain, and TimescaleDB via `migrate(timescaledb=True)`: same columns,
same unique key and BRIN index), and drops them at the end.

(a) ingest: the same samples written by collector.writer.SampleWriter into each (alternating, best of N).
(b) a month of data (default 30 days x 20 devices x 3 tags every 60 s, 2.6M rows per database, generated in
    Python and loaded with COPY into both; indexes rebuilt after the load, then VACUUM ANALYZE). Then the KPI
    job's actual read (kpi.sources.read_series: the sample before the window + the window, per tag) for one
    machine-day: EXPLAIN (ANALYZE, BUFFERS) on both paths, with the chunks the hypertable plan lists and
    executes counted from the plan text and the indexes the plain plan uses; then the KPI backfill's reads
    for one machine over the whole month (one read per tag and UTC day), timed on both paths.
(c) hourly averages of one device over the month with collector.db.bucket_sql (time_bucket / date_bin).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchdb import create_db, drop_db, timescaledb_available  # noqa: E402

from collector.db import bucket_sql  # noqa: E402
from collector.writer import SampleWriter  # noqa: E402
from core.record import Sample  # noqa: E402
from kpi.sources import SERIES_SQL, read_series  # noqa: E402

MONTH0 = datetime(2024, 6, 1, tzinfo=UTC)
INGEST0_US = 1_720_000_000_000_000  # 2024-07-03, after the month so the two never overlap
_CHUNK_RE = re.compile(r" on (?:_timescaledb_internal\.)?(_hyper_\d+_\d+_chunk)\b")
_INDEX_RE = re.compile(r"(?:Index Scan|Index Only Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\S+)")
_BUFFERS_RE = re.compile(r"Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?")


# --------------------------------------------------------------------------- databases








def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# --------------------------------------------------------------------------- (a) ingest


def ingest_samples(n: int, devices: int = 20, tags: int = 10) -> list[Sample]:
    per_tick = devices * tags
    return [Sample(f"ing-{(i % per_tick) // tags:03d}", f"tag-{i % tags:02d}", INGEST0_US + (i // per_tick) * 100_000,
                   float(i % 1000), gateway_id="gw-1", boot_epoch=1, seq=i) for i in range(n)]


def bench_ingest(urls: dict[str, str], samples: list[Sample], batch: int, rounds: int) -> dict[str, float]:
    def write(url: str) -> None:
        with SampleWriter(url) as w:
            for i in range(0, len(samples), batch):
                w.write(samples[i:i + batch], [])

    best = dict.fromkeys(urls, 0.0)
    for r in range(rounds):
        for label in (list(urls) if r % 2 == 0 else list(reversed(urls))):  # alternate the order
            with psycopg.connect(urls[label], autocommit=True) as c:
                c.execute("TRUNCATE samples")
                c.execute("CHECKPOINT")
            best[label] = max(best[label], len(samples) / timed(lambda u=urls[label]: write(u)))
    for url in urls.values():
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("TRUNCATE samples")
    return best


# --------------------------------------------------------------------------- (b) a month of data


def day_block(day: int, devices: int, tags: int, step_s: int) -> bytes:
    """One UTC day of COPY text rows (ts, device_id, tag, value), time-ordered like live data."""
    base = MONTH0 + timedelta(days=day)
    keys = [f"\tdev-{d:02d}\ttag-{g}\t" for d in range(devices) for g in range(tags)]
    out: list[str] = []
    for i, s in enumerate(range(0, 86400, step_s)):
        t = (base + timedelta(seconds=s)).strftime("%Y-%m-%d %H:%M:%S+00")
        v = f"{(day * 86400 // step_s + i) % 997}\n"
        out.extend(t + k + v for k in keys)
    return "".join(out).encode()


def _index_ddl(conn: psycopg.Connection[Any]) -> list[str]:
    """Drop samples' unique key and indexes (for a fast bulk load); return the DDL that recreates them."""
    cons = conn.execute("""SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
                           WHERE conrelid = 'samples'::regclass AND contype = 'u'""").fetchall()
    idx = conn.execute("""SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
                          AND tablename = 'samples' AND indexname NOT IN
                          (SELECT conname FROM pg_constraint WHERE conrelid = 'samples'::regclass)""").fetchall()
    for name, _ in cons:
        conn.execute(f"ALTER TABLE samples DROP CONSTRAINT {name}")
    for name, _ in idx:
        conn.execute(f"DROP INDEX {name}")
    return [f"ALTER TABLE samples ADD CONSTRAINT {n} {d}" for n, d in cons] + [str(d) for _, d in idx]


def load_month(urls: dict[str, str], days: int, devices: int, tags: int, step_s: int) -> int:
    conns = {label: psycopg.connect(url, autocommit=True) for label, url in urls.items()}
    try:
        ddl = {label: _index_ddl(c) for label, c in conns.items()}
        rows = 0
        t = time.perf_counter()
        print("  days ", end="")

        def copy(label: str, block: bytes) -> None:
            with conns[label].cursor() as cur, cur.copy("COPY samples (ts, device_id, tag, value) FROM STDIN") as cp:
                cp.write(block)

        with ThreadPoolExecutor(max_workers=len(conns)) as pool:
            pending: list[Any] = []
            for day in range(days):
                block = day_block(day, devices, tags, step_s)  # generated while the previous day loads
                for f in pending:
                    f.result()
                pending = [pool.submit(copy, label, block) for label in conns]
                rows += (86400 // step_s) * devices * tags
                print("." if (day + 1) % 10 else f"{day + 1}", end="", flush=True)
            for f in pending:
                f.result()
            print(f" rows copied in {time.perf_counter() - t:.1f} s", flush=True)

            def finish(label: str) -> None:
                c = conns[label]
                c.execute("SET maintenance_work_mem = '256MB'")  # in-memory sorts for the index builds
                for stmt in [*ddl[label], "VACUUM ANALYZE samples"]:
                    c.execute(stmt)

            list(pool.map(finish, conns))
        return rows
    finally:
        for c in conns.values():
            c.close()


def explain(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> str:
    return "\n".join(str(r[0]) for r in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params))


def plan_facts(plan: str) -> dict[str, Any]:
    listed: set[str] = set()
    executed: set[str] = set()
    for line in plan.splitlines():
        m = _CHUNK_RE.search(line)
        if m:
            listed.add(m.group(1))
            if "never executed" not in line:
                executed.add(m.group(1))
    indexes = sorted({re.sub(r"^\d+_\d+_", "<chunk>_", m.group(1).strip('"')) for m in _INDEX_RE.finditer(plan)})
    hit = read = 0
    m = _BUFFERS_RE.search(plan)  # the first Buffers line is the top node's, children included
    if m:
        hit, read = int(m.group(1) or 0), int(m.group(2) or 0)
    return {"chunks_listed": listed, "chunks_executed": executed, "indexes": indexes, "hit": hit, "read": read}


def month_reads(conn: psycopg.Connection[Any], device: str, tags: int, days: int) -> int:
    """The backfill's reads for one machine: per UTC day and tag, read_series (sample before + window)."""
    n = 0
    for day in range(days):
        start = MONTH0 + timedelta(days=day)
        for g in range(tags):
            ts, _, _ = read_series(conn, device, f"tag-{g}", start, start + timedelta(days=1))
            n += len(ts)
    return n


def median_time(fn: Callable[[], object], repeat: int) -> float:
    return statistics.median(timed(fn) for _ in range(repeat))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                    help="admin URL; the benchmark creates and drops its own databases")
    ap.add_argument("--ingest-rows", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=2, help="ingest rounds per path (best is kept)")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--devices", type=int, default=20)
    ap.add_argument("--tags", type=int, default=3)
    ap.add_argument("--interval-s", type=int, default=60,
                    help="sample interval of the month's data (10 gives 15.5M rows per database: ~5 min)")
    ap.add_argument("--keep", action="store_true", help="keep the databases (print their URLs)")
    args = ap.parse_args()
    if not timescaledb_available(args.database_url):
        print("timescaledb is not installed/preloaded on this server (run `make timescaledb`): nothing to compare")
        return 2
    t_all = time.perf_counter()
    urls: dict[str, str] = {}
    try:
        urls["plain"] = create_db(args.database_url, False, "sf_bench_tsvs")
        urls["timescaledb"] = create_db(args.database_url, True, "sf_bench_tsvs")
        with psycopg.connect(urls["timescaledb"]) as c:
            ver, lic = c.execute("SELECT extversion, current_setting('timescaledb.license') FROM pg_extension "
                                 "WHERE extname = 'timescaledb'").fetchone()  # type: ignore[misc]
            server = c.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        print(f"PostgreSQL {server}, TimescaleDB {ver} (license {lic})")

        # (a) ------------------------------------------------------------------
        samples = ingest_samples(args.ingest_rows)
        print(f"\n(a) ingest: {len(samples)} samples via SampleWriter, batches of {args.batch}, "
              f"best of {args.rounds} (alternating order)")
        ingest = bench_ingest(urls, samples, args.batch, args.rounds)
        for label, rate in ingest.items():
            print(f"  {label:<12} {rate:>10,.0f} rows/s")
        print(f"  hypertable/plain ingest ratio = {ingest['timescaledb'] / ingest['plain']:.2f}"
              f"   [{time.perf_counter() - t_all:.0f} s]")

        # (b) ------------------------------------------------------------------
        per_day = (86400 // args.interval_s) * args.devices * args.tags
        print(f"\n(b) a month: {args.days} days x {args.devices} devices x {args.tags} tags every "
              f"{args.interval_s} s = {per_day * args.days:,} rows per database (COPY, indexes rebuilt after)")
        t = time.perf_counter()
        load_month(urls, args.days, args.devices, args.tags, args.interval_s)
        print(f"  loaded both databases (and rebuilt indexes, VACUUM ANALYZE) in {time.perf_counter() - t:.1f} s"
              f"   [{time.perf_counter() - t_all:.0f} s]")
        day = min(14, args.days - 1)
        start = MONTH0 + timedelta(days=day)
        params = {"dev": "dev-07", "tag": "tag-1", "start": start, "end": start + timedelta(days=1)}
        times: dict[str, float] = {}
        month: dict[str, float] = {}
        for label, url in urls.items():
            with psycopg.connect(url) as c:
                chunks_total = 0
                if label == "timescaledb":
                    chunks_total = int(c.execute("SELECT count(*) FROM timescaledb_information.chunks "
                                                 "WHERE hypertable_name = 'samples'").fetchone()[0])  # type: ignore[index]
                plan = explain(c, SERIES_SQL, params)
                facts = plan_facts(plan)
                print(f"\n  --- {label}: EXPLAIN (ANALYZE, BUFFERS) of kpi.sources read_series, device dev-07, tag-1, "
                      f"{start:%Y-%m-%d} (one UTC day) ---")
                print("\n".join("  | " + line for line in plan.splitlines()))
                if label == "timescaledb":
                    print(f"  chunks: {chunks_total} in the hypertable, {len(facts['chunks_listed'])} in the plan "
                          f"(planner excluded the rest), {len(facts['chunks_executed'])} executed: "
                          f"{', '.join(sorted(facts['chunks_executed']))} "
                          "(the window's day + the day before for the 'last sample before start')")
                print(f"  indexes used: {', '.join(facts['indexes']) or 'none (sequential scan)'}; "
                      f"buffers shared hit={facts['hit']} read={facts['read']}")
                window_sql = SERIES_SQL.split("UNION ALL")[1].strip()
                window = plan_facts(explain(c, window_sql, params))
                if label == "timescaledb":
                    print(f"  the window part alone (ts >= start AND ts < end): {len(window['chunks_listed'])} chunk(s) "
                          f"in the plan: {', '.join(sorted(window['chunks_listed']))}; indexes "
                          f"{', '.join(window['indexes'])}")
                else:
                    print(f"  the window part alone (ts >= start AND ts < end): indexes {', '.join(window['indexes'])}")
                times[label] = median_time(lambda c=c: c.execute(SERIES_SQL, params).fetchall(), 21)
                month_reads(c, "dev-07", args.tags, args.days)  # warm
                rows = [0]

                def run(c: psycopg.Connection[Any] = c, rows: list[int] = rows) -> None:
                    rows[0] = month_reads(c, "dev-07", args.tags, args.days)

                month[label] = median_time(run, 3)
                print(f"  one machine-day read (median of 21): {times[label] * 1000:.2f} ms; "
                      f"backfill reads of one machine for the month ({args.days} days x {args.tags} tags, "
                      f"{rows[0]:,} rows, median of 3): {month[label]:.3f} s")

        # (c) ------------------------------------------------------------------
        bucketed: dict[str, float] = {}
        results: dict[str, list[Any]] = {}
        for label, url in urls.items():
            sql = (f"SELECT {bucket_sql(label, '1 hour')} AS hour, avg(value), count(*) FROM samples "
                   "WHERE device_id = %s AND tag = %s AND ts >= %s AND ts < %s GROUP BY 1 ORDER BY 1")
            p = ("dev-07", "tag-1", MONTH0, MONTH0 + timedelta(days=args.days))
            with psycopg.connect(url) as c:
                c.execute(sql, p).fetchall()
                bucketed[label] = median_time(lambda c=c, sql=sql, p=p, label=label: results.__setitem__(
                    label, c.execute(sql, p).fetchall()), 5)
        same = results["plain"] == results["timescaledb"]

        print("\nsummary")
        print(f"  ingest (SampleWriter)         plain {ingest['plain']:>10,.0f} rows/s   timescaledb "
              f"{ingest['timescaledb']:>10,.0f} rows/s   hypertable/plain = {ingest['timescaledb'] / ingest['plain']:.2f}")
        print(f"  one machine-day read          plain {times['plain'] * 1000:>8.2f} ms     timescaledb "
              f"{times['timescaledb'] * 1000:>8.2f} ms     plain/hypertable = {times['plain'] / times['timescaledb']:.2f}")
        print(f"  month backfill reads (1 mach) plain {month['plain']:>8.3f} s      timescaledb "
              f"{month['timescaledb']:>8.3f} s      plain/hypertable = {month['plain'] / month['timescaledb']:.2f}")
        print(f"  hourly avg over the month     plain {bucketed['plain'] * 1000:>8.1f} ms     timescaledb "
              f"{bucketed['timescaledb'] * 1000:>8.1f} ms     (date_bin vs time_bucket; identical result: {same})")
        print(f"  total {time.perf_counter() - t_all:.0f} s")
        return 0 if same else 1
    finally:
        for url in urls.values():
            if args.keep:
                print(f"kept {url}")
            else:
                drop_db(args.database_url, url)


if __name__ == "__main__":
    sys.exit(main())
