"""Dashboard first render in headless Chromium, as a ratio against the same page served as static HTML from a file.

A plant of --machines machines (lines of 20) with --days of hourly KPIs (plus shift and day buckets and the
line / area / plant roll-ups) ending now, and a day of state samples, is loaded into a throw-away database. The
API (uvicorn, one worker, in this process) serves the dashboard. For each page:
- live, first visit: a fresh browser context (empty cache) loads the page until every chart is drawn;
- live, next visit: the same page again in that context (static files from the cache);
- static reference: the HTML the server sent, saved to a file with its static files next to it, loaded from
  file:// in a fresh context until every chart is drawn (same HTML, same scripts, no server, no network).
Reports milliseconds, the ratio live / static, and bytes transferred (encoded bodies + headers) per visit.

    python benchmarks/dashboard/bench_dashboard.py [--machines 200] [--days 30] [--repeat 3] [--timescaledb]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.benchdb import create_db, drop_db, timescaledb_available  # noqa: E402
from tests.dashboard_stack import CHROMIUM_ARGS, chromium_path  # noqa: E402

ADMIN = os.environ.get("SHOPFLOOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
KPIS = ("oee", "availability", "performance", "quality", "scrap_ratio", "energy_per_good_unit_kwh",
        "co2_per_good_unit_kg", "produced_quantity", "scrap_quantity", "good_quantity", "down_time_s",
        "idle_time_s", "setup_time_s", "planned_stop_time_s", "micro_stop_time_s", "no_data_time_s")
PAGES = ("/", "/networking?period=30d", "/trends?period=30d&bucket=hour", "/losses?period=30d",
         "/quality?period=24h", "/tiers?period=30d")
DRAWN = "() => [...document.querySelectorAll('[data-chart]')].every(e => e.dataset.drawn === '1')"


def plant(machines: int) -> dict[str, Any]:
    lines = []
    for li in range(0, machines, 20):
        children = [{"id": f"m{i:03d}", "kind": "machine", "ideal_cycle_time_s": 2.0, "device": f"d{i:03d}",
                     "signals": {"state": {"tag": "status", "map": {1: "running", 2: "idle", 3: "down"}},
                                 "total_count": {"tag": "parts_total"}}}
                    for i in range(li, min(li + 20, machines))]
        lines.append({"id": f"line-{li // 20 + 1:02d}", "kind": "line", "children": children})
    devices = [{"id": f"d{i:03d}", "protocol": "modbus", "endpoint": "tcp://127.0.0.1:5020", "poll_interval_s": 60,
                "tags": [{"name": "status", "address": 40001}, {"name": "parts_total", "address": 40002,
                                                                 "type": "uint32"}]} for i in range(machines)]
    return {"plant": {"id": "bench-plant", "name": "Benchmark plant", "timezone": "UTC"},
            "shifts": [{"name": "day", "start": "08:00", "end": "20:00"}, {"name": "night", "start": "20:00",
                                                                             "end": "08:00"}],
            "assets": [{"id": "area-1", "kind": "area", "children": lines}], "devices": devices}


def load(url: str, cfg: Any, days: int, now: datetime) -> int:
    """Closed hourly, shift and day KPI rows for every asset over `days` before now, and a day of state samples."""
    rng = np.random.default_rng(7)
    assets = [cfg.plant.id] + [a.id for a, _ in cfg.iter_assets()]
    end = now.replace(minute=0, second=0, microsecond=0)
    hour, half, whole = timedelta(hours=1), timedelta(hours=12), timedelta(days=1)
    buckets: list[tuple[str, datetime, datetime, str | None]] = [
        ("hour", end - h * hour, end - h * hour + hour, None) for h in range(1, days * 24 + 1)]
    for d in range(1, days + 1):
        day = (end - timedelta(days=d)).replace(hour=0)
        buckets += [("day", day, day + whole, None), ("shift", day + timedelta(hours=8), day + 8 * hour + half, "day"),
                    ("shift", day + timedelta(hours=20), day + 20 * hour + half, "night")]
    n = 0
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY kpi_values (bucket_start, bucket_end, bucket, asset_id, kpi, value, null_reason, "
                      "shift_name) FROM STDIN") as cp:
            for asset in assets:
                values = rng.uniform(0.3, 0.98, size=(len(buckets), len(KPIS)))
                gaps = rng.random(len(buckets)) < 0.02
                for j, (kind, start, stop, shift) in enumerate(buckets):
                    for k, kpi in enumerate(KPIS):
                        v = None if gaps[j] else float(values[j, k]) * (3600 if kpi.endswith("_s") else 1)
                        cp.write_row((start, stop, kind, asset, kpi, v, "no machine data in bucket (coverage 0)"
                                      if v is None else None, shift))
                        n += 1
        with cur.copy("COPY samples (ts, device_id, tag, value) FROM STDIN") as cp:
            for i in range(len(cfg.machines())):
                for m in range(0, 24 * 60, 5):
                    cp.write_row((now - timedelta(minutes=m), f"d{i:03d}", "status", float(1 + (m // 45) % 3)))
    return n


def serve(url: str, config_path: Path, cfg: Any) -> tuple[Any, int]:
    """`shopfloor api` as a user starts it, in its own process; (process, port) once /healthz answers."""
    import urllib.request

    from tests.conftest import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "shopfloor.cli", "api", "--config", str(config_path),
                             "--database-url", url, "--host", "127.0.0.1", "--port", str(port),
                             "--log-level", "warning"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"shopfloor api did not start (exit status {proc.poll()})") from None
            time.sleep(0.1)


def visit(ctx: Any, url: str) -> tuple[float, int]:
    """(ms until the page is loaded and every chart drawn, bytes transferred) for one navigation."""
    finished: list[Any] = []
    page = ctx.new_page()
    page.on("requestfinished", lambda req: finished.append(req) if req.url.startswith("http") else None)
    t0 = time.perf_counter()
    page.goto(url, wait_until="load")
    page.wait_for_function(DRAWN, polling=10)
    ms = (time.perf_counter() - t0) * 1000
    sizes = [req.sizes() for req in list(finished)]  # the page's own requests (a later live refresh not counted)
    page.close()
    return ms, sum(int(s["responseBodySize"]) + int(s["responseHeadersSize"]) for s in sizes)


def static_copy(html: str, workdir: Path, name: str) -> str:
    """The server's HTML as a file, its /dashboard-static/ files copied next to it; returns the file:// URL."""
    from importlib.resources import files

    static = workdir / "dashboard-static"
    if not static.exists():
        shutil.copytree(str(files("api.dashboard").joinpath("static")), static)
    path = workdir / f"{name}.html"
    path.write_text(html.replace('"/dashboard-static/', '"dashboard-static/'), encoding="utf-8")
    return path.as_uri()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--machines", type=int, default=200)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timescaledb", action="store_true")
    args = ap.parse_args()
    exe = chromium_path()
    if exe is None:
        sys.exit("bench_dashboard: no chromium (apt-get install chromium)")
    if args.timescaledb and not timescaledb_available(ADMIN):
        sys.exit("bench_dashboard: TimescaleDB is not installed (make timescaledb)")
    from api.auth import create_token
    from core.config import parse_config

    work = Path(tempfile.mkdtemp(prefix="sf-bench-dash-"))
    url = create_db(ADMIN, args.timescaledb, "sf_bench_dash")
    try:
        config_path = work / "plant.yaml"
        config_path.write_text(yaml.safe_dump(plant(args.machines), sort_keys=False))
        cfg = parse_config(config_path.read_text(), str(config_path))
        t0 = time.perf_counter()
        rows = load(url, cfg, args.days, datetime.now(UTC))
        print(f"loaded {rows:,} kpi_values rows for {args.machines} machines x {args.days} days "
              f"in {time.perf_counter() - t0:.1f} s ({'TimescaleDB' if args.timescaledb else 'plain PostgreSQL'})")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE")
            token = create_token(conn, "manager", name="bench")[1]
        server, port = serve(url, config_path, cfg)
        try:
            run(exe, port, token, work, args.repeat)
        finally:
            server.terminate()
            server.wait(10)
    finally:
        drop_db(ADMIN, url)
        shutil.rmtree(work, ignore_errors=True)


