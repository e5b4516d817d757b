"""`shopfloor evidence verify`: check a pack with no database and no web stack; name every part that fails."""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from api.evidence.pack import ATTESTATION, FORMAT
from api.evidence.signing import PREDICATE_TYPE, STATEMENT_TYPE, SignatureError, load_public, open_envelope
from core.errors import ShopfloorError


@dataclass
class Check:
    name: str
    problems: list[str] = field(default_factory=list)
    detail: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Pack:
    files: dict[str, bytes]
    path: Path
    parsed: dict[str, Any] = field(default_factory=dict)  # each JSON file parsed once (the checks only read)

    def json(self, name: str) -> Any:
        if name in self.parsed:
            return self.parsed[name]
        if name not in self.files:
            raise ShopfloorError(f"{self.path}: {name} is missing from the pack")
        try:
            self.parsed[name] = json.loads(self.files[name])
        except ValueError as exc:
            raise ShopfloorError(f"{self.path}: {name} is not JSON ({exc})") from exc
        return self.parsed[name]


def open_pack(path: Path) -> Pack:
    try:
        with zipfile.ZipFile(path) as z:
            return Pack({n: z.read(n) for n in z.namelist() if not n.endswith("/")}, path)
    except FileNotFoundError as exc:
        raise ShopfloorError(f"{path}: no such file") from exc
    except (zipfile.BadZipFile, OSError) as exc:
        raise ShopfloorError(f"{path}: not an evidence pack (not a zip file: {exc})") from exc


def check_attestation(pack: Pack, key: Any) -> tuple[Check, Check, dict[str, Any] | None]:
    """The DSSE signature over the statement, then every subject's SHA-256 against the pack's files."""
    sig, subj = Check("signature"), Check("subjects")
    raw = pack.files.get(ATTESTATION)
    if raw is None:
        sig.problems.append(f"{ATTESTATION}: missing from the pack root")
        return sig, subj, None
    try:
        env = json.loads(raw.decode().splitlines()[0])
        stmt = json.loads(open_envelope(env, key, ATTESTATION))
    except SignatureError as exc:
        sig.problems.append(str(exc))
        return sig, subj, None
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        sig.problems.append(f"{ATTESTATION}: not a DSSE envelope in JSON lines ({exc})")
        return sig, subj, None
    if stmt.get("_type") != STATEMENT_TYPE or stmt.get("predicateType") != PREDICATE_TYPE:
        sig.problems.append(f"{ATTESTATION}: not an in-toto Statement v1 with predicateType {PREDICATE_TYPE}")
    want = {s["name"]: s["digest"]["sha256"] for s in stmt.get("subject", [])}
    have = {n for n in pack.files if n != ATTESTATION}
    for name in sorted(have | set(want)):
        if name not in want:
            subj.problems.append(f"{name}: in the pack but not signed (file added)")
        elif name not in have:
            subj.problems.append(f"{name}: signed but missing from the pack (file removed)")
        elif hashlib.sha256(pack.files[name]).hexdigest() != want[name]:
            subj.problems.append(f"{name}: SHA-256 differs from the signed statement (file altered)")
    subj.detail = f"{len(want)} files"
    return sig, subj, stmt


def check_timestamps(pack: Pack, tsa_root: Path | None) -> Check:
    """RFC 3161 tokens over the pack's checkpoints, when the certifier gives the TSA's root certificate."""
    from api.evidence.checkpoints import check_tokens

    c = Check("timestamps")
    lines = pack.files.get("ledger/timestamps.jsonl", b"").decode().splitlines()
    tokens = [json.loads(line) for line in lines if line.strip()]
    if tsa_root is None:
        c.detail = f"{len(tokens)} RFC 3161 tokens, not checked (give --tsa-root)"
        return c
    envs = [json.loads(line) for line in pack.files.get("ledger/checkpoints.jsonl", b"").decode().splitlines() if line]
    c.problems, c.detail = check_tokens(envs, tokens, tsa_root)
    return c


