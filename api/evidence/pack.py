"""Build a signed evidence pack (zip) for one rulebook, scope and period, with a frozen baseline period."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from api.evidence.signing import dumps, load_private, sign_envelope, statement
from core.errors import ConfigError, ShopfloorError

log = logging.getLogger(__name__)
FORMAT = "shopfloor-evidence/1"
MAX_PERIOD = timedelta(days=366)
ATTESTATION = "attestation.intoto.jsonl"


@dataclass
class PackRequest:
    config: Path
    database_url: str
    rulebook: str
    scope: str
    start: datetime
    end: datetime
    key: Path
    out: Path
    baseline_start: datetime | None = None
    baseline_end: datetime | None = None
    bucket: str = "day"
    region: str = "national"
    attestations: Path | None = None
    rulebook_dirs: list[Path] = field(default_factory=list)
    min_coverage: float = 0.9
    refresh: bool = False  # recompute the windows' KPI rows (kpi backfill up to `end`) before reading them
    raw_out: Path | None = None  # also write the raw-data export of the pack's window here (api.export)
    raw_format: str = "parquet"
    plant_text: str | None = None  # the plant file as used, when the caller holds it already (the API)
    tsa_url: str | None = None  # RFC 3161 timestamp authority for the pack's checkpoint
    now: datetime | None = None


def check_windows(start: datetime, end: datetime, bstart: datetime | None, bend: datetime | None,
                  now: datetime) -> None:
    """Report and baseline periods: ordered, not in the future, not over-long, not overlapping."""
    if end <= start:
        raise ShopfloorError(f"period: --to {end.isoformat()} is not after --from {start.isoformat()}")
    if end > now:
        raise ShopfloorError(f"period: --to {end.isoformat()} is in the future (now {now.isoformat()})")
    if end - start > MAX_PERIOD:
        raise ShopfloorError(f"period: {(end - start).days} days is longer than {MAX_PERIOD.days} days")
    if (bstart is None) != (bend is None):
        raise ShopfloorError("baseline: give both --baseline-from and --baseline-to, or neither")
    if bstart is not None and bend is not None:
        if bend <= bstart:
            raise ShopfloorError("baseline: --baseline-to is not after --baseline-from")
        if bend - bstart > MAX_PERIOD:
            raise ShopfloorError(f"baseline: {(bend - bstart).days} days is longer than {MAX_PERIOD.days} days")
        if bstart < end and start < bend:
            raise ShopfloorError("baseline: the baseline period overlaps the report period")


def _attestations(path: Path | None) -> tuple[dict[str, Any], dict[str, bytes]]:
    """criterion id -> {value, attachment, scores}; attachment files (read now, stored under attachments/)."""
    if path is None:
        return {}, {}
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read attestations ({exc})") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}:1: attestations must map criterion ids to {{value, attachment}}")
    files: dict[str, bytes] = {}
    for cid, att in doc.items():
        if not isinstance(att, dict):
            raise ConfigError(f"{path}: {cid}: expected a mapping with value / attachment / scores")
        if att.get("attachment"):
            p = (path.parent / str(att["attachment"])).resolve()
            try:
                files[f"attachments/{p.name}"] = p.read_bytes()
            except OSError as exc:
                raise ConfigError(f"{path}: {cid}.attachment: cannot read {p} ({exc.strerror})") from exc
            att["attachment"] = f"attachments/{p.name}"
    return doc, files


def _carbon(rep: dict[str, Any], base: dict[str, Any] | None, region: str, end: datetime,
            bend: datetime | None) -> dict[str, Any]:
    from api.evidence.carbon import choose, co2_figure

    f, why = choose(region, end)
    out: dict[str, Any] = {"report": co2_figure(rep.get("energy_kwh", {}).get("value"), f, why)}
    if base is not None and bend is not None:
        bf, bwhy = choose(region, bend)
        out["baseline"] = co2_figure(base.get("energy_kwh", {}).get("value"), bf, bwhy)
        out["same_factor"] = bf.id == f.id and bf.kg_per_kwh == f.kg_per_kwh
    return out


def _refresh(req: PackRequest, cfg: Any) -> dict[str, str]:
    """Backfill both periods; per period the instant the KPI job computed up to (what a recompute must use)."""
    from kpi.job import backfill

    until: dict[str, str] = {}
    for name, s, e in (("report", req.start, req.end), ("baseline", req.baseline_start, req.baseline_end)):
        if s is not None and e is not None:
            log.info("event=evidence_refresh from=%s to=%s", s.isoformat(), e.isoformat())
            until[name] = backfill(req.database_url, cfg, s, e).until.astimezone(UTC).isoformat()
    return until


@dataclass
class _Read:
    """What the pack reads from the database."""

    rows: list[dict[str, Any]]
    brows: list[dict[str, Any]]
    left_open: int
    ex_start: datetime
    ex_end: datetime
    devices: list[str]
    entries: list[Any]
    checkpoints: list[dict[str, Any]]
    tokens: list[dict[str, str]]
    register: list[dict[str, Any]]


def _load_plant(req: PackRequest) -> tuple[Any, str]:
    from core.config import load_config, parse_config

    if req.plant_text is not None:
        return parse_config(req.plant_text, str(req.config)), req.plant_text
    return load_config(req.config), req.config.read_text(encoding="utf-8")


def _read(req: PackRequest, cfg: Any, machines: list[str], is_machine: bool, key: Any, now: datetime) -> _Read:
    """KPI rows of both periods, the raw window a recompute needs, its ledger slice, checkpoints, register."""
    import psycopg

    from api.evidence import collect, rawdata
    from api.evidence.checkpoints import make_checkpoint, stored_checkpoints, stored_tokens

    assets = machines if is_machine else [*machines, req.scope]
    with psycopg.connect(req.database_url, autocommit=True) as conn:
        tz = cfg.plant.timezone
        rows, left = collect.kpi_rows(conn, assets, req.bucket, req.start, req.end, req.refresh, tz)
        brows: list[dict[str, Any]] = []
        if req.baseline_start and req.baseline_end:
            brows, bleft = collect.kpi_rows(conn, assets, req.bucket, req.baseline_start, req.baseline_end,
                                            req.refresh, tz)
            left += bleft
        last_end = max([req.end, *([req.baseline_end] if req.baseline_end else []),
                        *(r["bucket_end"] for r in rows + brows)])
        ex_start = rawdata.floor_hour(min(req.start, req.baseline_start or req.start) - collect.LOOKBACK)
        ex_end = min(rawdata.ceil_hour(last_end + collect.LOOKAHEAD), rawdata.ceil_hour(now))
        devices = sorted({m.device for m in cfg.machines() if m.id in machines and m.device})
        entries = collect.ledger_slice(conn, devices, ex_start, ex_end)
        make_checkpoint(conn, key, cfg.plant.id, now, req.tsa_url)
        return _Read(rows, brows, left, ex_start, ex_end, devices, entries, stored_checkpoints(conn, ex_start),
                     stored_tokens(conn, ex_start), collect.register(conn, cfg, req.scope, req.start, req.end))


def _manifest(req: PackRequest, cfg: Any, book: Any, machines: list[str], is_machine: bool, r: _Read,
              now: datetime) -> dict[str, Any]:
    from api.evidence.carbon import table_version
    from kpi.catalog import DEFINITION_VERSION
    from kpi.rows import code_version

    def iso(t: datetime | None) -> str | None:
        return t.astimezone(UTC).isoformat() if t else None

    return {
        "format": FORMAT, "plant_id": cfg.plant.id, "scope": req.scope, "scope_is_machine": is_machine,
        "machines": machines, "devices": r.devices, "bucket": req.bucket, "from": iso(req.start), "to": iso(req.end),
        "baseline_from": iso(req.baseline_start), "baseline_to": iso(req.baseline_end),
        "kpi_until": None,  # {period: instant} when the pack recomputed the periods' KPIs (--refresh-kpis)
        "raw_export": {"from": r.ex_start.isoformat(), "to": r.ex_end.isoformat(), "devices": r.devices,
                       "command": f"shopfloor export --config PLANT --database-url DB --scope {req.scope} "
                                  f"--from {r.ex_start.isoformat()} --to {r.ex_end.isoformat()} --out DIR"},
        "rows_left_out_open_buckets": r.left_open, "created_at": now.isoformat(), "code_version": code_version(),
        "definition_version": DEFINITION_VERSION, "emission_factor_table": table_version(),
        "rulebook": {"id": book.rulebook.id, "version": book.rulebook.version,
                     "sha256": hashlib.sha256(book.text.encode()).hexdigest()},
        "region": req.region, "min_coverage": req.min_coverage}


def build(req: PackRequest) -> dict[str, Any]:
    """Read, evaluate, sign and write the pack; returns the manifest."""
    from api.evidence import collect, report
    from api.evidence.rulebook import get

    now = (req.now or datetime.now(UTC)).astimezone(UTC)
    check_windows(req.start, req.end, req.baseline_start, req.baseline_end, now)
    if req.bucket not in ("hour", "shift", "day"):
        raise ShopfloorError(f"--bucket {req.bucket!r}: use hour, shift or day")
    cfg, plant_text = _load_plant(req)
    book = get(req.rulebook, req.rulebook_dirs)
    key = load_private(req.key)
    machines, is_machine = collect.scope_assets(cfg, req.scope)
    atts, att_files = _attestations(req.attestations)
    until = _refresh(req, cfg) if req.refresh else {}
    r = _read(req, cfg, machines, is_machine, key, now)
    if req.raw_out is not None:
        from api.export import export_scope

        export_scope(req.database_url, cfg, req.scope, r.ex_start, r.ex_end, req.raw_out, req.raw_format)
    rows_j, brows_j = collect.rows_json(r.rows), collect.rows_json(r.brows)
    manifest = _manifest(req, cfg, book, machines, is_machine, r, now)
    manifest["kpi_until"] = until or None
    ev, carbon, rates = evaluation(book.rulebook, manifest, rows_j, brows_j, atts, cfg.plant.emission_factor_kg_per_kwh)
    files: dict[str, bytes] = {
        "manifest.json": dumps(manifest), "evaluation.json": dumps(ev), "rates.json": dumps(rates),
        "carbon.json": dumps(carbon), "attestations.json": dumps(atts),
        "kpi_rows.json": dumps({"report": rows_j, "baseline": brows_j}),
        "rulebook.yaml": book.text.encode(), "plant.yaml": plant_text.encode(), "register.json": dumps(r.register),
        "version.json": dumps({k: manifest[k] for k in ("code_version", "definition_version",
                                                         "emission_factor_table", "rulebook")}),
        "ledger/entries.csv": _ledger_csv(r.entries),
        "ledger/checkpoints.jsonl": "".join(json.dumps(c, sort_keys=True) + "\n" for c in r.checkpoints).encode(),
        "ledger/timestamps.jsonl": "".join(json.dumps(t, sort_keys=True) + "\n" for t in r.tokens).encode(),
        "kpi_values.kpiml.xml": report.kpiml_values(rows_j + brows_j).encode(),
        "annex.csv": report.annex_csv(ev).encode("utf-8-sig"),
        "report.html": report.report_html(ev, manifest, carbon).encode(), **att_files}
    write_zip(req.out, files, statement(files, summary(ev, manifest)), key)
    log.info("event=evidence_pack out=%s rows=%d ledger_entries=%d", req.out, len(rows_j) + len(brows_j),
             len(r.entries))
    return manifest


def evaluation(book: Any, manifest: dict[str, Any], rows: list[dict[str, Any]], brows: list[dict[str, Any]],
               atts: dict[str, Any], _plant_ef: float | None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The evaluation, carbon figures and per-period rates from KPI rows (also run again by verify)."""
    from api.evidence.carbon import choose
    from api.evidence.evaluate import Row, Window, evaluate, period_values

    def conv(rs: list[dict[str, Any]]) -> list[Row]:
        return [Row(r["asset_id"], r["kpi"], r["bucket"], r["bucket_start"], r["value"], r["null_reason"],
                    r["coverage"]) for r in rs]

    end = datetime.fromisoformat(manifest["to"])
    f, _ = choose(manifest["region"], end)
    rep = period_values(conv(rows), manifest["scope"], manifest["bucket"], manifest["scope_is_machine"], f.kg_per_kwh)
    base = None
    if manifest["baseline_from"]:
        bf, _ = choose(manifest["region"], datetime.fromisoformat(manifest["baseline_to"]))
        base = period_values(conv(brows), manifest["scope"], manifest["bucket"], manifest["scope_is_machine"],
                             bf.kg_per_kwh)
    win = Window(manifest["from"], manifest["to"])
    bwin = Window(manifest["baseline_from"], manifest["baseline_to"]) if manifest["baseline_from"] else None
    ev = evaluate(book, rep, base or {}, win, bwin, atts, manifest["min_coverage"])
    carbon = _carbon(rep, base, manifest["region"], end,
                     datetime.fromisoformat(manifest["baseline_to"]) if manifest["baseline_to"] else None)
    for c in ev["criteria"]:
        if c["metric"] in ("co2_kg", "co2_per_good_unit_kg"):  # every CO2 figure names its factor
            c["emission_factor"] = {p: {k: carbon[p]["factor"][k] for k in ("id", "kg_per_kwh", "document", "year")}
                                    for p in ("report", "baseline") if p in carbon}
            c["same_factor"] = carbon.get("same_factor")
    return ev, carbon, {"report": rep, "baseline": base}


