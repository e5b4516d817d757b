"""The dashboard in headless Chromium against a live stack: simulated factory -> edge -> collector -> KPI job -> API.

Chromium is Debian's `chromium` driven by Playwright (no browser download); `.ci/run` installs it when missing.
One stack per database flavour serves every test of this module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
import pytest

from tests.conftest import _make_db, _timescaledb_available, drop_db
from tests.dashboard_stack import CHROMIUM_ARGS, LiveStack, chromium_path

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PAGES = ("/", "/networking", "/trends", "/losses", "/quality", "/tiers")
I18N = Path(__file__).resolve().parents[1] / "api" / "dashboard" / "i18n"


def _chromium() -> str:
    path = chromium_path()
    if path is None and shutil.which("apt-get"):
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            subprocess.run(cmd, capture_output=True, timeout=600, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        path = chromium_path()
    if path is None:
        pytest.skip("no Chromium: /usr/bin/chromium is absent and `apt-get install chromium` did not install it")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    exe = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module", params=["plain", "timescaledb"])
def stack(request: pytest.FixtureRequest, broker: tuple[str, int],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    if request.param == "timescaledb" and not _timescaledb_available():
        pytest.fail("TimescaleDB is not installed on the test server: run `make timescaledb`")
    url = _make_db(str(request.param))
    try:
        with LiveStack(url, broker, tmp_path_factory.mktemp("dash")) as s:
            _wait(lambda: _count(url, "SELECT count(DISTINCT device_id) FROM samples") >= 5, 30,
                  "every simulated device delivers samples")
            s.run_kpis_now()
            yield s
    finally:
        drop_db(url)


@pytest.fixture
def page(browser: Any, stack: LiveStack) -> Iterator[Any]:
    """A signed-in (manager) page; every request that is not for 127.0.0.1 is recorded and aborted."""
    ctx = browser.new_context(viewport={"width": 1300, "height": 900})
    outside: list[str] = []

    def guard(route: Any) -> None:
        u = urlparse(route.request.url)
        if u.scheme in ("http", "https", "ws", "wss") and u.hostname != "127.0.0.1":
            outside.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    ctx.route("**/*", guard)
    pg = ctx.new_page()
    pg.outside = outside
    pg.goto(stack.url(f"/?token={stack.token('manager')}&lang=en"))
    yield pg
    ctx.close()


def _count(url: str, sql: str, *args: Any) -> int:
    with psycopg.connect(url) as c:
        row = c.execute(sql, args).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _wait(cond: Any, timeout_s: float, what: str) -> None:
    deadline = time.time() + timeout_s
    while not cond():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting until {what}")
        time.sleep(0.2)


def test_tree_shows_every_machine_of_the_plant(page: Any, stack: LiveStack) -> None:
    shown = set(page.eval_on_selector_all("tr[data-kind=machine]", "rows => rows.map(r => r.dataset.asset)"))
    assert shown == {m.id for m in stack.cfg.machines()}
    for asset, _ in stack.cfg.iter_assets():
        assert page.locator(f'tr[data-asset="{asset.id}"]').count() == 1, asset.id
    assert page.locator('tr[data-asset="manual-01"]').get_attribute("data-state") == "not_reporting"


def _stored(url: str, asset: str, bucket: str, start: Any) -> float | None:
    with psycopg.connect(url) as c:
        row = c.execute("SELECT value FROM kpi_values WHERE asset_id = %s AND kpi = 'oee' AND bucket = %s "
                        "AND bucket_start = %s", (asset, bucket, start)).fetchone()
    return None if row is None else row[0]


def test_oee_shown_equals_the_stored_value(page: Any, stack: LiveStack) -> None:
    from api.dashboard.data import current_windows, utcnow

    day_start = current_windows(stack.cfg, utcnow())["day"][0]
    assets = [stack.cfg.plant.id, "sim-line-1", "press-01", "cnc-01"]
    _wait(lambda: all(_stored(stack.database_url, a, "day", day_start) is not None for a in assets), 60,
          "the KPI job has stored today's OEE for the plant, the line and two machines")
    with stack.kpis_paused():  # the KPI job rewrites the open bucket: hold it still while the page renders
        page.reload()
        cells = {a: page.locator(f'tr[data-asset="{a}"] td[data-kpi=oee][data-bucket=day]') for a in assets}
        shown = {a: (c.get_attribute("data-value"), c.locator("b").inner_text()) for a, c in cells.items()}
        after = {a: _stored(stack.database_url, a, "day", day_start) for a in assets}
    for a in assets:
        stored = after[a]
        assert stored is not None, f"{a}: no OEE stored for today (is the KPI job running?)"
        raw, text = shown[a]
        assert float(raw) == stored, a
        assert text == f"{100 * stored:.1f} %", a


def test_stopped_machine_turns_down_within_the_refresh_interval(page: Any, stack: LiveStack) -> None:
    row = page.locator('tr[data-asset="press-01"]')
    assert row.get_attribute("data-state") != "down" or pytest.skip("press-01 happens to be down already")
    page.evaluate("window.__same_document = true")  # survives htmx swaps, not a reload
    stack.stop_machine("press-01")
    # the PLC shows it on its next tick, the edge reads it within a poll, the page polls every refresh_s
    limit_s = stack.refresh_s + stack.plan.tick_s + stack.plan.poll_interval_s + 1.0
    page.wait_for_selector('tr[data-asset="press-01"][data-state="down"]', timeout=limit_s * 1000)
    assert page.evaluate("window.__same_document === true"), "the page was reloaded instead of refreshed in place"
    assert row.locator(".badge").inner_text() == "down"


def test_networking_rate_on_the_page_equals_the_api(page: Any, stack: LiveStack) -> None:
    page.goto(stack.url("/networking?lang=en&period=today"))
    nw = page.locator("#nw")
    query = f"scope={nw.get_attribute('data-scope')}&from={_q(nw.get_attribute('data-from'))}" \
            f"&to={_q(nw.get_attribute('data-to'))}"
    req = urllib.request.Request(stack.url(f"/api/v1/networking-rate?{query}"),
                                 headers={"Authorization": f"Bearer {stack.token('viewer')}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        api = json.load(resp)
    assert float(page.locator("#nw-rate").get_attribute("data-value")) == pytest.approx(api["rate"], abs=1e-12)
    assert page.locator("#nw-rate").inner_text() == f"{100 * api['rate']:.1f} %"
    missing = set(page.eval_on_selector_all("#nw-missing tr[data-asset]", "rows => rows.map(r => r.dataset.asset)"))
    assert missing == {m["machine_id"] for m in api["machines"] if not m["reporting"]}


def _q(s: str | None) -> str:
    from urllib.parse import quote

    return quote(s or "", safe="")


def _labels(lang: str) -> dict[str, str]:
    """The page labels of a language: the message catalog, the KPI names and the built-in downtime reasons."""
    from api.operator import DEFAULT_REASONS, reasons
    from core.plant import Plant, PlantConfig
    from kpi.catalog import CATALOG

    out = dict(json.loads((I18N / f"{lang}.json").read_text("utf-8")))
    out.update({f"kpi:{k.id}": k.name_zh if lang == "zh" else k.name_en for k in CATALOG})
    tree = reasons(PlantConfig(plant=Plant(id="p"), downtime_reasons=DEFAULT_REASONS))
    out.update({f"reason:{r.code}": r.name_zh if lang == "zh" else r.name_en for r in tree})
    return out


def _label_text(page: Any) -> str:
    """The page's text without cells marked as data (rulebook titles and the evidence engine's reasons, which
    are data in their own words)."""
    return str(page.evaluate("""() => { const b = document.body.cloneNode(true);
        b.querySelectorAll('.data, script').forEach(e => e.remove());
        document.documentElement.appendChild(b); const t = b.innerText; b.remove(); return t; }"""))


def _word(label: str) -> str:
    """A label as a whole-word pattern; any run of white space matches a space (a label may wrap)."""
    return r"(?<!\w)" + r"\s+".join(re.escape(w) for w in label.split()) + r"(?!\w)"


def _labels_in(text: str, labels: dict[str, str]) -> list[str]:
    """Keys of the labels found as whole words in text; a label inside a longer one ("reporting" in "not
    reporting") counts only where it stands on its own."""
    found = []
    for k, v in sorted(labels.items(), key=lambda kv: -len(kv[1])):
        pattern = _word(v)
        if re.search(pattern, text):
            found.append(k)
            text = re.sub(pattern, "\x00", text)
    return found


def test_language_switch_changes_every_label(page: Any, stack: LiveStack) -> None:
    en, zh = _labels("en"), _labels("zh")
    for path in PAGES:
        page.goto(stack.url(f"{path}?lang=en"))
        page.wait_for_selector("#view")
        text_en = _label_text(page)
        shown = _labels_in(text_en, {k: v for k, v in en.items() if v != zh[k]})
        assert len(shown) >= 5, f"{path}: too few labels found to test the switch ({shown})"
        page.click("#lang-switch")
        page.wait_for_url(re.compile(r"lang=zh"))
        text_zh = _label_text(page)
        for k in shown:
            assert not re.search(_word(en[k]), text_zh), f"{path}: {k!r} still in English"
            assert zh[k] in text_zh, f"{path}: {k!r} has no Chinese label"
    page.goto(stack.url("/quality"))  # no lang in the URL: the choice is remembered
    assert page.locator("html").get_attribute("lang") == "zh-CN"


def test_no_request_leaves_loopback(page: Any, stack: LiveStack) -> None:
    drawn = 0
    for path in PAGES:
        page.goto(stack.url(f"{path}?period=24h"))
        page.wait_for_load_state("load")
        page.wait_for_timeout(300)
        charts = page.eval_on_selector_all("[data-chart]", "els => els.map(e => e.dataset.drawn || '')")
        assert all(charts), f"{path}: the vendored ECharts did not draw every chart"
        drawn += len(charts)
    assert drawn >= 4
    page.goto(stack.url("/"))
    page.wait_for_timeout(stack.refresh_s * 1000 + 500)  # one live refresh too
    assert page.outside == []


def test_evidence_button_builds_a_pack_that_verifies(page: Any, stack: LiveStack, tmp_path: Path) -> None:
    page.goto(stack.url("/tiers?lang=en&period=7d"))
    assert page.locator("section.tier").count() >= 1
    assert page.locator("section.tier[data-readiness]").evaluate_all(
        "els => els.every(e => ['red', 'yellow', 'blue'].includes(e.dataset.readiness))")
    page.click("#evidence-build")
    link = page.wait_for_selector("#evidence-download", timeout=120_000)
    with page.expect_download() as dl:
        link.click()
    pack = tmp_path / "pack.zip"
    dl.value.save_as(pack)
    run = subprocess.run([sys.executable, "-m", "shopfloor.cli", "evidence", "verify", str(pack), "--key",
                          str(stack.public_key)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "all checks passed" in run.stdout


def test_evidence_button_is_absent_for_a_viewer(browser: Any, stack: LiveStack) -> None:
    ctx = browser.new_context()
    pg = ctx.new_page()
    pg.goto(stack.url(f"/tiers?token={stack.token('viewer')}&lang=en"))
    assert pg.locator("section.tier").count() >= 1, "a viewer still sees the readiness"
    assert pg.locator("#evidence-build").count() == 0
    ctx.close()
