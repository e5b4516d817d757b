"""Tier evidence without a database: rulebooks, evaluation, emission factors, periods, keys and DSSE."""

from __future__ import annotations

import base64
import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from api.evidence import carbon
from api.evidence.evaluate import Row, Window, evaluate, improvement, period_values
from api.evidence.pack import check_windows
from api.evidence.rulebook import get, load_all, parse_rulebook
from api.evidence.signing import keygen, load_private, load_public, sign_envelope
from core.errors import ConfigError, ShopfloorError

T = datetime(2026, 11, 1, tzinfo=UTC)


def test_shipped_rulebooks_one_per_scheme_with_province_in_id() -> None:
    books = load_all()
    assert set(books) == {"cn-national-smart-factory-tiers", "cn-gbt39116-maturity", "cn-zhejiang-smart-factory",
                          "cn-jiangsu-smart-factory", "cn-guangdong-proposed"}
    nat = books["cn-national-smart-factory-tiers"].rulebook
    assert [t.id for t in nat.tiers] == ["basic", "advanced", "excellent", "leading"]
    for lb in books.values():
        for c in lb.rulebook.criteria:
            assert c.status in ("verified", "secondary", "unverified", "proposed") and c.source


def test_guangdong_thresholds_are_marked_unverified_as_kpi_md_gives_them() -> None:
    gd = {c.id: c for c in get("cn-guangdong-proposed").rulebook.criteria}
    assert (gd["GD-NET-B"].metric, gd["GD-NET-B"].op, gd["GD-NET-B"].threshold) == ("networking_rate", ">=", 0.75)
    assert gd["GD-TWIN-E"].threshold == 0.80 and gd["GD-TWIN-E"].kind == "attested"
    assert {c.status for c in gd.values()} == {"unverified"}
    js = {c.id: c for c in get("cn-jiangsu-smart-factory").rulebook.criteria}
    assert js["JS-WEIGHTS"].status == "unverified" and js["JS-SELFTEST"].status == "verified"


def test_rulebook_error_names_file_line_and_field(tmp_path: Path) -> None:
    text = ("rulebook:\n  id: x-test\n  version: '1'\n  title: {en: a, zh: b}\n  jurisdiction: test\n"
            "  sources: {S1: {title: s}}\n  tiers: [{id: t1, name: {en: a, zh: b}}]\n  criteria:\n"
            "    - {id: C1, tier: t1, kind: threshold, metric: oee, op: '>=', threshold: 0.5,\n"
            "       title: {en: a, zh: b}, source: [S1], status: maybe}\n")
    with pytest.raises(ConfigError, match=r"^f.yaml:10: rulebook.criteria\[0\].status: "):
        parse_rulebook(text, "f.yaml")
    with pytest.raises(ConfigError, match=r"tier 'tx' is not one of"):
        parse_rulebook(text.replace("tier: t1", "tier: tx").replace("maybe", "verified"), "f.yaml")
    (tmp_path / "bad.yaml").write_text(text.replace("maybe", "verified").replace("metric: oee", "metric: nope"))
    with pytest.raises(ConfigError, match=r"bad.yaml:9: rulebook.criteria\[0\].metric: 'nope' is not a KPI"):
        load_all([tmp_path])


def test_user_rulebook_directory_and_unknown_id(tmp_path: Path) -> None:
    src = get("cn-guangdong-proposed").text.replace("cn-guangdong-proposed", "my-plant-targets")
    (tmp_path / "mine.yaml").write_text(src)
    assert "my-plant-targets" in load_all([tmp_path])
    with pytest.raises(ConfigError, match="unknown rulebook 'nope'"):
        get("nope")


def _rows(asset: str, values: dict[str, float | None], coverage: float = 1.0) -> list[Row]:
    return [Row(asset, k, "day", "2026-11-01T00:00:00+00:00", v, None if v is not None else "n/a", coverage)
            for k, v in values.items()]


