"""Evidence packs against the real database: pack -> verify passes; every kind of tampering is caught and named."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from api.evidence.pack import ATTESTATION, PackRequest, build, statement, write_zip
from api.evidence.signing import keygen, load_private
from api.evidence.verify import Check, verify
from collector.db import migrate
from core.config import load_config
from kpi.job import backfill
from shopfloor.stages import schema_dirs
from tests import evidence_data as D
from tests.conftest import _make_db, drop_db
from tests.test_evidence import independent_dsse_verify

pytestmark = pytest.mark.integration
N = 2


@dataclass
class Built:
    url: str
    tmp: Path
    pack: Path
    pub: Path
    priv: Path
    raw: Path
    plant: Path


def make(url: str, tmp: Path, out: str = "pack.zip", fmt: str = "csv") -> Built:
    """Two machines, a day of baseline and a day of report period, KPIs backfilled, a pack with its export."""
    migrate(url, log=lambda _: None, schema_dirs=schema_dirs())
    d0 = D.day0(8)
    D.load(url, N, d0 - timedelta(days=1), d0 + timedelta(days=4), step_s=120)
    plant = D.write_plant(tmp, N)
    cfg = load_config(plant)
    backfill(url, cfg, d0, d0 + timedelta(days=1))
    backfill(url, cfg, d0 + timedelta(days=2), d0 + timedelta(days=3))
    priv, pub = keygen(tmp / "keys")
    (tmp / "maturity-report.pdf").write_bytes(b"%PDF-1.4 assessment report")
    (tmp / "attest.yaml").write_text("G-CMMM-B: {value: 2, attachment: maturity-report.pdf}\n"
                                     "G-CMMM-E: {value: 2, attachment: maturity-report.pdf}\n")
    req = PackRequest(plant, url, "cn-national-smart-factory-tiers", "ev-plant", d0 + timedelta(days=2),
                      d0 + timedelta(days=3), priv, tmp / out, d0, d0 + timedelta(days=1), region="jiangsu",
                      attestations=tmp / "attest.yaml", raw_out=tmp / "raw", raw_format=fmt)
    build(req)
    return Built(url, tmp, tmp / out, pub, priv, tmp / "raw", plant)


def failing(checks: list[Check]) -> dict[str, list[str]]:
    return {c.name: c.problems for c in checks if not c.ok}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    url = _make_db("plain")
    try:
        yield make(url, tmp_path_factory.mktemp("ev"))
    finally:
        drop_db(url)


def test_round_trip_pack_then_verify_passes(db: str, tmp_path: Path) -> None:
    b = make(db, tmp_path, fmt="parquet")
    checks = verify(b.pack, b.pub, b.raw)
    assert failing(checks) == {}
    names = [c.name for c in checks]
    assert names == ["signature", "subjects", "ledger chain", "checkpoints", "timestamps", "evaluation",
                     "raw rows vs ledger", "KPI recompute"]
    kpis = next(c for c in checks if c.name == "KPI recompute")
    assert int(kpis.detail.split()[0]) > 100  # machine and plant rows of both periods, every one recomputed


def test_pack_contents_and_independent_dsse_check(built: Built) -> None:
    with zipfile.ZipFile(built.pack) as z:
        names = set(z.namelist())
        env = json.loads(z.read(ATTESTATION).decode().splitlines()[0])
        files = {n: z.read(n) for n in names}
    assert {"evaluation.json", "kpi_rows.json", "rulebook.yaml", "plant.yaml", "version.json", "ledger/entries.csv",
            "ledger/checkpoints.jsonl", "kpi_values.kpiml.xml", "annex.csv", "report.html", "rates.json",
            "register.json", "carbon.json", ATTESTATION} <= names
    stmt = json.loads(independent_dsse_verify(env, built.pub.read_bytes()))
    assert env["payloadType"] == "application/vnd.in-toto+json"
    assert stmt["_type"] == "https://in-toto.io/Statement/v1" and stmt["predicateType"].startswith("https://")
    import hashlib

    assert {s["name"]: s["digest"]["sha256"] for s in stmt["subject"]} == {
        n: hashlib.sha256(b).hexdigest() for n, b in files.items() if n != ATTESTATION}
    assert {t["id"] for t in stmt["predicate"]["tiers"]} == {"basic", "advanced", "excellent", "leading"}
    carbon = json.loads(files["carbon.json"])
    assert carbon["report"]["factor"]["id"] == "east-china/2022/average" and carbon["same_factor"] is True
    html = files["report.html"].decode()
    assert "就绪度" in html and "Readiness" in html and "<script" not in html and "http" not in html.split("<body>")[0]
    rows = json.loads(files["kpi_rows.json"])["report"]
    assert {"revision", "coverage", "provenance", "input_rows"} <= set(rows[0])
    assert b"<KPIValue>" in files["kpi_values.kpiml.xml"]
    assert files["attachments/maturity-report.pdf"].startswith(b"%PDF")
    ev = {c["id"]: c for c in json.loads(files["evaluation.json"])["criteria"]}
    assert (ev["G-CMMM-B"]["result"], ev["G-CMMM-B"]["attachment"]) == ("pass", "attachments/maturity-report.pdf")
    assert ev["G-CMMM-E"]["result"] == "fail" and ev["G-CMMM-E"]["status_mark"] == "V"
    co2 = ev["EV-E-CARBON"]
    assert co2["emission_factor"]["report"]["id"] == "east-china/2022/average" and co2["same_factor"] is True
    assert co2["emission_factor"]["baseline"]["document"].startswith("生态环境部")
    tiers = {t["id"]: t["readiness"] for t in json.loads(files["evaluation.json"])["tiers"]}
    assert tiers["excellent"] == "red" and tiers["basic"] == "yellow"  # basic still awaits attested items
    assert "EV-B-PROD-01" in files["annex.csv"].decode("utf-8-sig")


def _rewrite(src: Path, dst: Path, name: str, change: bytes | None) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for n in zin.namelist():
            data = zin.read(n)
            if n == name:
                if change is None:
                    continue
                data = change
            zout.writestr(n, data)


def test_one_flipped_byte_in_each_file_is_named(built: Built, tmp_path: Path) -> None:
    with zipfile.ZipFile(built.pack) as z:
        names = [n for n in z.namelist() if n != ATTESTATION]
        contents = {n: z.read(n) for n in z.namelist()}
    for name in names:
        data = bytearray(contents[name] or b"\n")  # an empty file (no RFC 3161 tokens) gets one byte instead
        if contents[name]:
            data[len(data) // 2] ^= 0x01
        bad = tmp_path / "bad.zip"
        _rewrite(built.pack, bad, name, bytes(data))
        f = failing(verify(bad, built.pub))
        assert f.get("subjects") == [f"{name}: SHA-256 differs from the signed statement (file altered)"], name
    env = bytearray(contents[ATTESTATION])
    i = env.index(b'"sig": "') + 12
    env[i] = ord("A") if env[i] != ord("A") else ord("B")
    _rewrite(built.pack, tmp_path / "bad.zip", ATTESTATION, bytes(env))
    assert "signature does not verify" in failing(verify(tmp_path / "bad.zip", built.pub))["signature"][0]


def _copy_raw(built: Built, tmp: Path) -> tuple[Path, list[str]]:
    raw = tmp / "raw"
    shutil.copytree(built.raw, raw)
    return raw, (raw / "samples.csv").read_text().splitlines()


def test_dropped_or_changed_raw_row_names_device_and_hour(built: Built, tmp_path: Path) -> None:
    raw, lines = _copy_raw(built, tmp_path)
    victim = lines[len(lines) // 2]
    ts, dev = victim.split(",")[:2]
    hour = ts[:13] + ":00:00Z"
    (raw / "samples.csv").write_text("\n".join(x for x in lines if x != victim) + "\n")
    f = failing(verify(built.pack, built.pub, raw))
    assert any(p.startswith(f"device {dev} hour {hour}: export has") for p in f["raw rows vs ledger"])
    cells = victim.split(",")
    cells[3] = repr(float(cells[3]) + 1)
    (raw / "samples.csv").write_text("\n".join(",".join(cells) if x == victim else x for x in lines) + "\n")
    f = failing(verify(built.pack, built.pub, raw))
    assert f["raw rows vs ledger"] == [
        "samples.csv: SHA-256 differs from the export's manifest.json (changed after export)",
        f"device {dev} hour {hour}: rows differ from what ledger rev 1 sealed (a value, tag, time or quality was changed)"]


def test_changed_kpi_row_resigned_with_another_key(built: Built, tmp_path: Path) -> None:
    with zipfile.ZipFile(built.pack) as z:
        files = {n: z.read(n) for n in z.namelist() if n != ATTESTATION}
    rows = json.loads(files["kpi_rows.json"])
    row = next(r for r in rows["report"] if r["kpi"] == "oee" and r["value"] is not None and r["asset_id"] == "m1")
    row["value"] += 0.01
    files["kpi_rows.json"] = json.dumps(rows).encode()
    other, _ = keygen(tmp_path / "other")
    forged = tmp_path / "forged.zip"
    write_zip(forged, files, statement(files, {}), load_private(other))
    f = failing(verify(forged, built.pub, built.raw))
    assert "signature does not verify with the given public key" in f["signature"][0]
    # even signed by the right key, the recompute names the changed value
    write_zip(forged, files, statement(files, {}), load_private(built.priv))
    f = failing(verify(forged, built.pub, built.raw))
    assert set(f) == {"KPI recompute"}  # the evaluation reads the plant's rows, which m1's change does not touch
    assert f["KPI recompute"][0].startswith(f"KPI oee of m1 day {row['bucket_start']}: pack {row['value']!r}")


def test_rewritten_ledger_caught_by_an_earlier_checkpoint(tmp_path: Path) -> None:
    url = _make_db("plain")
    try:
        b = make(url, tmp_path)
        held = tmp_path / "held.jsonl"
        with zipfile.ZipFile(b.pack) as z:
            held.write_bytes(z.read("ledger/checkpoints.jsonl"))
        from collector.ledger import GENESIS, entry_hash, ledger_entries

        with psycopg.connect(url, autocommit=True) as conn:  # whoever runs the database rewrites history
            conn.execute("DELETE FROM samples WHERE ctid IN (SELECT ctid FROM samples WHERE device_id = 'd1' "
                         "ORDER BY ts LIMIT 1 OFFSET 3000)")
            conn.execute("DELETE FROM ledger_checkpoints")
            conn.execute("DELETE FROM ingest_ledger")
            from datetime import UTC, datetime

            from collector.ledger import seal_hours

            seal_hours(conn, datetime.now(UTC))
            assert ledger_entries(conn, "d1")[0].prev_hash == GENESIS and entry_hash
        b2_pack = tmp_path / "again.zip"
        cfg_req = PackRequest(b.plant, url, "cn-national-smart-factory-tiers", "ev-plant", D.day0(8) + timedelta(days=2),
                              D.day0(8) + timedelta(days=3), b.priv, b2_pack, raw_out=tmp_path / "raw2")
        build(cfg_req)
        assert failing(verify(b2_pack, b.pub)) == {}  # consistent on its own ...
        f = failing(verify(b2_pack, b.pub, checkpoints=held))  # ... but not with what the certifier kept
        assert "ledger rewritten since" in f["checkpoints"][0]
    finally:
        drop_db(url)


def test_cli_exit_codes_and_one_line_errors(built: Built, tmp_path: Path) -> None:
    exe = [sys.executable, "-m", "shopfloor.cli"]
    ok = subprocess.run([*exe, "evidence", "verify", str(built.pack), "--key", str(built.pub), "--raw", str(built.raw)],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "all checks passed" in ok.stdout
    (tmp_path / "x.zip").write_text("not a zip")
    bad = subprocess.run([*exe, "evidence", "verify", str(tmp_path / "x.zip"), "--key", str(built.pub)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "not an evidence pack" in bad.stderr
    key = subprocess.run([*exe, "evidence", "verify", str(built.pack), "--key", str(built.priv)],
                         capture_output=True, text=True, timeout=60)
    assert key.returncode == 1 and "not a PEM public key" in key.stderr and "Traceback" not in key.stderr
    other = tmp_path / "raw"
    shutil.copytree(built.raw, other)
    m = json.loads((other / "manifest.json").read_text())
    m["devices"] = ["d1"]
    (other / "manifest.json").write_text(json.dumps(m))
    scope = subprocess.run([*exe, "evidence", "verify", str(built.pack), "--key", str(built.pub), "--raw", str(other)],
                           capture_output=True, text=True, timeout=60)
    assert scope.returncode == 1 and "export lacks devices d2" in scope.stderr and "Traceback" not in scope.stderr


def test_verify_runs_without_the_web_stack(built: Built) -> None:
    code = ("import sys\nfor m in ('fastapi', 'starlette', 'uvicorn', 'psycopg_pool'): sys.modules[m] = None\n"
            "from pathlib import Path\nfrom api.evidence.verify import verify\n"
            f"cs = verify(Path({str(built.pack)!r}), Path({str(built.pub)!r}), Path({str(built.raw)!r}))\n"
            "assert all(c.ok for c in cs), [c.problems for c in cs]\nprint('verified', len(cs))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("verified"), r.stderr


def test_ledger_slice_ends_at_the_first_checkpoint_after_the_window(built: Built) -> None:
    from datetime import UTC, datetime

    from api.evidence.collect import ledger_slice
    from collector.ledger import seal_hours

    start, end = D.day0(8) - timedelta(days=1), D.day0(8) + timedelta(days=1)
    with psycopg.connect(built.url, autocommit=True) as conn:
        before = ledger_slice(conn, ["d1"], start, end)
        signed = conn.execute("SELECT (heads->'d1'->>'chain_seq')::int FROM ledger_checkpoints "
                              "ORDER BY created_at LIMIT 1").fetchone()
        later = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
        conn.execute("INSERT INTO samples (ts, device_id, tag, value) VALUES (%s, 'd1', 'status', 1)", (later,))
        seal_hours(conn, datetime.now(UTC))
        after = ledger_slice(conn, ["d1"], start, end)
    assert signed is not None and before[-1].chain_seq == signed[0]
    assert after == before  # the entry sealed after the checkpoint is not needed to vouch for the window


def test_shift_buckets_round_trip(built: Built, tmp_path: Path) -> None:
    d0 = D.day0(8)
    req = PackRequest(built.plant, built.url, "cn-guangdong-proposed", "line-1", d0 + timedelta(days=2),
                      d0 + timedelta(days=3), built.priv, tmp_path / "shift.zip", bucket="shift",
                      raw_out=tmp_path / "raw", raw_format="csv")
    build(req)
    checks = verify(tmp_path / "shift.zip", built.pub, tmp_path / "raw")
    assert failing(checks) == {}
    with zipfile.ZipFile(tmp_path / "shift.zip") as z:
        rows = json.loads(z.read("kpi_rows.json"))["report"]
    assert {r["shift_name"] for r in rows} == {"day"} and {r["asset_id"] for r in rows} >= {"line-1", "m1"}
