"""Operator input: a manager's reason for a downtime event, append-only and hash-chained (no FastAPI imports).

Each entry's hash is SHA-256 of `prev_hash|entered_at|author|role|kind|asset_id|event_start|event_end|
reason_code|note` (times ISO 8601 UTC, microseconds), prev_hash being the previous entry's hash (64 zeros for the
first), so `verify_chain` finds any altered or removed row. A later entry for the same event supersedes the
earlier one; both stay.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from core.errors import ShopfloorError
from core.plant import PlantConfig, Reason

GENESIS = "0" * 64
DEFAULT_REASONS = [
    Reason(code="breakdown", name="Breakdown", name_zh="设备故障", children=[
        Reason(code="breakdown.mechanical", name="Mechanical", name_zh="机械故障"),
        Reason(code="breakdown.electrical", name="Electrical", name_zh="电气故障"),
        Reason(code="breakdown.tooling", name="Tooling", name_zh="工装模具")]),
    Reason(code="material", name="Material shortage", name_zh="缺料"),
    Reason(code="operator", name="Waiting for operator", name_zh="等待操作员"),
    Reason(code="quality", name="Quality problem", name_zh="质量问题"),
    Reason(code="other", name="Other", name_zh="其他"),
]
_LOCK = 74_110_017  # advisory lock id: one writer extends the chain at a time


class OperatorInputError(ShopfloorError):
    """An entry that cannot be recorded as given; the message says what to change."""


@dataclass(frozen=True)
class ReasonChoice:
    code: str
    name_en: str
    name_zh: str
    depth: int


def reasons(cfg: PlantConfig) -> list[ReasonChoice]:
    """The reason tree (the plant file's `downtime_reasons`, else the built-in one), flattened in tree order."""
    out: list[ReasonChoice] = []

    def walk(nodes: list[Reason], depth: int) -> None:
        for r in nodes:
            out.append(ReasonChoice(r.code, r.name or r.code, r.name_zh or r.name or r.code, depth))
            walk(r.children, depth + 1)

    walk(cfg.downtime_reasons or DEFAULT_REASONS, 0)
    return out


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="microseconds")


def entry_hash(prev: str, entered_at: datetime, author: str, role: str, kind: str, asset_id: str,
               event_start: datetime, event_end: datetime, reason_code: str, note: str) -> str:
    """SHA-256 hex of the entry's fields joined by '|' after the previous entry's hash."""
    text = "|".join([prev, _iso(entered_at), author, role, kind, asset_id, _iso(event_start), _iso(event_end),
                     reason_code, note])
    return hashlib.sha256(text.encode()).hexdigest()


def record(conn: psycopg.Connection[Any], cfg: PlantConfig, *, author: str, role: str, token_id: int | None,
           asset_id: str, event_start: datetime, event_end: datetime, reason_code: str, note: str) -> dict[str, Any]:
    """Append a downtime-reason entry (one transaction, chain extended under an advisory lock); returns it."""
    if asset_id not in {m.id for m in cfg.machines()}:
        raise OperatorInputError(f"unknown machine {asset_id!r}: a downtime reason belongs to a machine of the plant")
    if reason_code not in {r.code for r in reasons(cfg)}:
        raise OperatorInputError(f"unknown reason {reason_code!r}: choose one of the plant's downtime reasons")
    if event_end <= event_start:
        raise OperatorInputError("the downtime event must end after it starts")
    note = note.strip()
    if not note:
        raise OperatorInputError("say why (a note) with every entry: it is kept with who and when")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        row = conn.execute("SELECT entry_hash FROM operator_entries ORDER BY id DESC LIMIT 1").fetchone()
        prev = str(row[0]) if row else GENESIS
        now = datetime.now(UTC)
        h = entry_hash(prev, now, author, role, "downtime_reason", asset_id, event_start, event_end, reason_code, note)
        (eid,) = conn.execute(
            """INSERT INTO operator_entries (entered_at, token_id, author, role, kind, asset_id, event_start,
                                             event_end, reason_code, note, prev_hash, entry_hash)
               VALUES (%s, %s, %s, %s, 'downtime_reason', %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (now, token_id, author, role, asset_id, event_start, event_end, reason_code, note, prev, h)
        ).fetchone() or (0,)
    return {"id": int(eid), "entered_at": now, "author": author, "role": role, "kind": "downtime_reason",
            "asset_id": asset_id, "event_start": event_start, "event_end": event_end, "reason_code": reason_code,
            "note": note, "prev_hash": prev, "entry_hash": h}


COLUMNS = ("id", "entered_at", "author", "role", "kind", "asset_id", "event_start", "event_end", "reason_code",
           "note", "prev_hash", "entry_hash")


def read(conn: psycopg.Connection[Any], start: datetime, end: datetime,
         assets: list[str] | None = None) -> list[dict[str, Any]]:
    """Entries for events starting in [start, end) (of these machines), in chain order."""
    sql = f"SELECT {', '.join(COLUMNS)} FROM operator_entries WHERE event_start >= %s AND event_start < %s"
    args: list[Any] = [start, end]
    if assets is not None:
        sql += " AND asset_id = ANY(%s)"
        args.append(assets)
    return [dict(zip(COLUMNS, r, strict=True)) for r in conn.execute(sql + " ORDER BY id", args)]


def current(entries: list[dict[str, Any]]) -> dict[tuple[str, datetime], dict[str, Any]]:
    """(machine, event start) -> the latest entry for that event (earlier ones are superseded, not removed)."""
    out: dict[tuple[str, datetime], dict[str, Any]] = {}
    for e in entries:
        out[(e["asset_id"], e["event_start"])] = e
    return out


def verify_chain(conn: psycopg.Connection[Any]) -> list[str]:
    """Problems found walking the whole chain (empty: every entry's hash recomputes and links to the previous)."""
    problems, prev = [], GENESIS
    for e in (dict(zip(COLUMNS, r, strict=True)) for r in
              conn.execute(f"SELECT {', '.join(COLUMNS)} FROM operator_entries ORDER BY id")):
        if e["prev_hash"] != prev:
            problems.append(f"entry {e['id']}: prev_hash does not match entry before it (a row was removed?)")
        h = entry_hash(e["prev_hash"], e["entered_at"], e["author"], e["role"], e["kind"], e["asset_id"],
                       e["event_start"], e["event_end"], e["reason_code"], e["note"])
        if h != e["entry_hash"]:
            problems.append(f"entry {e['id']}: hash does not recompute (the row was altered)")
        prev = e["entry_hash"]
    return problems
