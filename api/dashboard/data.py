"""What the dashboard shows, read from the stages' tables: machine states now, KPI buckets, losses, data quality.

KPI numbers come only from `kpi_values` (the KPI job's rows, roll-ups included); the networking rate from
kpi.networking; nothing here recomputes a KPI. The machine's current state is its last state sample, mapped
by the plant file, unless the device is disconnected or the sample is older than the state model allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from core.plant import Asset, PlantConfig
from kpi.buckets import day_buckets, from_us, hour_buckets, shift_intervals
from kpi.statemodel import state_max_hold_s

NOT_REPORTING = "not_reporting"
STATE_ORDER = ("running", "idle", "down", "setup", "planned_stop", NOT_REPORTING)
LOSS_ELEMENTS = ("down_time_s", "idle_time_s", "setup_time_s", "planned_stop_time_s", "micro_stop_time_s",
                 "reduced_speed_time_s", "no_data_time_s")
GLANCE_KPIS = ("oee", "availability", "performance", "quality", "produced_quantity", "scrap_quantity",
               "good_quantity")


@dataclass(frozen=True)
class MachineNow:
    machine_id: str
    state: str  # one of STATE_ORDER
    since: datetime | None  # when the current state started (as far as the samples show)
    reason: str = ""  # why not reporting: a key of REASONS (translated by the page)
    detail: str = ""  # the specifics (a disconnect reason as the edge gave it, an age, a code)


@dataclass(frozen=True)
class KpiCell:
    value: float | None
    null_reason: str | None = None
    coverage: float | None = None


_LAST_STATE_SQL = """
SELECT d.dev, d.tag, l.ts, l.value, l.value_text, l.quality, c.since
FROM unnest(%(devs)s::text[], %(tags)s::text[]) AS d(dev, tag)
CROSS JOIN LATERAL (SELECT ts, value, value_text, quality FROM samples
                    WHERE device_id = d.dev AND tag = d.tag AND ts <= %(now)s ORDER BY ts DESC LIMIT 1) l
LEFT JOIN LATERAL (
    SELECT min(s.ts) AS since FROM samples s
    WHERE s.device_id = d.dev AND s.tag = d.tag AND s.ts <= l.ts AND s.ts > coalesce(
        (SELECT max(p.ts) FROM samples p WHERE p.device_id = d.dev AND p.tag = d.tag AND p.ts < l.ts
           AND p.ts > l.ts - interval '7 days'
           AND (p.value IS DISTINCT FROM l.value OR p.value_text IS DISTINCT FROM l.value_text
                OR p.quality <> l.quality)),
        l.ts - interval '7 days')) c ON true
"""

_LAST_STATUS_SQL = """SELECT DISTINCT ON (device_id) device_id, ts, state, reason FROM device_status
                      WHERE device_id = ANY(%s) AND ts <= %s ORDER BY device_id, ts DESC, state DESC"""


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _mapped(ref_map: Mapping[int | str, str] | None, value: float | None, text: str | None) -> str | None:
    for key, state in (ref_map or {}).items():
        if (isinstance(key, int) and value is not None and float(key) == value) or str(key) == text:
            return state
    return None


def machine_states(conn: psycopg.Connection[Any], cfg: PlantConfig, now: datetime) -> dict[str, MachineNow]:
    """Every machine's state now (NOT_REPORTING with the reason when the data does not say)."""
    machines = cfg.machines()
    sigs = {m.id: cfg.signal(m.id, "state") for m in machines}
    pairs = sorted({(s.device_id, s.tag) for s in sigs.values() if s is not None})
    last: dict[tuple[str, str], tuple[Any, ...]] = {}
    status: dict[str, tuple[datetime, str, str]] = {}
    if pairs:
        for dev, tag, *rest in conn.execute(_LAST_STATE_SQL, {"devs": [p[0] for p in pairs],
                                                              "tags": [p[1] for p in pairs], "now": now}):
            last[(dev, tag)] = tuple(rest)
        status = {str(r[0]): (r[1], str(r[2]), str(r[3]))
                  for r in conn.execute(_LAST_STATUS_SQL, ([p[0] for p in pairs], now))}
    return {m.id: _machine_now(cfg, m, sigs[m.id], last, status, now) for m in machines}