def test_threshold_pass_fail_and_not_enough_data() -> None:
    book = get("cn-guangdong-proposed").rulebook
    w = Window("a", "b")
    for networked, want in ((3.0, "pass"), (2.0, "fail")):
        rep = period_values(_rows("p", {"networked_machines": networked, "production_machines": 4.0}), "p", "day",
                            False, None)
        ev = evaluate(book, rep, {}, w, None)
        c = next(c for c in ev["criteria"] if c["id"] == "GD-NET-B")
        assert (c["result"], c["value"], c["status_mark"]) == (want, networked / 4, "U")
        assert c["numerator"] == {"name": "networked_machines", "value": networked}
    low = period_values(_rows("p", {"networked_machines": 3.0, "production_machines": 4.0}, 0.5), "p", "day",
                        False, None)
    ev = evaluate(book, low, {}, w, None)
    assert ev["criteria"][0]["result"] == "not_enough_data" and "coverage 50.0%" in ev["criteria"][0]["why"]
    basic = next(t for t in ev["tiers"] if t["id"] == "basic")
    assert basic["readiness"] == "yellow" and basic["missing"][0]["id"] == "GD-NET-B"


def test_attested_criteria_wait_for_the_plant_then_compare() -> None:
    book = get("cn-guangdong-proposed").rulebook
    rep = period_values(_rows("p", {"networked_machines": 4.0, "production_machines": 4.0}), "p", "day", False, None)
    ev = evaluate(book, rep, {}, Window("a", "b"), None)
    twin = next(c for c in ev["criteria"] if c["id"] == "GD-TWIN-E")
    assert twin["result"] == "awaiting_attestation" and twin["attested_by"] == "plant"
    ev = evaluate(book, rep, {}, Window("a", "b"), None, {"GD-TWIN-E": {"value": 0.7, "attachment": "a.pdf"}})
    assert {t["id"]: t["readiness"] for t in ev["tiers"]} == {"basic": "blue", "excellent": "red"}


def test_weighted_review_uses_the_rulebook_weights() -> None:
    book = get("cn-jiangsu-smart-factory").rulebook
    scores = {"digital_design": 80, "intelligent_equipment": 70, "production_control": 60, "enterprise_mgmt": 90}
    ev = evaluate(book, {}, {}, Window("a", "b"), None, {"JS-WEIGHTS": {"scores": scores}})
    c = next(c for c in ev["criteria"] if c["id"] == "JS-WEIGHTS")
    assert c["value"] == pytest.approx(80 * 0.1479 + 70 * 0.2535 + 60 * 0.3576 + 90 * 0.2409)
    assert c["result"] == "reported" and c["status_mark"] == "U"


def test_improvement_direction() -> None:
    assert improvement(0.01, 0.02, "lower_is_better") == pytest.approx(0.5)
    assert improvement(0.9, 0.75, "higher_is_better") == pytest.approx(0.2)
    assert improvement(0.9, None, "higher_is_better") is None
    assert improvement(0.9, 0.0, "higher_is_better") is None


def test_emission_factor_by_region_and_period() -> None:
    f, why = carbon.choose("jiangsu", datetime(2026, 5, 1, tzinfo=UTC))
    assert (f.region, f.year, f.kg_per_kwh) == ("east-china", 2022, 0.5617) and "east-china grid" in why
    f, _ = carbon.choose("national", datetime(2021, 12, 1, tzinfo=UTC))
    assert (f.year, f.kg_per_kwh) == (2021, 0.5568)
    f, why = carbon.choose("guangdong", datetime(2021, 12, 1, tzinfo=UTC))
    assert f.kg_per_kwh == 0.3869 and "earliest published" in why
    fig = carbon.co2_figure(100.0, f, why)
    assert fig["co2_kg"] == pytest.approx(38.69) and fig["factor"]["year"] == 2022 and fig["factor"]["document"]
    with pytest.raises(ConfigError, match="no published average grid emission factor for region 'atlantis'"):
        carbon.choose("atlantis", T)


