"""Dashboard over HTTP against a real database (plain and TimescaleDB): sign-in, cookies, views, errors, assets.

The data is tests/api_data.py's day (m1 down 10:00-11:00, d3 silent from 06:00, m2 without a device); the
browser tests (test_dashboard_browser.py) run the live stack.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.dashboard.i18n import catalog, pick_lang
from api.dashboard.views import TREND_KPIS
from api.settings import Settings
from collector.writer import SampleWriter
from core.record import Sample
from core.times import to_us
from tests.api_data import DAY, END, Env, load

pytestmark = pytest.mark.integration
PERIOD = f"from={quote(DAY.isoformat())}&to={quote(END.isoformat())}"


@pytest.fixture
def env(db: str) -> Env:
    return load(db)


@pytest.fixture
def client(env: Env) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=env.url, config_path=Path("plant.yaml")), env.cfg)
    with TestClient(app, follow_redirects=False) as c:
        yield c


def signed_in(client: TestClient, env: Env, role: str = "manager") -> TestClient:
    client.cookies.set("shopfloor_token", env.tokens[role])
    return client


def chart(html: str, element_id: str) -> Any:
    m = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', html, re.S)
    assert m, f"no #{element_id} in the page"
    return json.loads(m.group(1))


def test_token_link_sets_an_httponly_samesite_cookie_and_leaves_the_url(client: TestClient, env: Env) -> None:
    r = client.get(f"/trends?token={env.tokens['viewer']}&lang=en")
    assert r.status_code == 303 and r.headers["location"] == "/trends?lang=en"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"shopfloor_token={env.tokens['viewer']};")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    r = client.get("/trends?lang=en")
    assert r.status_code == 200 and "role: viewer" in r.text


def test_pages_send_strangers_to_the_sign_in_form(client: TestClient, env: Env) -> None:
    r = client.get("/losses?lang=en&scope=line-1")
    assert r.status_code == 303 and r.headers["location"] == "/signin?next=%2Flosses%3Flang%3Den%26scope%3Dline-1"
    form = client.get(r.headers["location"])
    assert form.status_code == 200 and 'name="token"' in form.text
    bad = client.post("/signin", data={"token": "sf_not-a-token", "next": "/losses"})
    assert bad.status_code == 401 and catalog("zh")["signin_failed"] in bad.text
    good = client.post("/signin", data={"token": env.tokens["manager"], "next": "//evil.example/x"})
    assert good.status_code == 303 and good.headers["location"] == "/"  # no redirect to another site


def test_every_page_renders_in_both_languages(client: TestClient, env: Env) -> None:
    signed_in(client, env)
    for path in ("/", "/networking", "/trends", "/losses", "/quality"):
        for lang in ("en", "zh"):
            r = client.get(f"{path}?lang={lang}&{PERIOD}")
            assert r.status_code == 200, (path, lang, r.text[-300:])
            assert catalog(lang)["nav_glance"] in r.text
        partial = client.get(f"{path}?lang=en&partial=1&{PERIOD}")
        assert partial.status_code == 200 and "<html" not in partial.text and 'id="view"' in partial.text


def test_trend_gaps_stay_null_with_their_reason(client: TestClient, env: Env) -> None:
    """A bucket stored as NULL is drawn as a gap (null, never 0) and carries its reason for the tooltip."""
    r = signed_in(client, env).get(f"/trends?lang=en&scope=m3&bucket=hour&{PERIOD}")
    data = chart(r.text, "tr-chart")
    with psycopg.connect(env.url) as conn:
        stored = conn.execute("""SELECT bucket_start, kpi, value, null_reason FROM kpi_values WHERE asset_id = 'm3'
                                 AND bucket = 'hour' AND kpi = ANY(%s) AND bucket_start >= %s AND bucket_start < %s
                                 ORDER BY bucket_start""", (list(TREND_KPIS), DAY, END)).fetchall()
    hours = sorted({row[0] for row in stored})
    assert len(data["x"]) == len(hours) == 24
    gaps = 0
    for start, kpi, value, reason in stored:
        i = hours.index(start)
        assert data["series"][kpi]["values"][i] == value, (start, kpi)
        assert data["series"][kpi]["reasons"][i] == reason
        gaps += value is None
    oee = data["series"]["oee"]
    assert gaps and oee["values"][12] is None and oee["reasons"][12], "m3 is silent after 06:00: OEE must be a gap"


def test_losses_pareto_and_state_timeline(client: TestClient, env: Env) -> None:
    r = signed_in(client, env).get(f"/losses?lang=en&scope=m1&day=2024-03-01&{PERIOD}")
    pareto = chart(r.text, "ls-pareto")
    assert pareto[0][0] == "down_time_s" and pareto[0][1] == pytest.approx(3600.0)
    assert pareto[-1][2] == pytest.approx(1.0)
    gantt = chart(r.text, "ls-gantt")
    assert gantt["machines"] == ["m1"]
    down = [iv for iv in gantt["rows"][0]["intervals"] if iv[2] == "down"]
    assert [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b, _ in down] == \
        [(DAY + timedelta(hours=10), DAY + timedelta(hours=11))]


def test_glance_shows_each_machine_state_now_with_how_long_and_why_not(client: TestClient, env: Env) -> None:
    now = datetime.now(UTC)
    with SampleWriter(env.url) as w:
        w.write([Sample("d1", "status", to_us(now - timedelta(seconds=300)), 1.0),
                 Sample("d1", "status", to_us(now - timedelta(seconds=200)), 3.0),
                 Sample("d1", "status", to_us(now - timedelta(seconds=100)), 3.0)], [])
    html = signed_in(client, env).get("/?lang=en").text
    rows = {m.group(1): m.group(0) for m in re.finditer(r'<tr class="node[^"]*" data-asset="([^"]+)".*?</tr>', html, re.S)}
    assert set(rows) == {"plant-1", "area-1", "line-1", "m1", "m2", "line-2", "m3"}
    assert 'data-state="down"' in rows["m1"] and "for 3 min" in rows["m1"]  # down since the sample 200 s ago
    assert 'data-state="not_reporting"' in rows["m2"] and "no device configured" in rows["m2"]
    assert 'data-state="not_reporting"' in rows["m3"] and "last sample too old" in rows["m3"]


def test_scope_limits_and_bad_input_are_one_line_errors(client: TestClient, env: Env) -> None:
    signed_in(client, env, "certifier")  # scope line-1, period around DAY
    r = client.get(f"/trends?lang=en&scope=line-2&{PERIOD}")
    assert r.status_code == 400 and "outside what this sign-in may see (line-1)" in r.text
    assert client.get(f"/trends?lang=en&scope=m1&{PERIOD}").status_code == 200
    assert client.get("/trends?lang=en&scope=m1").status_code == 400  # today lies outside the token's period
    signed_in(client, env)
    for query, message in (("scope=nope", "unknown scope &#39;nope&#39;"), ("period=year", "unknown period"),
                           ("from=yesterday", "is not an ISO 8601 time"), ("bucket=week", "unknown bucket"),
                           (f"from={quote(END.isoformat())}&to={quote(DAY.isoformat())}", "must be after")):
        r = client.get(f"/trends?lang=en&{query}")
        assert r.status_code == 400 and message in r.text, query
        assert "Traceback" not in r.text


def test_static_files_are_served_from_the_package_with_cache_headers(client: TestClient) -> None:
    page = client.get("/signin?lang=en").text
    src = re.search(r'src="(/dashboard-static/vendor/htmx\.min\.js\?v=\w+)"', page)
    assert src, "the page links the vendored htmx with a content hash"
    r = client.get(src.group(1), headers={"accept-encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
    assert "immutable" in r.headers["cache-control"] and "max-age=31536000" in r.headers["cache-control"]
    assert client.get(src.group(1), headers={"if-none-match": r.headers["etag"]}).status_code == 304
    for bad in ("/dashboard-static/nope.js", "/dashboard-static/../router.py", "/dashboard-static/vendor/../data.py"):
        assert client.get(bad).status_code == 404, bad


def test_language_choice_order() -> None:
    assert pick_lang("en", "zh", "zh-CN") == "en"
    assert pick_lang(None, "en", "zh-CN") == "en"
    assert pick_lang(None, None, "en-US,en;q=0.9") == "en"
    assert pick_lang("fr", None, "zh-CN,zh;q=0.9") == "zh"
    assert set(catalog("en")) == set(catalog("zh"))


def test_tier_readiness_matches_the_evidence_evaluation_and_the_button_follows_the_role(
        client: TestClient, env: Env) -> None:
    from api.evidence import collect
    from api.evidence.pack import evaluation
    from api.evidence.rulebook import get

    url = f"/tiers?lang=en&scope=plant-1&rulebook=cn-guangdong-proposed&{PERIOD}"
    html = signed_in(client, env, "viewer").get(url).text
    assert 'id="evidence-build"' not in html
    with psycopg.connect(env.url) as conn:
        machines, _ = collect.scope_assets(env.cfg, "plant-1")
        rows, _ = collect.kpi_rows(conn, [*machines, "plant-1"], "day", DAY, END, False)
    manifest = {"scope": "plant-1", "scope_is_machine": False, "bucket": "day", "from": DAY.isoformat(),
                "to": END.isoformat(), "baseline_from": None, "baseline_to": None, "region": "national",
                "min_coverage": 0.9}
    ev, _, _ = evaluation(get("cn-guangdong-proposed").rulebook, manifest, collect.rows_json(rows), [], {}, None)
    for tier in ev["tiers"]:
        assert f'data-tier="{tier["id"]}" data-readiness="{tier["readiness"]}"' in html
    for c in ev["criteria"]:
        assert f'data-criterion="{c["id"]}" data-result="{c["result"]}"' in html
    net = next(c for c in ev["criteria"] if c["metric"] == "networking_rate")
    assert net["value"] is not None and f"{100 * net['value']:.1f} %" in html
    manager = signed_in(client, env, "manager").get(url).text
    button = re.search(r"id=\"evidence-build\" data-request='([^']+)'", manager)
    assert button and json.loads(button.group(1).replace("&#34;", '"'))["rulebook"] == "cn-guangdong-proposed"
    r = client.get("/tiers?lang=en&rulebook=nope")
    assert r.status_code == 400 and "unknown rulebook" in r.text


def test_manager_gives_a_downtime_reason_kept_append_only_chained_and_served_by_the_api(
        client: TestClient, env: Env) -> None:
    from api import operator

    losses = f"/losses?lang=en&scope=m1&day=2024-03-01&{PERIOD}"
    page = signed_in(client, env, "viewer").get(losses).text
    assert 'data-asset="m1" data-start="2024-03-01T10:00:00+00:00"' in page and "reason-form" not in page
    refused = client.post("/losses/reason", data={"asset_id": "m1", "event_start": "2024-03-01T10:00:00+00:00",
                                                  "event_end": "2024-03-01T11:00:00+00:00",
                                                  "reason_code": "material", "note": "no coil"})
    assert refused.status_code == 400 and "needs the manager role" in refused.text
    signed_in(client, env, "manager")
    form = {"asset_id": "m1", "event_start": "2024-03-01T10:00:00+00:00", "event_end": "2024-03-01T11:00:00+00:00",
            "reason_code": "breakdown.mechanical", "note": "bearing", "back": losses}
    assert client.post("/losses/reason", data=form).status_code == 303
    bad = client.post("/losses/reason", data={**form, "reason_code": "coffee"})
    assert bad.status_code == 400 and "unknown reason" in bad.text
    r = client.post("/losses/reason", data={**form, "reason_code": "material", "note": "coil was late, not the bearing"})
    assert r.status_code == 303 and r.headers["location"] == losses
    page = client.get(losses).text
    assert re.search(r'data-start="2024-03-01T10:00:00\+00:00">.*?Material shortage', page, re.S)
    by_reason = chart(page, "ls-reasons")
    assert by_reason[0][0] == "Material shortage" and by_reason[0][1] == pytest.approx(3600.0)
    api = client.get(f"/api/v1/operator-entries?scope=line-1&{PERIOD}",
                     headers={"Authorization": f"Bearer {env.tokens['viewer']}"}).json()
    assert [(e["reason_code"], e["author"], e["note"]) for e in api["entries"]] == \
        [("breakdown.mechanical", "manager", "bearing"), ("material", "manager", "coil was late, not the bearing")]
    assert api["entries"][1]["prev_hash"] == api["entries"][0]["entry_hash"]
    with psycopg.connect(env.url, autocommit=True) as conn:
        assert operator.verify_chain(conn) == []
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE operator_entries SET reason_code = 'other'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM operator_entries")
    post = client.post("/api/v1/operator-entries", json={**{k: form[k] for k in ("asset_id", "event_start",
                       "event_end", "reason_code")}, "note": "x"},
                       headers={"Authorization": f"Bearer {env.tokens['viewer']}"})
    assert post.status_code == 403
