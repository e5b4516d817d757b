"""What an evidence pack reads from the database: KPI rows, ledger slice, register with last-seen times."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from collector.ledger import LedgerEntry
from core.plant import PlantConfig

KPI_COLS = ("bucket_start", "bucket", "asset_id", "kpi", "value", "null_reason", "unit", "shift_name",
            "definition_version", "code_version", "input_rows", "coverage", "revision", "computed_at", "bucket_end",
            "is_final", "provenance")
LOOKBACK = timedelta(hours=24)  # raw rows before a window that the export carries (each signal's last sample)
LOOKAHEAD = timedelta(hours=1)  # and after it (micro-stop look-ahead)


def scope_assets(cfg: PlantConfig, scope: str) -> tuple[list[str], bool]:
    """The machines under scope (all machines, production or not: roll-ups sum them all) and whether the scope
    is itself a machine."""
    from kpi.rollups import groups

    grp = groups(cfg)
    machines = {m.id for m in cfg.machines()}
    if scope in machines:
        return [scope], True
    if scope not in grp:
        from core.errors import ConfigError

        raise ConfigError(f"unknown scope {scope!r}: use the plant id ({cfg.plant.id}) or an asset id of the "
                          "plant file")
    return list(grp[scope]), False


def kpi_rows(conn: Any, assets: list[str], bucket: str, start: datetime, end: datetime,
             open_ok: bool, tz: str = "UTC") -> tuple[list[dict[str, Any]], int]:
    """Rows of `assets` whose bucket starts in [start, end); unless open_ok, only final buckets ending by `end`.
    A row without bucket_end (hand-imported) gets the end of its hour or local day (plant timezone `tz`); a shift
    row without one is left out like an open bucket, since its end is not known.
    Returns (rows, rows left out because their bucket was open when computed or has no known end)."""
    cols = ", ".join("provenance::text" if c == "provenance" else c for c in KPI_COLS)
    rows = conn.execute(f"""SELECT {cols} FROM kpi_values
                            WHERE asset_id = ANY(%s) AND bucket = %s AND bucket_start >= %s AND bucket_start < %s
                            ORDER BY asset_id, kpi, bucket_start""", (assets, bucket, start, end)).fetchall()
    out, left = [], 0
    for r in rows:
        d = dict(zip(KPI_COLS, r, strict=True))
        if d["bucket_end"] is None:
            d["bucket_end"] = bucket_end(d["bucket"], d["bucket_start"], tz)
        if d["bucket_end"] is None or (not open_ok and (not d["is_final"] or d["bucket_end"] > end)):
            left += 1
            continue
        out.append(d)
    return out, left


def bucket_end(bucket: str, bucket_start: datetime, tz: str) -> datetime | None:
    """End of an hour or local-day bucket from its start (None for shifts: their length is the plant's calendar)."""
    from zoneinfo import ZoneInfo

    if bucket == "hour":
        return bucket_start + timedelta(hours=1)
    if bucket == "day":
        zone = ZoneInfo(tz)
        nxt = bucket_start.astimezone(zone).date() + timedelta(days=1)
        return datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone).astimezone(UTC)
    return None


def ledger_slice(conn: Any, devices: list[str], start: datetime, end: datetime) -> list[LedgerEntry]:
    """Per device, the consecutive chain entries from the first one sealing an hour in [start, end) up to the head
    signed by the first checkpoint made after `end` that reaches past the window (or, without one, the chain's
    head now); later revisions of those hours included, so a checkpoint can vouch for the whole slice."""
    from collector.ledger import ledger_entries

    upto = _first_covering_heads(conn, end)
    out: list[LedgerEntry] = []
    for dev in devices:
        chain = ledger_entries(conn, dev)
        pos = [e.chain_seq for e in chain if start <= e.hour < end]
        if pos:
            hi = upto.get(dev, 0)
            hi = hi if hi >= max(pos) else chain[-1].chain_seq
            out += [e for e in chain if min(pos) <= e.chain_seq <= hi]
    return out


def _first_covering_heads(conn: Any, end: datetime) -> dict[str, int]:
    """device -> chain position signed by the earliest checkpoint created at or after `end` (empty: none)."""
    row = conn.execute("SELECT heads FROM ledger_checkpoints WHERE created_at >= %s ORDER BY created_at, id LIMIT 1",
                       (end,)).fetchone()
    if row is None:
        return {}
    heads = row[0] if isinstance(row[0], dict) else json.loads(row[0])
    return {str(d): int(h["chain_seq"]) for d, h in heads.items()}


def register(conn: Any, cfg: PlantConfig, scope: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The equipment register in scope with each machine's reporting state and last-seen time in the period."""
    from kpi.networking import networking_rate

    rate = networking_rate(conn, cfg, None if scope == cfg.plant.id else scope, start, end)
    by_id = {m.id: m for m in cfg.machines()}
    return [{"machine_id": m.machine_id, "device_id": m.device_id, "production": by_id[m.machine_id].production,
             "ideal_cycle_time_s": by_id[m.machine_id].ideal_cycle_time_s, "reporting": m.reporting,
             "last_seen": m.last_sample_ts.astimezone(UTC).isoformat() if m.last_sample_ts else None,
             "connected_fraction": m.connected_fraction, "connection_state": m.state, "reason": m.reason}
            for m in rate.machines]


def rows_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """KPI rows as JSON-safe dicts (times ISO 8601 UTC, provenance as an object)."""
    out = []
    prov: dict[str, Any] = {}  # the few distinct provenance documents, parsed once
    times: dict[datetime, str] = {}
    for r in rows:
        d = dict(r)
        for k in ("bucket_start", "bucket_end", "computed_at"):
            t = d.get(k)
            if isinstance(t, datetime):
                d[k] = times.get(t) or times.setdefault(t, t.astimezone(UTC).isoformat())
        p = d.get("provenance")
        if isinstance(p, str):
            d["provenance"] = prov[p] if p in prov else prov.setdefault(p, json.loads(p))
        out.append(d)
    return out
