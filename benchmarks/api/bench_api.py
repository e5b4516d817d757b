"""API benchmarks, as ratios against references measured in the same run on the same machine.

1. KPI query vs bare endpoint: `GET /api/v1/kpis` for one machine's month of hourly KPIs (token checked,
   rows streamed from kpi_values) against a bare Starlette route on the same app, server and worker that returns
   the same JSON precomputed. One uvicorn worker in its own process; the load comes from another process
   (httpx, --concurrency connections, --seconds each). Reports req/s, p50 and p99 and the req/s ratio.
2. Raw-data export vs binary COPY: a month of one machine's samples (3 tags every --interval-s seconds) written
   as Parquet by api.export.export_scope, and fetched as Parquet over HTTP, against
   `COPY (SELECT ... same rows ...) TO STDOUT (FORMAT binary)` into a file. Reports rows/s and ratios.

    python benchmarks/api/bench_api.py [--interval-s 5] [--seconds 10] [--concurrency 16] [--timescaledb]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.benchdb import create_db, drop_db, timescaledb_available  # noqa: E402

ADMIN = os.environ.get("SHOPFLOOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
START = datetime(2024, 3, 1, tzinfo=UTC)
END = datetime(2024, 3, 31, tzinfo=UTC)  # 30 days
PG_EPOCH_US = 946_684_800_000_000
KPIS = ("oee", "availability", "performance", "quality")
PLANT = """
plant: {id: bench, timezone: UTC}
kpi: {calendar: always}
assets:
  - id: line-1
    kind: line
    children:
      - {id: m1, kind: machine, device: d1, ideal_cycle_time_s: 4.0,
         signals: {state: {tag: status, map: {1: running, 3: down}}, total_count: {tag: parts}, energy_kwh: {tag: energy}}}
devices:
  - {id: d1, protocol: modbus, endpoint: "tcp://127.0.0.1:502", tags: [{name: status, address: 40001},
     {name: parts, address: 40002, type: uint32}, {name: energy, address: 40004, type: float32}]}