def check_ledger(pack: Pack, key: Any, extra: Path | None, plant_id: str) -> tuple[Check, Check, list[Any]]:
    from api.evidence.checkpoints import check
    from api.evidence.rawdata import ExportError, check_chain_slice, read_ledger_csv

    chain, cps = Check("ledger chain"), Check("checkpoints")
    try:
        entries = read_ledger_csv(pack.files.get("ledger/entries.csv", b"").decode(), "ledger/entries.csv")
    except ExportError as exc:
        chain.problems.append(str(exc))
        return chain, cps, []
    chain.problems += check_chain_slice(entries)
    chain.detail = f"{len(entries)} entries"
    envs = [json.loads(line) for line in pack.files.get("ledger/checkpoints.jsonl", b"").decode().splitlines() if line]
    problems, compared = check(envs, key, entries, "ledger/checkpoints.jsonl", plant_id)
    cps.problems += problems
    if extra is not None:
        try:
            lines = extra.read_text(encoding="utf-8").splitlines()
            outside = [json.loads(line) for line in lines if line.strip()]
        except (OSError, ValueError) as exc:
            raise ShopfloorError(f"{extra}: not a checkpoints file (JSON lines of DSSE envelopes): {exc}") from exc
        p2, c2 = check(outside, key, entries, str(extra), plant_id)
        cps.problems += p2
        compared += c2
    cps.detail = f"{len(envs)} in pack, {compared} device heads compared with the ledger"
    return chain, cps, entries


def check_evaluation(pack: Pack, manifest: dict[str, Any]) -> Check:
    """The evaluation follows from the pack's KPI rows, rulebook and attestations."""
    from api.evidence.pack import evaluation
    from api.evidence.rulebook import parse_rulebook

    c = Check("evaluation")
    book = parse_rulebook(pack.files["rulebook.yaml"].decode(), "rulebook.yaml")
    rows = pack.json("kpi_rows.json")
    ev, _, _ = evaluation(book, manifest, rows["report"], rows["baseline"], pack.json("attestations.json"), None)
    if json.loads(json.dumps(ev, default=str)) != pack.json("evaluation.json"):
        c.problems.append("evaluation.json does not follow from kpi_rows.json, rulebook.yaml and attestations.json")
    return c


def check_raw(pack: Pack, manifest: dict[str, Any], raw: Path, entries: list[Any]) -> tuple[Check, Check]:
    """Raw rows against the ledger per device-hour, then every KPI row recomputed from them."""
    from api.evidence.rawdata import check_against_ledger, parse_ts, read_export

    rawc, kpic = Check("raw rows vs ledger"), Check("KPI recompute")
    exp = read_export(raw)
    if exp.plant_id != manifest["plant_id"]:
        raise ShopfloorError(f"{raw}: export of plant {exp.plant_id!r}, the pack is of {manifest['plant_id']!r}")
    missing = sorted(set(manifest["devices"]) - set(exp.devices))
    if missing:
        raise ShopfloorError(f"{raw}: export lacks devices {', '.join(missing)} of the pack's scope")
    want_from, want_to = parse_ts(manifest["raw_export"]["from"]), parse_ts(manifest["raw_export"]["to"])
    if exp.start > want_from or exp.end < want_to:
        raise ShopfloorError(f"{raw}: export covers {exp.start.isoformat()}..{exp.end.isoformat()}, the pack needs "
                             f"{want_from.isoformat()}..{want_to.isoformat()}")
    rawc.problems += exp.problems + check_against_ledger(exp, entries)
    rawc.detail = f"{len(exp.samples)} rows"
    kpic.problems, kpic.detail = recompute_check(pack, manifest, exp, want_to)
    return rawc, kpic


def _key(asset: str, kpi: str, bucket: str, bs: Any, shift: str | None) -> tuple[str, str, str, str, str]:
    t = datetime.fromisoformat(bs) if isinstance(bs, str) else bs
    return asset, kpi, bucket, t.astimezone(UTC).isoformat(), shift or ""


