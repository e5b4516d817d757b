"""HTTP API against a real database (plain and TimescaleDB): roles, scopes, bad input, exports, networking rate."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from collector.db import migrate
from shopfloor.stages import schema_dirs
from tests.api_data import DAY, END, Env, load
from tests.conftest import _make_db, _timescaledb_available, drop_db

pytestmark = pytest.mark.integration
PERIOD = f"from={DAY.isoformat()}&to={END.isoformat()}".replace("+", "%2B")


@pytest.fixture(scope="module", params=["plain", "timescaledb"])
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    """One loaded database per path for the whole module (loading runs the KPI backfill: seconds)."""
    flavor = str(request.param)
    if flavor == "timescaledb" and not _timescaledb_available():
        if os.environ.get("SHOPFLOOR_NO_TIMESCALEDB") == "1":
            pytest.skip("SHOPFLOOR_NO_TIMESCALEDB=1: TimescaleDB path not requested")
        pytest.fail("TimescaleDB is not installed on the test server: run `make timescaledb`")
    url = _make_db(flavor)
    try:
        migrate(url, log=lambda _: None, schema_dirs=schema_dirs())
        yield load(url)
    finally:
        drop_db(url)


def audit_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {str(k): int(v) for k, v in conn.execute("SELECT event, count(*) FROM api_audit GROUP BY event")}


@pytest.fixture(scope="module")
def client(env: Env) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=env.url, config_path=Path("plant.yaml")), env.cfg)
    with TestClient(app) as c:
        yield c


def get(client: TestClient, env: Env, who: str | None, url: str) -> int:
    headers = {"Authorization": f"Bearer {env.tokens[who]}"} if who else {}
    return client.get(url, headers=headers).status_code


# endpoint -> expected status per caller (None: no token)
CALLERS = ("viewer", "manager", "certifier", "admin", None, "certifier_expired", "certifier_revoked",
           "certifier_other_line", "certifier_old_period")
MATRIX: list[tuple[str, tuple[int, ...]]] = [
    ("/healthz", (200, 200, 200, 200, 200, 200, 200, 200, 200)),
    ("/openapi.json", (200, 200, 200, 200, 401, 401, 401, 200, 200)),
    ("/docs", (200, 200, 200, 200, 401, 401, 401, 200, 200)),
    ("/api/v1/assets", (200, 200, 200, 200, 401, 401, 401, 200, 200)),
    ("/api/v1/kpis/catalog", (200, 200, 200, 200, 401, 401, 401, 200, 200)),
    (f"/api/v1/kpis?asset=line-1&kpi=oee&bucket=hour&{PERIOD}", (200, 200, 200, 200, 401, 401, 401, 403, 403)),
    (f"/api/v1/kpis?asset=line-1&kpi=oee&format=csv&{PERIOD}", (403, 200, 200, 200, 401, 401, 401, 403, 403)),
    (f"/api/v1/networking-rate?scope=line-1&{PERIOD}", (200, 200, 200, 200, 401, 401, 401, 403, 403)),
    (f"/api/v1/networking-rate?scope=plant-1&{PERIOD}", (200, 200, 403, 200, 401, 401, 401, 403, 403)),
    (f"/api/v1/samples?device=d1&{PERIOD}", (403, 200, 200, 200, 401, 401, 401, 403, 403)),
    (f"/api/v1/samples?device=d3&{PERIOD}", (403, 200, 403, 200, 401, 401, 401, 200, 403)),
    # an unknown device: 404 for unscoped tokens, 403 for scoped ones (as for an existing device outside scope)
    (f"/api/v1/samples?device=nope&{PERIOD}", (403, 404, 403, 404, 401, 401, 401, 403, 403)),
    ("/api/v1/ledger/checkpoints", (403, 200, 200, 200, 401, 401, 401, 200, 200)),
    (f"/api/v1/audit?{PERIOD}", (403, 403, 403, 200, 401, 401, 401, 403, 403)),
    ("/metrics", (403, 200, 403, 200, 401, 401, 401, 403, 403)),
]


def test_every_role_against_every_endpoint(client: TestClient, env: Env) -> None:
    got = {(url, who): get(client, env, who, url) for url, _ in MATRIX for who in CALLERS}
    want = {(url, who): code for url, codes in MATRIX for who, code in zip(CALLERS, codes, strict=True)}
    wrong = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    assert not wrong, f"(url, caller): (got, want) {wrong}"


def test_refusals_name_the_role_or_scope_needed_and_are_audited(client: TestClient, env: Env) -> None:
    before = audit_counts(env.url)
    viewer = {"Authorization": f"Bearer {env.tokens['viewer']}"}
    r = client.get(f"/api/v1/samples?device=d1&{PERIOD}", headers=viewer)
    assert r.status_code == 403 and "manager" in r.json()["detail"] and "viewer" in r.json()["detail"]
    other = {"Authorization": f"Bearer {env.tokens['certifier_other_line']}"}
    r = client.get(f"/api/v1/kpis?asset=line-1&kpi=oee&{PERIOD}", headers=other)
    assert r.status_code == 403 and "line-2" in r.json()["detail"]
    cert = {"Authorization": f"Bearer {env.tokens['certifier']}"}
    assert client.get("/api/v1/assets", headers=cert).json()["assets"][0]["id"] == "line-1"
    after = audit_counts(env.url)
    assert after.get("refused", 0) - before.get("refused", 0) == 2
    assert after["certifier_use"] - before.get("certifier_use", 0) == 2  # both certifier requests


def test_audit_log_is_append_only(client: TestClient, env: Env) -> None:
    client.get("/api/v1/assets")
    with psycopg.connect(env.url, autocommit=True) as conn:
        n = conn.execute("SELECT count(*) FROM api_audit").fetchone()
        assert n is not None and n[0] >= 1
        for sql in ("UPDATE api_audit SET detail = 'x'", "DELETE FROM api_audit", "TRUNCATE api_audit"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(sql)
        assert conn.execute("SELECT count(*) FROM api_audit").fetchone() == n


BAD = [
    (f"/api/v1/kpis?asset=nope&kpi=oee&{PERIOD}", 404, "unknown asset"),
    (f"/api/v1/kpis?asset=line-1&kpi=ooe&{PERIOD}", 422, "unknown kpi"),
    (f"/api/v1/kpis?asset=line-1&kpi=oee&bucket=week&{PERIOD}", 422, "bucket"),
    (f"/api/v1/kpis?asset=line-1&kpi=oee&from={END.date()}&to={DAY.date()}", 400, "must be after"),
    (f"/api/v1/kpis?asset=line-1&kpi=oee&from=2020-01-01&to={END.date()}", 400, "at most 400 days"),
    ("/api/v1/kpis?asset=line-1&kpi=oee&from=yesterday&to=today", 422, "ISO 8601"),
    ("/api/v1/kpis?asset=line-1&kpi=oee", 422, "is required"),
    (f"/api/v1/kpis?asset=line-1'%3B DROP TABLE kpi_values%3B--&kpi=oee&{PERIOD}", 404, "unknown asset"),
    (f"/api/v1/kpis?asset=line-1&kpi=oee' OR '1'='1&{PERIOD}", 422, "unknown kpi"),
    (f"/api/v1/samples?device=d1' OR 1=1--&{PERIOD}", 404, "unknown device"),
    (f"/api/v1/samples?device=d1&tag=x' OR 1=1--&{PERIOD}", 200, ""),
    (f"/api/v1/networking-rate?scope=%3Bselect%20pg_sleep(10)&{PERIOD}", 404, "unknown scope"),
    (f"/api/v1/samples?device=d1&format=xml&{PERIOD}", 422, "format"),
    ("/api/v1/assets?x=" + "a" * 5000, 414, "shorten"),
    (f"/api/v1/samples?device=d1&tag=%00&{PERIOD}", 400, "NUL"),
    ("/api/v1/kpis?asset=m1&kpi=oee&from=0001-01-01&to=0001-01-02", 400, "between the years"),
    ("/api/v1/networking-rate?scope=m1&from=0001-01-01T00:00:00%2B14:00&to=0001-01-02", 400, "outside the years"),
]


def test_docs_page_loads_only_from_this_server(client: TestClient, env: Env) -> None:
    import re

    auth = {"Authorization": f"Bearer {env.tokens['viewer']}"}
    html = client.get("/docs", headers=auth).text
    refs = re.findall(r'(?:src|href)="([^"]*)"', html) + re.findall(r"url: '([^']*)'", html)
    assert any("swagger-ui-bundle.js" in r for r in refs) and any("swagger-ui.css" in r for r in refs)
    assert "http://" not in html and "https://" not in html and "//" not in "".join(refs), refs
    for ref in refs:
        if ref.startswith("/"):
            r = client.get(ref, headers=auth)
            assert r.status_code == 200 and len(r.content) > 1000, ref
    assert "SwaggerUIBundle" in client.get(next(r for r in refs if "bundle" in r)).text


def test_bad_input_gets_4xx_with_what_to_change(client: TestClient, env: Env) -> None:
    admin = {"Authorization": f"Bearer {env.tokens['admin']}"}
    for url, status, words in BAD:
        r = client.get(url, headers=admin)
        assert r.status_code == status, (url, r.status_code, r.text)
        if words:
            assert words in r.json()["detail"], (url, r.json())
    r = client.post("/api/v1/assets", headers={**admin, "content-length": "2000000"}, content=b"x" * 2_000_000)
    assert r.status_code == 413
    with psycopg.connect(env.url) as conn:
        assert conn.execute("SELECT count(*) FROM kpi_values").fetchone()[0] > 0  # type: ignore[index]


def test_kpis_return_the_stored_rows_with_reasons_coverage_and_provenance(client: TestClient, env: Env) -> None:
    admin = {"Authorization": f"Bearer {env.tokens['admin']}"}
    rows = client.get(f"/api/v1/kpis?asset=m1&kpi=availability,oee&bucket=hour&{PERIOD}", headers=admin).json()
    with psycopg.connect(env.url) as conn:
        db = conn.execute("""SELECT kpi, bucket_start, value, null_reason, coverage, revision FROM kpi_values
                             WHERE asset_id = 'm1' AND kpi IN ('availability', 'oee') AND bucket = 'hour'
                               AND bucket_start >= %s AND bucket_start < %s ORDER BY kpi, bucket_start""",
                          (DAY, END)).fetchall()
    assert len(rows) == len(db) == 48
    assert [(r["kpi"], r["value"], r["null_reason"], r["coverage"], r["revision"]) for r in rows] == \
        [(k, v, n, c, rv) for k, _, v, n, c, rv in db]
    assert rows[10]["value"] == 0.0 and rows[10]["bucket_start"].startswith("2024-03-01T10:00")  # down 10:00-11:00
    assert "provenance" in rows[0] and "extra" in rows[0]
    m2 = client.get(f"/api/v1/kpis?asset=m2&kpi=availability&bucket=day&{PERIOD}", headers=admin).json()
    assert m2 and m2[0]["value"] is None and m2[0]["null_reason"]
    cat = client.get("/api/v1/kpis/catalog", headers=admin).json()
    marks = {k["id"]: k["status"] for k in cat["kpis"]}
    assert marks["oee"] == "verified" and marks["networking_rate"] == "proposed" and "proposed" in cat["status_marks"]


@pytest.mark.parametrize("scope", ["line-1", "line-2", "area-1", "plant-1"])
def test_networking_rate_equals_the_stored_kpi(client: TestClient, env: Env, scope: str) -> None:
    admin = {"Authorization": f"Bearer {env.tokens['admin']}"}
    with psycopg.connect(env.url) as conn:
        stored = conn.execute("""SELECT bucket, bucket_start, value FROM kpi_values WHERE asset_id = %s
                                 AND kpi = 'networking_rate' AND bucket IN ('hour', 'day')
                                 AND bucket_start >= %s AND bucket_start < %s ORDER BY bucket, bucket_start""",
                              (scope, DAY, END)).fetchall()
    assert len(stored) == 25  # 24 hours and the day
    for bucket, start, value in stored:
        end = start + (timedelta(days=1) if bucket == "day" else timedelta(hours=1))
        q = f"scope={scope}&from={start.isoformat()}&to={end.isoformat()}".replace("+", "%2B")
        r = client.get(f"/api/v1/networking-rate?{q}", headers=admin).json()
        assert r["rate"] == pytest.approx(value), (scope, bucket, start, r["rate"], value)
    day = client.get(f"/api/v1/networking-rate?scope={scope}&{PERIOD}", headers=admin).json()
    with psycopg.connect(env.url) as conn:
        v = conn.execute("""SELECT value FROM kpi_values WHERE asset_id = %s AND kpi = 'networking_rate'
                            AND bucket = 'day' AND bucket_start = %s""", (scope, DAY)).fetchone()
    assert v is not None and day["rate"] == pytest.approx(v[0])
    assert day["numerator"] / day["denominator"] == pytest.approx(v[0])
    if scope == "line-1":
        assert day["equipment_register"] == ["m1", "m2"] and day["from"].startswith("2024-03-01")
        assert [m["machine_id"] for m in day["machines_not_reporting"]] == ["m2"]
        assert day["machines_not_reporting"][0]["reason"] == "no device configured"
    if scope == "line-2":
        late = client.get(f"/api/v1/networking-rate?scope=line-2&from={DAY.date()}T12:00:00&to={END.date()}T00:00:00",
                          headers=admin).json()
        (m3,) = late["machines_not_reporting"]
        assert "read timeout" in m3["reason"] and m3["last_seen"].startswith("2024-03-01T07:00")
        assert day["time_weighted_rate"] == pytest.approx(0.25)


def _db_samples(url: str, device: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute("""SELECT ts, device_id, tag, value, value_text, quality FROM samples
                               WHERE device_id = %s AND ts >= %s AND ts < %s ORDER BY tag COLLATE "C", ts""",
                            (device, DAY, END)).fetchall()


def test_sample_exports_equal_the_database_rows(client: TestClient, env: Env) -> None:
    import csv

    import pyarrow.parquet as pq

    manager = {"Authorization": f"Bearer {env.tokens['manager']}"}
    before = audit_counts(env.url).get("export", 0)
    want = _db_samples(env.url, "d1")
    assert len(want) == 288
    js = client.get(f"/api/v1/samples?device=d1&{PERIOD}", headers=manager).json()
    assert [(r["tag"], r["value"]) for r in js] == [(w[2], w[3]) for w in want]
    r = client.get(f"/api/v1/samples?device=d1&format=parquet&{PERIOD}", headers=manager)
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    table = pq.read_table(io.BytesIO(r.content))
    assert [tuple(d.values()) for d in table.to_pylist()] == want
    text = client.get(f"/api/v1/samples?device=d1&format=csv&{PERIOD}", headers=manager).text
    got = list(csv.DictReader(io.StringIO(text)))
    assert [(g["ts"], g["tag"], float(g["value"])) for g in got] == [(w[0].isoformat(), w[2], w[3]) for w in want]
    assert audit_counts(env.url)["export"] - before == 2


def test_scope_export_writes_samples_status_and_covering_ledger(env: Env, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from api.export import export_scope
    from collector.ledger import rows_digest

    manifest = export_scope(env.url, env.cfg, "line-2", DAY, END, tmp_path)
    assert manifest["devices"] == ["d3"] and manifest["machines"] == ["m3"]
    rows = [tuple(d.values()) for d in pq.read_table(tmp_path / "samples.parquet").to_pylist()]
    assert rows == _db_samples(env.url, "d3") and len(rows) == 73
    status = pq.read_table(tmp_path / "device_status.parquet").to_pylist()
    assert [(s["state"], s["reason"]) for s in status] == [("connected", ""),
                                                           ("disconnected", "read timeout: check the cable")]
    ledger = pq.read_table(tmp_path / "ingest_ledger.parquet").to_pylist()
    assert ledger and all(e["covers_export"] for e in ledger) and len(ledger) == 7  # hours 00..05 and 07
    for e in ledger:  # every covered hour recomputes from the exported rows alone
        hour = [(r[0], r[2], r[3], r[4], r[5]) for r in rows if e["hour"] <= r[0] < e["hour"] + timedelta(hours=1)]
        assert rows_digest(sorted(hour, key=lambda x: (x[1], x[0]))) == (e["row_count"], e["rows_sha256"])
    before = audit_counts(env.url)["export"]
    manifest = export_scope(env.url, env.cfg, "line-2", DAY, END, tmp_path / "csv", fmt="csv")
    assert [f["rows"] for f in manifest["files"]] == [73, 2, 7]
    assert audit_counts(env.url)["export"] == before + 1


def test_generated_requests_from_the_openapi_schema_never_get_a_5xx(client: TestClient, env: Env) -> None:
    """schemathesis generates valid and invalid requests for every operation; none may answer 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    admin = {"Authorization": f"Bearer {env.tokens['admin']}"}
    schema = schemathesis.openapi.from_dict(client.get("/openapi.json", headers=admin).json())  # not from_asgi:
    # that would run the app's lifespan a second time
    seen: dict[int, int] = {}
    for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

        @settings(max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=schema.as_strategy(mode))
        def one(case: schemathesis.Case) -> None:
            headers = {str(k): str(v) for k, v in (case.headers or {}).items() if str(k).lower() != "authorization"}
            r = client.request(case.method, case.formatted_path, params=case.query, headers={**headers, **admin})
            seen[r.status_code] = seen.get(r.status_code, 0) + 1
            assert r.status_code < 500, (case.method, case.formatted_path, case.query, r.status_code, r.text[:300])

        one()
    assert any(s < 300 for s in seen) and any(400 <= s < 500 for s in seen), seen