"""


def load_kpis(url: str) -> int:
    """A month of hourly KPI rows for m1 (values drawn at random; the API only reads them)."""
    rng = np.random.default_rng(1)
    hours = int((END - START).total_seconds() // 3600)
    with psycopg.connect(url) as c, c.cursor() as cur, cur.copy(
            "COPY kpi_values (bucket_start, bucket, asset_id, kpi, value, unit, coverage, bucket_end, provenance) "
            "FROM STDIN") as cp:
        for h in range(hours):
            t = START + timedelta(hours=h)
            for k in KPIS:
                cp.write_row((t, "hour", "m1", k, float(rng.uniform(0.5, 1)), "ratio", 1.0, t + timedelta(hours=1),
                              '{"micro_stop_s": 0}'))
    return hours * len(KPIS)


def copy_block(device: str, tag: str, ts_us: np.ndarray, values: np.ndarray) -> bytes:
    """PGCOPY binary tuples (ts, device_id, tag, value) built without a Python loop."""
    dev, tg = device.encode(), tag.encode()
    dt = np.dtype([("nf", ">i2"), ("l1", ">i4"), ("ts", ">i8"), ("l2", ">i4"), ("dev", f"S{len(dev)}"),
                   ("l3", ">i4"), ("tag", f"S{len(tg)}"), ("l4", ">i4"), ("val", ">f8")])
    a = np.empty(ts_us.shape[0], dtype=dt)
    a["nf"], a["l1"], a["l2"], a["l3"], a["l4"] = 4, 8, len(dev), len(tg), 8
    a["ts"], a["dev"], a["tag"], a["val"] = ts_us - PG_EPOCH_US, dev, tg, values
    return a.tobytes()


def load_samples(url: str, interval_s: float) -> int:
    """A month of samples for d1: status, parts and energy every interval_s."""
    step = int(interval_s * 1e6)
    ts = np.arange(int(START.timestamp() * 1e6), int(END.timestamp() * 1e6), step, dtype=np.int64)
    series = {"status": np.where(np.arange(ts.size) % 50 < 40, 1.0, 3.0),
              "parts": np.cumsum(np.ones(ts.size)), "energy": np.cumsum(np.full(ts.size, 0.01))}
    with psycopg.connect(url) as c, c.cursor() as cur, \
            cur.copy("COPY samples (ts, device_id, tag, value) FROM STDIN (FORMAT binary)") as cp:
        cp.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
        for tag, v in series.items():
            cp.write(copy_block("d1", tag, ts, v))
        cp.write(struct.pack(">h", -1))
    return ts.size * len(series)


def serve(url: str, cfg_path: str, port: int, cache_mb: float) -> None:
    """Server process: the real API app plus one bare Starlette route returning precomputed JSON."""
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from api.app import create_app
    from api.settings import Settings

    app = create_app(Settings(database_url=url, config_path=Path(cfg_path), kpi_cache_mb=cache_mb))
    body = Path(cfg_path).with_suffix(".json").read_bytes()

    async def bare(request: Request) -> Response:
        return Response(body, media_type="application/json")

    app.router.routes.append(Route("/bare", bare))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def hammer(url: str, headers: dict[str, str], seconds: float, concurrency: int) -> dict[str, float]:
    """Requests/s and latency percentiles of `concurrency` connections sending GET url for `seconds`."""
    import httpx2 as httpx

    lat: list[float] = []
    stop = time.perf_counter() + seconds
    async with httpx.AsyncClient(headers=headers, timeout=30,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:

        async def worker() -> None:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                r = await client.get(url)
                await r.aread()
                assert r.status_code == 200, r.text[:200]
                lat.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    a = np.array(lat)
    return {"req_s": a.size / elapsed, "p50_ms": float(np.percentile(a, 50) * 1e3),
            "p99_ms": float(np.percentile(a, 99) * 1e3), "n": float(a.size)}


def bench_kpis(url: str, tmp: Path, seconds: float, concurrency: int) -> None:
    import httpx2 as httpx

    from api.auth import create_token
    from shopfloor.embedded import free_port

    rows = load_kpis(url)
    with psycopg.connect(url, autocommit=True) as c:
        token = create_token(c, "viewer", name="bench")[1]
    cfg = tmp / "plant.yaml"
    cfg.write_text(PLANT)
    port = free_port()
    q = (f"http://127.0.0.1:{port}/api/v1/kpis?asset=m1&kpi={','.join(KPIS)}&bucket=hour"
         f"&from={START.isoformat()}&to={END.isoformat()}").replace("+", "%2B")
    headers = {"Authorization": f"Bearer {token}"}
    cfg.with_suffix(".json").write_bytes(b"[]")
    results: dict[str, dict[str, float]] = {}
    body = b""
    for cache_mb in (0, 64):
        proc = subprocess.Popen([sys.executable, __file__, "--serve", url, str(cfg), str(port), str(cache_mb)])
        try:
            _wait(f"http://127.0.0.1:{port}/healthz")
            body = httpx.get(q, headers=headers, timeout=30).content
            cfg.with_suffix(".json").write_bytes(body)  # the bare route (next server start) serves exactly this
            if cache_mb:
                assert httpx.get(f"http://127.0.0.1:{port}/bare").content == body and len(body) > 1000
            asyncio.run(hammer(q, headers, 1.0, concurrency))  # warm-up
            name = "GET /api/v1/kpis, cache on" if cache_mb else "GET /api/v1/kpis, cache off"
            results[name] = asyncio.run(hammer(q, headers, seconds, concurrency))
            if cache_mb:
                results["bare Starlette, same JSON"] = asyncio.run(
                    hammer(f"http://127.0.0.1:{port}/bare", {}, seconds, concurrency))
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"kpis: {rows} rows ({len(KPIS)} KPIs x {rows // len(KPIS)} hours), {len(body)} bytes of JSON per response, "
          f"1 uvicorn worker, {concurrency} connections, {seconds:.0f} s each")
    bare = results["bare Starlette, same JSON"]
    for name, r in results.items():
        print(f"  {name:<30}{r['req_s']:>9.0f} req/s   p50 {r['p50_ms']:7.1f} ms   p99 {r['p99_ms']:7.1f} ms"
              f"   {r['req_s'] / bare['req_s']:5.0%} of bare")
    print("  (cache on: the repeated query is answered from the in-process cache after a (count, max(computed_at)) "
          "check; cache off: PostgreSQL builds the JSON on every request)")


def _wait(url: str, timeout_s: float = 30) -> None:
    import httpx2 as httpx

    deadline = time.time() + timeout_s
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def bench_export(url: str, tmp: Path, interval_s: float) -> None:
    from api.export import export_scope
    from core.config import parse_config

    t0 = time.perf_counter()
    rows = load_samples(url, interval_s)
    load_s = time.perf_counter() - t0
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("VACUUM ANALYZE samples")
    cfg = parse_config(PLANT)
    ref = tmp / "samples.copy"
    t0 = time.perf_counter()
    with psycopg.connect(url) as c, c.cursor() as cur, ref.open("wb") as f, cur.copy(
            """COPY (SELECT ts, device_id, tag, value, value_text, quality FROM samples
                     WHERE device_id = ANY(%s) AND ts >= %s AND ts < %s ORDER BY device_id, tag COLLATE "C", ts)
               TO STDOUT (FORMAT binary)""", (["d1"], START, END)) as cp:
        for block in cp:
            f.write(block)
    copy_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    manifest = export_scope(url, cfg, "m1", START, END, tmp / "export")
    export_s = time.perf_counter() - t0
    assert manifest["files"][0]["rows"] == rows
    size = (tmp / "export" / "samples.parquet").stat().st_size
    print(f"export: {rows} samples (one machine, 3 tags every {interval_s:g} s, 30 days), loaded in {load_s:.1f} s")
    print(f"  binary COPY to a file     {copy_s:7.2f} s  {rows / copy_s:>12,.0f} rows/s  {ref.stat().st_size / 1e6:8.1f} MB")
    print(f"  export_scope -> Parquet   {export_s:7.2f} s  {rows / export_s:>12,.0f} rows/s  {size / 1e6:8.1f} MB")
    print(f"  ratio: Parquet export runs at {copy_s / export_s:.0%} of binary COPY's rows/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve", nargs=4, metavar=("URL", "CONFIG", "PORT", "CACHE_MB"), help=argparse.SUPPRESS)
    ap.add_argument("--interval-s", type=float, default=5.0, help="sample interval per tag for the export")
    ap.add_argument("--seconds", type=float, default=10.0, help="load duration per endpoint")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--timescaledb", action="store_true", help="run on the TimescaleDB path")
    args = ap.parse_args()
    if args.serve:
        serve(args.serve[0], args.serve[1], int(args.serve[2]), float(args.serve[3]))
        return
    if args.timescaledb and not timescaledb_available(ADMIN):
        sys.exit("TimescaleDB is not available on this server")
    url = create_db(ADMIN, args.timescaledb, "sf_bench_api")
    try:
        with tempfile.TemporaryDirectory() as d:
            bench_kpis(url, Path(d), args.seconds, args.concurrency)
            bench_export(url, Path(d), args.interval_s)
    finally:
        drop_db(ADMIN, url)


if __name__ == "__main__":
    main()