def recompute_check(pack: Pack, manifest: dict[str, Any], exp: Any, export_end: datetime) -> tuple[list[str], str]:
    """Every KPI row of the pack recomputed from the export by the KPI core (machines, then the scope's roll-up):
    values must be equal exactly, and a machine's NULL must carry the same reason."""
    from core.config import parse_config
    from kpi.filesource import RowsSource, recompute, rollup_rows

    cfg = parse_config(pack.files["plant.yaml"].decode(), "plant.yaml")
    src = RowsSource.from_rows(exp.samples, exp.status)
    rows = pack.json("kpi_rows.json")
    got: dict[tuple[str, str, str, str, str], Any] = {}
    windows = [("report", manifest["from"], manifest["to"])]
    if manifest["baseline_from"]:
        windows.append(("baseline", manifest["baseline_from"], manifest["baseline_to"]))
    for name, s, e in windows:
        # the KPI job's end of data: the pack's own recompute instant, else whatever the export holds
        until = datetime.fromisoformat((manifest["kpi_until"] or {}).get(name) or export_end.isoformat())
        mrows = [r for r in recompute(src, cfg, manifest["machines"], datetime.fromisoformat(s),
                                      datetime.fromisoformat(e), until) if r[1] == manifest["bucket"]]
        for r in mrows:
            got[_key(r[2], r[3], r[1], r[0], r[7])] = r
        if not manifest["scope_is_machine"]:
            for r in rollup_rows(cfg, mrows, manifest["scope"], until):
                got[_key(r[2], r[3], r[1], r[0], r[7])] = r
    problems = []
    n = 0
    for name, _, _ in windows:
        for r in rows[name]:
            n += 1
            mine = got.get(_key(r["asset_id"], r["kpi"], r["bucket"], r["bucket_start"], r["shift_name"]))
            where = f"KPI {r['kpi']} of {r['asset_id']} {r['bucket']} {r['bucket_start']}"
            if mine is None:
                problems.append(f"{where}: not recomputed from the raw rows (no data for it in the export)")
            elif mine[4] != r["value"]:
                problems.append(f"{where}: pack {r['value']!r}, recomputed {mine[4]!r}")
            elif r["value"] is None and mine[5] != r["null_reason"] and r["asset_id"] in manifest["machines"]:
                problems.append(f"{where}: NULL because {r['null_reason']!r} in the pack, {mine[5]!r} recomputed")
    return problems, f"{n} KPI rows"


def verify(path: Path, pub: Path, raw: Path | None = None, checkpoints: Path | None = None,
           tsa_root: Path | None = None) -> list[Check]:
    """Every check, in order; the pack passes when none has problems.

    Bad input (not a pack, not a key, an export of another plant or scope) raises ShopfloorError. When the
    signature or a digest already failed, a part that cannot even be read is reported as that check's failure.
    """
    key = load_public(pub)
    pack = open_pack(path)
    sig, subj, _ = check_attestation(pack, key)
    checks = [sig, subj]
    intact = sig.ok and subj.ok

    def guarded(name: str, run: Any) -> list[Check]:
        try:
            out: list[Check] = run()
            return out
        except (ShopfloorError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
            if intact:
                raise
            return [Check(name, [f"cannot check (the pack was altered): {exc!r}"])]

    manifest: dict[str, Any] = {}

    def man() -> list[Check]:
        manifest.update(pack.json("manifest.json"))
        if manifest.get("format") != FORMAT:
            raise ShopfloorError(f"{path}: manifest.json format {manifest.get('format')!r}, expected {FORMAT!r}")
        return []

    checks += guarded("manifest", man)
    if not manifest:
        return checks
    entries: list[Any] = []

    def ledger() -> list[Check]:
        chain, cps, ents = check_ledger(pack, key, checkpoints, manifest["plant_id"])
        entries.extend(ents)
        return [chain, cps]

    checks += guarded("ledger", ledger)
    checks += guarded("timestamps", lambda: [check_timestamps(pack, tsa_root)])
    checks += guarded("evaluation", lambda: [check_evaluation(pack, manifest)])
    if raw is not None:
        checks += guarded("raw data", lambda: list(check_raw(pack, manifest, raw, entries)))
    return checks