@pytest.mark.parametrize(("args", "msg"), [
    ((T, T, None, None), "is not after --from"),
    ((T, datetime(2099, 1, 1, tzinfo=UTC), None, None), "in the future"),
    ((datetime(2024, 1, 1, tzinfo=UTC), T, None, None), "longer than 366 days"),
    ((T.replace(month=10), T, T.replace(month=9), None), "give both"),
    ((T.replace(month=10), T, T.replace(month=9, day=15), T.replace(month=10, day=2)), "overlaps the report"),
])
def test_bad_periods_one_line(args: tuple[datetime, datetime, datetime | None, datetime | None], msg: str) -> None:
    with pytest.raises(ShopfloorError, match=msg):
        check_windows(*args, now=datetime(2026, 12, 1, tzinfo=UTC))


def test_keygen_modes_and_formats(tmp_path: Path) -> None:
    priv, pub = keygen(tmp_path / "k")
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert pub.read_text().startswith("-----BEGIN PUBLIC KEY-----")  # SubjectPublicKeyInfo
    load_private(priv), load_public(pub)
    with pytest.raises(ShopfloorError, match="exists already"):
        keygen(tmp_path / "k")
    with pytest.raises(ShopfloorError, match="not a PEM public key"):
        load_public(_write(tmp_path / "x.pem", b"hello"))


def _write(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p


def independent_dsse_verify(envelope: dict[str, object], pub_pem: bytes) -> bytes:
    """DSSE v1 verification written from the specification, independent of the product's code."""
    payload = base64.b64decode(str(envelope["payload"]))
    ptype = str(envelope["payloadType"]).encode()
    pae = b"DSSEv1 " + str(len(ptype)).encode() + b" " + ptype + b" " + str(len(payload)).encode() + b" " + payload
    key = serialization.load_pem_public_key(pub_pem)
    assert isinstance(key, Ed25519PublicKey)
    sigs = envelope["signatures"]
    assert isinstance(sigs, list)
    key.verify(base64.b64decode(sigs[0]["sig"]), pae)  # raises InvalidSignature
    return payload


def test_envelope_verifies_with_an_independent_implementation(tmp_path: Path) -> None:
    priv, pub = keygen(tmp_path)
    body = json.dumps({"_type": "https://in-toto.io/Statement/v1"}).encode()
    env = sign_envelope(body, load_private(priv))
    assert independent_dsse_verify(env, pub.read_bytes()) == body


def test_cli_pack_bad_input_is_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.evidence_data import write_plant

    plant = write_plant(tmp_path, 1)
    priv, pub = keygen(tmp_path / "k")
    base = [sys.executable, "-m", "shopfloor.cli", "evidence", "pack", "--config", str(plant), "--database-url",
            "postgresql://nobody@127.0.0.1:1/none", "--scope", "ev-plant", "--out", str(tmp_path / "p.zip")]
    cases = [
        (["--rulebook", "nope", "--from", "2026-01-01", "--to", "2026-02-01", "--key", str(priv)], "unknown rulebook"),
        (["--rulebook", "cn-guangdong-proposed", "--from", "2026-02-01", "--to", "2026-01-01", "--key", str(priv)],
         "is not after --from"),
        (["--rulebook", "cn-guangdong-proposed", "--from", "2026-01-01", "--to", "2026-02-01", "--key", str(pub)],
         "not an unencrypted PEM private key"),
        (["--rulebook", "cn-guangdong-proposed", "--from", "yesterday", "--to", "2026-02-01", "--key", str(priv)],
         "is not an ISO 8601 time"),
    ]
    for args, msg in cases:
        r = subprocess.run([*base, *args], capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and msg in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) <= 2, r.stderr  # the error line (after "building evidence pack")


def test_cli_rulebooks_lists_ids_and_names_a_bad_user_file(tmp_path: Path) -> None:
    import subprocess
    import sys

    exe = [sys.executable, "-m", "shopfloor.cli", "evidence", "rulebooks"]
    ok = subprocess.run(exe, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "cn-guangdong-proposed" in ok.stdout and "2025.1" in ok.stdout
    (tmp_path / "x.yaml").write_text("rulebook:\n  id: x\n  version: '1'\n  colour: red\n")
    bad = subprocess.run([*exe, "--rulebooks", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert f"{tmp_path / 'x.yaml'}:4: rulebook.colour: unknown key" in bad.stderr