def test_columns_added_to_kpi_values_later_pass_through_as_extra(env: Env) -> None:
    with psycopg.connect(env.url, autocommit=True) as conn:
        conn.execute("ALTER TABLE kpi_values ADD COLUMN IF NOT EXISTS data_quality_test text DEFAULT 'ok'")
    try:
        app = create_app(Settings(database_url=env.url, config_path=Path("plant.yaml")), env.cfg)
        with TestClient(app) as c:
            admin = {"Authorization": f"Bearer {env.tokens['admin']}"}
            for fmt in ("json", "csv"):
                r = c.get(f"/api/v1/kpis?asset=m1&kpi=oee&bucket=day&format={fmt}&{PERIOD}", headers=admin)
                assert r.status_code == 200 and "data_quality_test" in r.text and '"ok"' in r.text.replace('""', '"')
            assert r.text.splitlines()[0].endswith("extra")
            assert c.get(f"/api/v1/kpis?asset=m1&kpi=oee&bucket=day&{PERIOD}", headers=admin).json()[0]["extra"] == \
                {"data_quality_test": "ok"}
            import pyarrow.parquet as pq

            r = c.get(f"/api/v1/kpis?asset=m1&kpi=oee,availability&bucket=hour&format=parquet&{PERIOD}", headers=admin)
            rows = pq.read_table(io.BytesIO(r.content)).to_pylist()
            assert len(rows) == 48 and rows[0]["kpi"] == "availability" and rows[0]["extra"] == '{"data_quality_test": "ok"}'

    finally:
        with psycopg.connect(env.url, autocommit=True) as conn:
            conn.execute("ALTER TABLE kpi_values DROP COLUMN data_quality_test")