def summary(ev: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """The in-toto predicate: what was evaluated and the outcome per tier and criterion."""
    return {"plant_id": manifest["plant_id"], "scope": manifest["scope"], "rulebook": ev["rulebook"],
            "period": {"from": manifest["from"], "to": manifest["to"]},
            "baseline": {"from": manifest["baseline_from"], "to": manifest["baseline_to"]},
            "tiers": [{"id": t["id"], "readiness": t["readiness"]} for t in ev["tiers"]],
            "criteria": [{"id": c["id"], "result": c["result"], "status": c["status"], "value": c.get("value")}
                         for c in ev["criteria"]],
            "code_version": manifest["code_version"], "created_at": manifest["created_at"]}


def _ledger_csv(entries: list[Any]) -> bytes:
    import tempfile

    from api.evidence.rawdata import write_ledger_csv

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "e.csv"
        write_ledger_csv(p, entries)
        return p.read_bytes()


def write_zip(out: Path, files: dict[str, bytes], stmt: dict[str, Any], key: Any) -> None:
    """The files, then attestation.intoto.jsonl (one DSSE envelope per line) at the zip root."""
    env = sign_envelope(dumps(stmt), key)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(files):
            z.writestr(name, files[name])
        z.writestr(ATTESTATION, json.dumps(env, sort_keys=True) + "\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(buf.getvalue())