def _machine_now(cfg: PlantConfig, m: Asset, sig: Any, last: dict[tuple[str, str], tuple[Any, ...]],
                 status: dict[str, tuple[datetime, str, str]], now: datetime) -> MachineNow:
    if not m.device:
        return MachineNow(m.id, NOT_REPORTING, None, "no_device")
    if sig is None:
        return MachineNow(m.id, NOT_REPORTING, None, "no_state_signal")
    row = last.get((sig.device_id, sig.tag))
    st = status.get(sig.device_id)
    if st is not None and st[1] == "disconnected" and (row is None or st[0] >= row[0]):
        return MachineNow(m.id, NOT_REPORTING, st[0], "disconnected", st[2])
    if row is None:
        return MachineNow(m.id, NOT_REPORTING, None, "no_samples")
    ts, value, text, quality, since = row
    hold = state_max_hold_s(cfg, m)
    if hold and (now - ts).total_seconds() > hold:
        return MachineNow(m.id, NOT_REPORTING, ts, "stale", _age((now - ts).total_seconds()))
    if quality == "bad":
        return MachineNow(m.id, NOT_REPORTING, since, "bad_quality")
    ref = m.signals.state if m.signals else None
    state = _mapped(ref.map if ref else None, value, text)
    if state is None:
        return MachineNow(m.id, NOT_REPORTING, since, "unmapped", str(text or value))
    return MachineNow(m.id, state, since or ts)


def current_windows(cfg: PlantConfig, now: datetime) -> dict[str, tuple[datetime, datetime, str | None]]:
    """The day and shift (and hour) bucket containing now: name -> (start, end, shift name)."""
    tz = ZoneInfo(cfg.plant.timezone)
    eps = now + timedelta(microseconds=1)
    out: dict[str, tuple[datetime, datetime, str | None]] = {}
    for kind, bs in (("day", day_buckets(tz, now, eps)), ("hour", hour_buckets(tz, now, eps))):
        if len(bs):
            out[kind] = (from_us(int(bs.starts[0])), from_us(int(bs.ends[0])), None)
    for name, (starts, ends) in shift_intervals(cfg, now, eps).items():
        for s, e in zip(starts, ends, strict=True):
            if s <= now < e:
                out["shift"] = (s, e, name)
    return out


def _kpi_rows(conn: psycopg.Connection[Any], assets: list[str], kpis: list[str], bucket: str, start: datetime,
              end: datetime) -> list[dict[str, Any]]:
    """Stored kpi_values rows through the KPI stage's own query (kpi.reads), as dicts."""
    from psycopg.rows import dict_row

    from kpi.reads import kpi_values_query

    sql, params = kpi_values_query(assets, kpis, bucket, start, end)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchall()  # type: ignore[arg-type]


def kpi_cells(conn: psycopg.Connection[Any], assets: list[str], kpis: tuple[str, ...] | list[str], bucket: str,
              bucket_start: datetime) -> dict[tuple[str, str], KpiCell]:
    """(asset, kpi) -> the stored value of one bucket (missing keys: no row computed yet)."""
    rows = _kpi_rows(conn, assets, list(kpis), bucket, bucket_start, bucket_start + timedelta(microseconds=1))
    return {(str(r["asset_id"]), str(r["kpi"])): KpiCell(r["value"], r["null_reason"], r["coverage"]) for r in rows}


@dataclass(frozen=True)
class SeriesPoint:
    bucket_start: datetime
    shift_name: str | None
    values: dict[str, KpiCell]


def kpi_series(conn: psycopg.Connection[Any], asset: str, kpis: list[str], bucket: str, start: datetime,
               end: datetime) -> list[SeriesPoint]:
    """One asset's stored buckets starting in [start, end), time order, all requested KPIs per bucket."""
    points: dict[datetime, SeriesPoint] = {}
    for r in _kpi_rows(conn, [asset], kpis, bucket, start, end):
        p = points.setdefault(r["bucket_start"], SeriesPoint(r["bucket_start"], r["shift_name"], {}))
        p.values[str(r["kpi"])] = KpiCell(r["value"], r["null_reason"], r["coverage"])
    return [points[k] for k in sorted(points)]


def loss_totals(conn: psycopg.Connection[Any], asset: str, start: datetime, end: datetime) -> dict[str, float]:
    """Seconds per loss element (down, idle, setup, ..., no data) over the hour buckets of [start, end)."""
    out: dict[str, float] = {}
    for r in _kpi_rows(conn, [asset], list(LOSS_ELEMENTS), "hour", start, end):
        if r["value"]:
            out[r["kpi"]] = out.get(r["kpi"], 0.0) + float(r["value"])
    return out


def pareto(totals: dict[str, float]) -> list[tuple[str, float, float]]:
    """(cause, seconds, cumulative share) by descending seconds."""
    items = sorted(((k, v) for k, v in totals.items() if v > 0), key=lambda kv: -kv[1])
    total = sum(v for _, v in items)
    out, run = [], 0.0
    for k, v in items:
        run += v
        out.append((k, v, run / total))
    return out