def test_metrics_report_requests_latencies_and_what_the_database_holds(client: TestClient, env: Env) -> None:
    manager = {"Authorization": f"Bearer {env.tokens['manager']}"}
    client.get("/api/v1/kpis/catalog", headers=manager)
    with psycopg.connect(env.url, autocommit=True) as conn:
        conn.execute("INSERT INTO quarantine (source, reason, payload) VALUES ('test', 'bad json', 'x')")
        conn.execute("INSERT INTO kpi_watermarks VALUES ('m1', now() - interval '90 seconds', now())"
                     " ON CONFLICT (asset_id) DO UPDATE SET computed_until = excluded.computed_until")
    text = client.get("/metrics", headers=manager).text
    lines = {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln and ln[0] != "#"}
    assert lines['shopfloor_api_requests_total{method="GET",route="/api/v1/kpis/catalog",status="200"}'] >= 1
    assert lines['shopfloor_api_request_seconds_count{route="/api/v1/kpis/catalog"}'] >= 1
    assert lines["shopfloor_quarantine_messages"] >= 1
    assert 90 <= lines['shopfloor_kpi_job_lag_seconds{asset="m1"}'] < 3600
    assert lines['shopfloor_device_connected{device="d3",gateway=""}'] == 0.0
    assert lines['shopfloor_device_connected{device="d1",gateway=""}'] == 1.0
    assert 'shopfloor_ingest_rows_per_second{gateway=""}' in lines  # rows loaded moments ago count


def test_a_repeated_kpi_query_follows_a_recomputed_value(client: TestClient, env: Env) -> None:
    admin = {"Authorization": f"Bearer {env.tokens['admin']}"}
    url = f"/api/v1/kpis?asset=line-1&kpi=availability&bucket=day&{PERIOD}"
    first = client.get(url, headers=admin).json()
    assert client.get(url, headers=admin).json() == first  # second answer may come from the cache
    with psycopg.connect(env.url, autocommit=True) as conn:  # what kpi.store.write_rows does on a recompute
        conn.execute("""UPDATE kpi_values SET value = 0.125, revision = revision + 1, computed_at = now()
                        WHERE asset_id = 'line-1' AND kpi = 'availability' AND bucket = 'day'""")
    try:
        again = client.get(url, headers=admin).json()
        assert again[0]["value"] == 0.125 and again[0]["revision"] == first[0]["revision"] + 1
    finally:
        with psycopg.connect(env.url, autocommit=True) as conn:
            conn.execute("""UPDATE kpi_values SET value = %s, revision = %s, computed_at = now()
                            WHERE asset_id = 'line-1' AND kpi = 'availability' AND bucket = 'day'""",
                         (first[0]["value"], first[0]["revision"]))
