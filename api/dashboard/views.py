"""Page contexts: one function per view, turning the readers' results into plain values for the templates."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from api.dashboard import data as D
from api.dashboard.i18n import kpi_name, kpi_status
from core.plant import Asset, PlantConfig

PERIODS = ("shift", "today", "24h", "7d", "30d")
BUCKETS = ("hour", "shift", "day")
TREND_KPIS = ("oee", "availability", "performance", "quality", "scrap_ratio", "energy_per_good_unit_kwh",
              "co2_per_good_unit_kg")
GUANGDONG_NETWORKING_THRESHOLD = 0.75


class ViewError(ValueError):
    """A request the dashboard cannot show (unknown scope, bad date): shown to the user as one line."""


@dataclass
class Node:
    id: str
    kind: str
    name: str
    children: list[Node] = field(default_factory=list)
    now: D.MachineNow | None = None
    day: dict[str, D.KpiCell] = field(default_factory=dict)
    shift: dict[str, D.KpiCell] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # machines per state below this node


def period_window(cfg: PlantConfig, period: str, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of a named period ending now (today and shift on the plant's clock)."""
    if period not in PERIODS:
        raise ViewError(f"unknown period {period!r}: use one of {', '.join(PERIODS)}")
    wins = D.current_windows(cfg, now)
    if period == "today":
        return wins["day"][0], now
    if period == "shift":
        if "shift" in wins:
            return wins["shift"][0], now
        return wins["day"][0], now
    hours = {"24h": 24, "7d": 24 * 7, "30d": 24 * 30}[period]
    return now - timedelta(hours=hours), now


def explicit_window(start: str | None, end: str | None, now: datetime, max_days: int = 92) -> tuple[datetime, datetime]:
    """[from, to) given in the URL as ISO 8601 (UTC when no offset; `to` defaults to now)."""
    def parse(value: str, name: str) -> datetime:
        try:
            t = datetime.fromisoformat(value.strip().replace(" ", "+"))
        except ValueError as exc:
            raise ViewError(f"{name}={value!r} is not an ISO 8601 time (e.g. 2024-03-01T08:00:00+08:00)") from exc
        return t if t.tzinfo else t.replace(tzinfo=UTC)

    if not start:
        raise ViewError("'to' needs a 'from' in the URL (or choose a period instead)")
    lo, hi = parse(start, "from"), parse(end, "to") if end else now
    if hi <= lo:
        raise ViewError(f"'to' ({hi.isoformat()}) must be after 'from' ({lo.isoformat()})")
    if hi - lo > timedelta(days=max_days):
        raise ViewError(f"the period spans {(hi - lo).days} days; the dashboard shows at most {max_days}")
    return lo, hi


def check_scope(cfg: PlantConfig, scope: str | None) -> str:
    """The scope's asset id (the plant id for the whole plant); ViewError for an unknown id."""
    if not scope or scope == cfg.plant.id:
        return cfg.plant.id
    if any(a.id == scope for a, _ in cfg.iter_assets()):
        return scope
    raise ViewError(f"unknown scope {scope!r}: choose the plant or an asset of the plant file")


def scope_choices(cfg: PlantConfig) -> list[tuple[str, str]]:
    """(asset id, indented label) for the plant and every asset, in tree order."""
    out = [(cfg.plant.id, cfg.plant.name or cfg.plant.id)]
    for a, path in cfg.iter_assets():
        out.append((a.id, "\u00a0\u00a0" * (len(path) + 1) + (a.name or a.id)))
    return out


def machines_under(cfg: PlantConfig, scope: str) -> list[Asset]:
    """Machines below an asset (all of them for the plant id); a machine is under itself."""
    if scope == cfg.plant.id:
        return cfg.machines()
    return [m for m, path in cfg.iter_assets() if m.kind == "machine" and (m.id == scope or scope in path)]


def glance(conn: psycopg.Connection[Any], cfg: PlantConfig, now: datetime) -> dict[str, Any]:
    """Plant tree with each machine's state now, and today's and this shift's KPIs for every node."""
    states = D.machine_states(conn, cfg, now)
    wins = D.current_windows(cfg, now)
    ids = [cfg.plant.id] + [a.id for a, _ in cfg.iter_assets()]
    day = D.kpi_cells(conn, ids, D.GLANCE_KPIS, "day", wins["day"][0])
    shift = D.kpi_cells(conn, ids, D.GLANCE_KPIS, "shift", wins["shift"][0]) if "shift" in wins else {}

    def build(a: Asset) -> Node:
        n = Node(a.id, a.kind, a.name or a.id, [build(c) for c in a.children], states.get(a.id))
        _fill(n, day, shift)
        if n.now is not None:
            n.counts = {n.now.state: 1}
        for c in n.children:
            for k, v in c.counts.items():
                n.counts[k] = n.counts.get(k, 0) + v
        return n

    root = Node(cfg.plant.id, "plant", cfg.plant.name or cfg.plant.id, [build(a) for a in cfg.assets])
    _fill(root, day, shift)
    for c in root.children:
        for k, v in c.counts.items():
            root.counts[k] = root.counts.get(k, 0) + v
    return {"root": root, "now": now, "shift_name": wins["shift"][2] if "shift" in wins else None,
            "day_start": wins["day"][0], "states": D.STATE_ORDER}


def _fill(n: Node, day: dict[tuple[str, str], D.KpiCell], shift: dict[tuple[str, str], D.KpiCell]) -> None:
    n.day = {k: day[(n.id, k)] for k in D.GLANCE_KPIS if (n.id, k) in day}
    n.shift = {k: shift[(n.id, k)] for k in D.GLANCE_KPIS if (n.id, k) in shift}