@dataclass(frozen=True)
class Interval:
    start: datetime
    end: datetime
    state: str  # STATE_ORDER, or "unknown"


def state_timeline(conn: psycopg.Connection[Any], cfg: PlantConfig, machine: Asset, start: datetime,
                   end: datetime) -> list[Interval]:
    """The machine's mapped state as intervals over [start, end) (step-hold, stale holds and disconnects unknown)."""
    sig = cfg.signal(machine.id, "state")
    if sig is None or machine.signals is None or machine.signals.state is None:
        return []
    ref_map = machine.signals.state.map
    hold = timedelta(seconds=state_max_hold_s(cfg, machine) or 10 ** 9)
    rows = conn.execute(
        """(SELECT ts, value, value_text, quality FROM samples WHERE device_id = %(d)s AND tag = %(t)s
              AND ts < %(s)s ORDER BY ts DESC LIMIT 1)
           UNION ALL
           (SELECT ts, value, value_text, quality FROM samples WHERE device_id = %(d)s AND tag = %(t)s
              AND ts >= %(s)s AND ts < %(e)s ORDER BY ts)""",
        {"d": sig.device_id, "t": sig.tag, "s": start, "e": end}).fetchall()
    cuts = [ts for ts, state in _status_events(conn, sig.device_id, start, end) if state == "disconnected"]
    out: list[Interval] = []
    for i, (ts, value, text, quality) in enumerate(rows):
        nxt = rows[i + 1][0] if i + 1 < len(rows) else end
        stop = min(nxt, ts + hold, end, *[c for c in cuts if c > ts] or [end])
        state = (_mapped(ref_map, value, text) if quality != "bad" else None) or "unknown"
        a = max(ts, start)
        if stop <= a:
            continue
        if out and out[-1].state == state and out[-1].end == a:
            out[-1] = Interval(out[-1].start, stop, state)
        else:
            out.append(Interval(a, stop, state))
    return out


def _status_events(conn: psycopg.Connection[Any], device: str, start: datetime,
                   end: datetime) -> list[tuple[datetime, str]]:
    return [(r[0], str(r[1])) for r in conn.execute(
        "SELECT ts, state FROM device_status WHERE device_id = %s AND ts >= %s AND ts < %s ORDER BY ts",
        (device, start, end))]


@dataclass(frozen=True)
class DeviceQuality:
    device_id: str
    machines: list[str]
    last_sample: datetime | None
    samples: int
    bad_samples: int
    disconnects: int
    last_reason: str


def data_quality(conn: psycopg.Connection[Any], cfg: PlantConfig, start: datetime,
                 end: datetime) -> tuple[list[DeviceQuality], list[tuple[str, str, int]]]:
    """Per device: last sample, samples and bad ones in the period, disconnects; and quarantined rows by source."""
    devices = [d.id for d in cfg.devices]
    by_dev: dict[str, list[str]] = {}
    for m in cfg.machines():
        if m.device:
            by_dev.setdefault(m.device, []).append(m.id)
    counts = {str(r[0]): (int(r[1]), int(r[2])) for r in conn.execute(
        """SELECT device_id, count(*), count(*) FILTER (WHERE quality <> 'good') FROM samples
           WHERE device_id = ANY(%s) AND ts >= %s AND ts < %s GROUP BY device_id""", (devices, start, end))}
    last = {str(r[0]): r[1] for r in conn.execute(
        """SELECT d.dev, l.ts FROM unnest(%s::text[]) AS d(dev) CROSS JOIN LATERAL
           (SELECT ts FROM samples WHERE device_id = d.dev AND ts < %s ORDER BY ts DESC LIMIT 1) l""",
        (devices, end))}
    events = {str(r[0]): (int(r[1]), str(r[2] or "")) for r in conn.execute(
        """SELECT device_id, count(*) FILTER (WHERE state = 'disconnected'),
                  (array_agg(reason ORDER BY ts DESC) FILTER (WHERE state = 'disconnected'))[1]
           FROM device_status WHERE device_id = ANY(%s) AND ts >= %s AND ts < %s GROUP BY device_id""",
        (devices, start, end))}
    out = [DeviceQuality(d, by_dev.get(d, []), last.get(d), *counts.get(d, (0, 0)), *events.get(d, (0, "")))
           for d in devices]
    quarantine = [(str(s or ""), str(r or ""), int(n)) for s, r, n in conn.execute(
        """SELECT source, reason, count(*) FROM quarantine WHERE received_at >= %s AND received_at < %s
           GROUP BY source, reason ORDER BY count(*) DESC LIMIT 50""", (start, end))]
    return out, quarantine


def utcnow() -> datetime:
    return datetime.now(UTC)