def run(exe: str, port: int, token: str, work: Path, repeat: int) -> None:
    from playwright.sync_api import sync_playwright

    base = f"http://127.0.0.1:{port}"
    print(f"{'page':34} {'first ms':>9} {'next ms':>8} {'static ms':>9} {'ratio':>6} {'first kB':>9} {'next kB':>8}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        for path in PAGES:
            first, again, ref, b_first, b_again = [], [], [], 0, 0
            for _ in range(repeat):
                ctx = browser.new_context(extra_http_headers={"Authorization": f"Bearer {token}"})
                ms, b_first = visit(ctx, base + path)
                first.append(ms)
                ms, b_again = visit(ctx, base + path)
                again.append(ms)
                html = ctx.request.get(base + path).text()
                ctx.close()
                ctx = browser.new_context()
                ms, _ = visit(ctx, static_copy(html, work, f"page{PAGES.index(path)}"))
                ref.append(ms)
                ctx.close()
            f, a, r = statistics.median(first), statistics.median(again), statistics.median(ref)
            print(f"{path:34} {f:9.0f} {a:8.0f} {r:9.0f} {f / r:6.2f} {b_first / 1e3:9.1f} {b_again / 1e3:8.1f}")
        browser.close()
    print("first: fresh cache; next: same page again (static files cached); static: the same HTML from a file")


if __name__ == "__main__":
    main()
