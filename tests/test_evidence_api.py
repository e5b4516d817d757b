"""Evidence over HTTP against a real database: rulebooks, pack request, status, download, signed checkpoints."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import create_token
from api.evidence.signing import keygen
from api.evidence.verify import verify
from api.settings import Settings
from collector.db import migrate
from core.config import load_config
from kpi.job import backfill
from shopfloor.stages import schema_dirs
from tests import evidence_data as D
from tests.conftest import _make_db, drop_db

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    tmp = tmp_path_factory.mktemp("evapi")
    url = _make_db("plain")
    try:
        migrate(url, log=lambda _: None, schema_dirs=schema_dirs())
        d0 = D.day0(6)
        D.load(url, 2, d0 - timedelta(days=1), d0 + timedelta(days=2), step_s=300)
        plant = D.write_plant(tmp, 2)
        backfill(url, load_config(plant), d0, d0 + timedelta(days=2))
        priv, pub = keygen(tmp / "keys")
        with psycopg.connect(url, autocommit=True) as conn:
            tokens = {r: create_token(conn, r, name=r)[1] for r in ("viewer", "manager", "admin")}
            tokens["certifier"] = create_token(conn, "certifier", scope="m1",
                                               expires_at=datetime.now(UTC) + timedelta(days=1))[1]
        yield {"url": url, "plant": plant, "priv": priv, "pub": pub, "tokens": tokens, "d0": d0, "tmp": tmp}
    finally:
        drop_db(url)


@pytest.fixture(scope="module")
def client(env: dict[str, object]) -> Iterator[TestClient]:
    plant = env["plant"]
    assert isinstance(plant, Path)
    app = create_app(Settings(database_url=str(env["url"]), config_path=plant))
    with TestClient(app) as c:
        yield c


def auth(env: dict[str, object], role: str) -> dict[str, str]:
    tokens = env["tokens"]
    assert isinstance(tokens, dict)
    return {"Authorization": f"Bearer {tokens[role]}"}


def test_rulebooks_with_status_marks(client: TestClient, env: dict[str, object]) -> None:
    assert client.get("/api/v1/tiers/rulebooks").status_code == 401
    r = client.get("/api/v1/tiers/rulebooks", headers=auth(env, "viewer"))
    assert r.status_code == 200
    books = {b["id"]: b for b in r.json()}
    gd = books["cn-guangdong-proposed"]["criteria"][0]
    assert (gd["id"], gd["status"], gd["status_mark"], gd["threshold"]) == ("GD-NET-B", "unverified", "U", 0.75)


def test_request_view_download_verify_and_audit(client: TestClient, env: dict[str, object], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPFLOOR_SIGNING_KEY", str(env["priv"]))
    d0 = env["d0"]
    body = {"rulebook": "cn-guangdong-proposed", "scope": "ev-plant", "from": (d0 + timedelta(days=1)).isoformat(),
            "to": (d0 + timedelta(days=2)).isoformat(), "baseline_from": d0.isoformat(),  # type: ignore[operator]
            "baseline_to": (d0 + timedelta(days=1)).isoformat(), "region": "guangdong"}  # type: ignore[operator]
    assert client.post("/api/v1/evidence", json=body, headers=auth(env, "viewer")).status_code == 403
    r = client.post("/api/v1/evidence", json=body, headers=auth(env, "manager"))
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    assert r.json()["summary"]["criteria"][0]["status_mark"] == "U"
    assert client.get(f"/api/v1/evidence/{pid}", headers=auth(env, "manager")).json()["sha256"] == r.json()["sha256"]
    z = client.get(f"/api/v1/evidence/{pid}/download", headers=auth(env, "manager"))
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    (tmp_path / "p.zip").write_bytes(z.content)
    pub = env["pub"]
    assert isinstance(pub, Path)
    cps = client.get("/api/v1/ledger/checkpoints/signed", headers=auth(env, "manager"))
    (tmp_path / "held.jsonl").write_text(cps.text)
    checks = verify(tmp_path / "p.zip", pub, checkpoints=tmp_path / "held.jsonl")
    assert [c.problems for c in checks if not c.ok] == []
    assert client.get("/api/v1/evidence/999999", headers=auth(env, "manager")).status_code == 404
    with psycopg.connect(str(env["url"])) as conn:
        rows = [(str(e), str(d)) for e, d in conn.execute(
            "SELECT event, detail FROM api_audit WHERE detail LIKE 'evidence %' ORDER BY id")]
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute("UPDATE api_audit SET event = 'export' WHERE event = 'evidence_view'")
    assert {e for e, d in rows if d.startswith("evidence request")} == {"evidence_request"}
    assert [r for r in rows if r[1].endswith(f" {pid}")] == [
        ("evidence_view", f"evidence view {pid}"), ("evidence_download", f"evidence download {pid}")]
    until = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    admin = client.get("/api/v1/audit", headers=auth(env, "admin"), params={
        "event": "evidence_download", "from": d0.isoformat(), "to": until})  # type: ignore[attr-defined]
    assert admin.status_code == 200 and f"evidence download {pid}" in [a["detail"] for a in admin.json()]
    assert {a["event"] for a in admin.json()} == {"evidence_download"}


@pytest.mark.parametrize(("change", "status", "text"), [
    ({"rulebook": "nope"}, 400, "unknown rulebook 'nope'"),
    ({"baseline_from": "D+1", "baseline_to": "D+2"}, 400, "overlaps the report period"),
    ({"to": "D+0"}, 400, "is not after --from"),
    ({"scope": "no-such-line"}, 400, "unknown scope 'no-such-line'"),
    ({"bucket": "week"}, 422, "bucket"),
])
def test_bad_requests_answer_4xx(client: TestClient, env: dict[str, object], monkeypatch: pytest.MonkeyPatch,
                                 change: dict[str, str], status: int, text: str) -> None:
    monkeypatch.setenv("SHOPFLOOR_SIGNING_KEY", str(env["priv"]))
    d0 = env["d0"]

    def day(v: str) -> str:
        return (d0 + timedelta(days=int(v[2:]))).isoformat() if v.startswith("D+") else v  # type: ignore[operator]

    body = {"rulebook": "cn-guangdong-proposed", "scope": "ev-plant", "from": day("D+1"), "to": day("D+2")}
    body.update({k: day(v) for k, v in change.items()})
    r = client.post("/api/v1/evidence", json=body, headers=auth(env, "manager"))
    assert r.status_code == status and text in r.text, r.text


def test_certifier_only_inside_its_scope(client: TestClient, env: dict[str, object],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPFLOOR_SIGNING_KEY", str(env["priv"]))
    d0 = env["d0"]
    body = {"rulebook": "cn-guangdong-proposed", "scope": "ev-plant",
            "from": (d0 + timedelta(days=1)).isoformat(), "to": (d0 + timedelta(days=2)).isoformat()}  # type: ignore[operator]
    r = client.post("/api/v1/evidence", json=body, headers=auth(env, "certifier"))
    assert r.status_code == 403 and "outside this token's scope" in r.text
    r = client.post("/api/v1/evidence", json={**body, "scope": "m1"}, headers=auth(env, "certifier"))
    assert r.status_code == 201, r.text
    assert client.get(f"/api/v1/evidence/{r.json()['id']}/download", headers=auth(env, "certifier")).status_code == 200


def test_missing_signing_key_says_what_to_set(client: TestClient, env: dict[str, object],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOPFLOOR_SIGNING_KEY", raising=False)
    d0 = env["d0"]
    body = {"rulebook": "cn-guangdong-proposed", "scope": "ev-plant",
            "from": d0.isoformat(), "to": (d0 + timedelta(days=1)).isoformat()}  # type: ignore[operator,attr-defined]
    r = client.post("/api/v1/evidence", json=body, headers=auth(env, "manager"))
    assert r.status_code == 503 and "SHOPFLOOR_SIGNING_KEY" in r.text


def test_kpi_rows_without_bucket_end_get_it_from_the_bucket_or_are_left_out(db: str) -> None:
    from api.evidence.collect import kpi_rows

    t0 = datetime(2026, 3, 1, 16, 0, tzinfo=UTC)  # 2026-03-02 00:00 in Asia/Shanghai
    with psycopg.connect(db, autocommit=True) as conn:
        for bucket, start, shift in (("hour", t0, ""), ("day", t0, ""), ("shift", t0, "A")):
            conn.execute("""INSERT INTO kpi_values (bucket_start, bucket, asset_id, kpi, value, shift_name, shift_key,
                            bucket_end, is_final) VALUES (%s, %s, 'm1', 'oee', 0.5, %s, %s, NULL, true)""",
                         (start, bucket, shift or None, shift))
        end = t0 + timedelta(days=2)
        hour, left = kpi_rows(conn, ["m1"], "hour", t0, end, False, "Asia/Shanghai")
        assert left == 0 and hour[0]["bucket_end"] == t0 + timedelta(hours=1)
        day, left = kpi_rows(conn, ["m1"], "day", t0, end, False, "Asia/Shanghai")
        assert left == 0 and day[0]["bucket_end"] == t0 + timedelta(days=1)
        assert kpi_rows(conn, ["m1"], "day", t0, t0 + timedelta(hours=12), False, "Asia/Shanghai") == ([], 1)
        assert kpi_rows(conn, ["m1"], "shift", t0, end, True, "Asia/Shanghai") == ([], 1)  # its end is unknown