def networking(conn: psycopg.Connection[Any], cfg: PlantConfig, scope: str, start: datetime,
               end: datetime) -> dict[str, Any]:
    """The networking rate over the period, machines not reporting, and the hourly trend with the 75 % line."""
    from kpi.networking import networking_rate, networking_timeline

    rate = networking_rate(conn, cfg, scope, start, end)
    trend_start = min(start, end - timedelta(hours=24))
    timeline = networking_timeline(conn, cfg, scope, trend_start, end, "1 hour")
    chart = {"x": [b.start.isoformat() for b in timeline], "rate": [b.rate for b in timeline],
             "threshold": GUANGDONG_NETWORKING_THRESHOLD}
    return {"rate": rate, "missing": [m for m in rate.machines if not m.reporting], "chart": chart,
            "status": kpi_status("networking_rate")}


def trends(conn: psycopg.Connection[Any], cfg: PlantConfig, asset: str, bucket: str, start: datetime,
           end: datetime, lang: str) -> dict[str, Any]:
    """Stored KPI buckets of one asset as chart series; a NULL value stays a gap and keeps its reason."""
    if bucket not in BUCKETS:
        raise ViewError(f"unknown bucket {bucket!r}: use one of {', '.join(BUCKETS)}")
    points = D.kpi_series(conn, asset, list(TREND_KPIS), bucket, start, end)
    tz = ZoneInfo(cfg.plant.timezone)
    labels = [p.bucket_start.astimezone(tz).strftime("%m-%d %H:%M") + (f" {p.shift_name}" if p.shift_name else "")
              for p in points]
    series = {}
    for k in TREND_KPIS:
        cells = [p.values.get(k) for p in points]
        series[k] = {"name": kpi_name(k, lang), "status": kpi_status(k),
                     "values": [c.value if c else None for c in cells],
                     "reasons": [(c.null_reason if c else None) for c in cells]}
    return {"chart": {"x": labels, "series": series}, "count": len(points)}


def losses(conn: psycopg.Connection[Any], cfg: PlantConfig, scope: str, start: datetime, end: datetime,
           day: datetime, now: datetime, lang: str, max_machines: int = 60) -> dict[str, Any]:
    """Downtime Pareto for the scope over the period (time without data apart: it is not a stop), and every
    machine's state timeline for one local day, up to now."""
    totals = D.loss_totals(conn, scope, start, end)
    no_data = totals.pop("no_data_time_s", 0.0)
    machines = machines_under(cfg, scope)
    day_end = day + timedelta(days=1)
    rows = []
    for m in machines[:max_machines]:
        rows.append({"machine": m.id, "intervals": [
            [i.start.isoformat(), i.end.isoformat(), i.state]
            for i in D.state_timeline(conn, cfg, m, day, min(day_end, now)) if i.state != "unknown"]})
    out = {"pareto": D.pareto(totals), "no_data_s": no_data, "machines_shown": len(rows),
           "machines_total": len(machines),
           "timeline": {"machines": [r["machine"] for r in rows], "rows": rows,
                        "start": day.isoformat(), "end": day_end.isoformat()}}
    out.update(_reasons(conn, cfg, [m.id for m in machines], rows, totals.get("down_time_s", 0.0), start, end,
                        day, day_end, lang))
    return out


def _reasons(conn: psycopg.Connection[Any], cfg: PlantConfig, machines: list[str], rows: list[dict[str, Any]],
             down_s: float, start: datetime, end: datetime, day: datetime, day_end: datetime,
             lang: str) -> dict[str, Any]:
    """The day's downtime events with their current reason, and the period's downtime by reason (Pareto)."""
    from api import operator

    choices = operator.reasons(cfg)
    label = {r.code: (r.name_zh if lang == "zh" else r.name_en) for r in choices}
    day_entries = operator.current(operator.read(conn, day, day_end, machines))
    events = []
    for r in rows:
        for a, b, state in r["intervals"]:
            if state == "down":
                t0, t1 = datetime.fromisoformat(a), datetime.fromisoformat(b)
                events.append({"machine": r["machine"], "start": t0, "end": t1, "seconds": (t1 - t0).total_seconds(),
                               "entry": day_entries.get((r["machine"], t0))})
    by_reason: dict[str, float] = {}
    for e in operator.current(operator.read(conn, start, end, machines)).values():
        name = label.get(e["reason_code"], e["reason_code"])
        by_reason[name] = by_reason.get(name, 0.0) + (e["event_end"] - e["event_start"]).total_seconds()
    if by_reason:
        by_reason["unassigned"] = max(down_s - sum(by_reason.values()), 0.0)
    return {"events": events[:200], "reason_choices": choices, "reason_label": label,
            "reason_pareto": D.pareto(by_reason)}


def day_start(cfg: PlantConfig, day: str | None, now: datetime) -> datetime:
    """Local midnight of a YYYY-MM-DD date (today when absent), as an aware datetime."""
    tz = ZoneInfo(cfg.plant.timezone)
    if not day:
        d = now.astimezone(tz).date()
    else:
        try:
            d = datetime.strptime(day, "%Y-%m-%d").date()
        except ValueError as exc:
            raise ViewError(f"day {day!r} is not a date (YYYY-MM-DD)") from exc
    return datetime(d.year, d.month, d.day, tzinfo=tz)


def quality(conn: psycopg.Connection[Any], cfg: PlantConfig, start: datetime, end: datetime) -> dict[str, Any]:
    """Per device data health over the period, and the quarantined rows."""
    devices, quarantine = D.data_quality(conn, cfg, start, end)
    return {"devices": devices, "quarantine": quarantine}
