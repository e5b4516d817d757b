"""`make screenshots`: run the live stack for a while and save a screenshot of every dashboard page (en and zh).

    python -m tests.screenshots docs/screenshots [--seconds 40]

Needs PostgreSQL on $SHOPFLOOR_TEST_PG (default postgresql://postgres@127.0.0.1:5432/postgres; a throw-away
database is created and dropped), mosquitto (a private one is started on a free port) and Debian's chromium.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import _make_db, drop_db, free_port
from tests.dashboard_stack import CHROMIUM_ARGS, LiveStack, chromium_path

PAGES = (("glance", "/"), ("networking", "/networking"), ("trends", "/trends?period=24h"),
         ("losses", "/losses"), ("quality", "/quality"), ("tiers", "/tiers?rulebook=cn-guangdong-proposed"))


def _mosquitto(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, port


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--seconds", type=float, default=40.0, help="how long the factory runs before the shots")
    args = ap.parse_args()
    exe = chromium_path()
    if exe is None:
        print("screenshots: no chromium; install it with `apt-get install chromium`", file=sys.stderr)
        return 1
    args.outdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sf-shots-"))
    broker, port = _mosquitto(work)
    url = _make_db("plain")
    try:
        with LiveStack(url, ("127.0.0.1", port), work, speed=10.0) as stack:
            print(f"screenshots: factory running for {args.seconds:.0f} s ...", file=sys.stderr)
            time.sleep(args.seconds)
            stack.stop_machine("press-02")  # one machine down, so the views show a stop
            time.sleep(3)
            stack.run_kpis_now()
            _shoot(stack, exe, args.outdir)
    finally:
        broker.terminate()
        drop_db(url)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _shoot(stack: LiveStack, exe: str, outdir: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(stack.url(f"/?token={stack.token('manager')}"))
        for lang in ("en", "zh"):
            for name, path in PAGES:
                sep = "&" if "?" in path else "?"
                page.goto(stack.url(f"{path}{sep}lang={lang}"))
                page.wait_for_load_state("load")
                page.wait_for_timeout(800)  # charts draw after load
                out = outdir / f"{name}-{lang}.png"
                page.screenshot(path=str(out), full_page=True)
                print(f"screenshots: {out}", file=sys.stderr)
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
