"""Equipment networking rate: how many production machines are networked and reporting, and for how long.

The one implementation: `collector status`, the stored `networking_rate` KPI (kpi.job via reporting_matrix)
and the API's networking-rate endpoint all call it. Definitions (kpi/README.md "Networking rate"):
- rate = machines reporting / production machines in scope, where a machine reports when it has a device
  and at least one good-quality sample from that device in [start, end) (`reporting_matrix`).
- time_weighted_rate = mean over production machines of the fraction of [start, end) their device was
  connected per `device_status` (a machine without a device counts 0).
- networking_timeline: machines reporting per time bucket (time_bucket on TimescaleDB, date_bin on plain,
  via collector.db.bucket_sql; both give the same buckets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg

from collector.db import bucket_sql, bucket_start, bucket_width, detect_path
from collector.errors import ScopeError
from core.plant import Asset, PlantConfig
from core.times import from_us, to_us


@dataclass(frozen=True)
class MachineNetworking:
    machine_id: str
    device_id: str | None
    reporting: bool
    connected_fraction: float
    reason: str = ""  # why not reporting; "" when reporting
    last_sample_ts: datetime | None = None  # latest sample of any quality before `end`
    state: str = "unknown"  # last known connection state at `end`: connected | disconnected | unknown


@dataclass(frozen=True)
class EdgeGap:
    """Samples a gateway dropped by its buffer policy (edge_gaps): which machine, when, how many and why."""

    machine_id: str
    device_id: str
    gateway_id: str
    start: datetime
    end: datetime
    dropped: int
    reason: str  # buffer_full | memory_full | oversize


@dataclass(frozen=True)
class NetworkingRate:
    scope: str | None
    start: datetime
    end: datetime
    machines_total: int
    machines_reporting: int
    rate: float | None
    time_weighted_rate: float | None
    machines: list[MachineNetworking] = field(default_factory=list)
    gaps: list[EdgeGap] = field(default_factory=list)  # samples dropped at the edge that overlap the period


def scope_machines(cfg: PlantConfig, scope: str | None) -> list[Asset]:
    """Production machines under an asset id (None or the plant id: the whole plant)."""
    if scope is None or scope == cfg.plant.id:
        return [m for m in cfg.machines() if m.production]
    if any(asset.id == scope for asset, _ in cfg.iter_assets()):
        return [m for m, path in cfg.iter_assets()
                if m.kind == "machine" and m.production and (m.id == scope or scope in path)]
    raise ScopeError(f"unknown scope {scope!r}: use the plant id ({cfg.plant.id}) or an asset id from the config")


def connected_seconds(initial: str | None, events: list[tuple[datetime, str]], start: datetime, end: datetime) -> float:
    """Seconds in [start, end) in state connected, given the state at start and the events inside (time order)."""
    total = 0.0
    state, since = initial, start
    for ts, new in events:
        ts = min(max(ts, start), end)
        if state == "connected":
            total += (ts - since).total_seconds()
        state, since = new, ts
    if state == "connected":
        total += (end - since).total_seconds()
    return total


def reporting_matrix(conn: psycopg.Connection[Any], devices: list[str], starts_us: np.ndarray,
                     ends_us: np.ndarray) -> dict[str, np.ndarray]:
    """Per device, per window [starts_us[j], ends_us[j]): True when the device delivered at least one good-quality
    sample in it. The definition of "reporting" for the networking rate, in one query."""
    out = {d: np.zeros(len(starts_us), dtype=bool) for d in devices}
    if not devices or not len(starts_us):
        return out
    rows = conn.execute(
        """SELECT d.dev, w.i FROM unnest(%s::text[]) AS d(dev)
           CROSS JOIN unnest(%s::timestamptz[], %s::timestamptz[]) WITH ORDINALITY AS w(s, e, i)
           WHERE EXISTS (SELECT 1 FROM samples WHERE device_id = d.dev AND quality = 'good'
                          AND ts >= w.s AND ts < w.e)""",
        (devices, [from_us(int(x)) for x in starts_us], [from_us(int(x)) for x in ends_us])).fetchall()
    for dev, i in rows:
        out[str(dev)][int(i) - 1] = True
    return out


def _sample_stats(conn: psycopg.Connection[Any], devices: list[str], start: datetime,
                  end: datetime) -> dict[str, tuple[bool, datetime | None, datetime | None, datetime | None]]:
    """device -> (reporting, first and last sample in the period, last sample before the period's end)."""
    reporting = reporting_matrix(conn, devices, np.array([to_us(start)]), np.array([to_us(end)]))
    rows = conn.execute(
        """SELECT device_id, min(ts), max(ts)
           FROM samples WHERE device_id = ANY(%s) AND ts >= %s AND ts < %s GROUP BY device_id""",
        (devices, start, end)).fetchall()
    out: dict[str, tuple[bool, datetime | None, datetime | None, datetime | None]] = {
        str(r[0]): (bool(reporting[str(r[0])][0]), r[1], r[2], r[2]) for r in rows}
    missing = [d for d in devices if d not in out]
    if missing:  # for "last sample age" on machines silent in the period
        for dev, last in conn.execute("""SELECT device_id, max(ts) FROM samples WHERE device_id = ANY(%s) AND ts < %s
                                         GROUP BY device_id""", (missing, start)):
            out[str(dev)] = (False, None, None, last)
    return out


def _status(conn: psycopg.Connection[Any], devices: list[str], start: datetime, end: datetime
            ) -> tuple[dict[str, tuple[datetime, str, str]], dict[str, list[tuple[datetime, str, str]]]]:
    before = {str(r[0]): (r[1], str(r[2]), str(r[3])) for r in conn.execute(
        """SELECT DISTINCT ON (device_id) device_id, ts, state, reason FROM device_status
           WHERE device_id = ANY(%s) AND ts < %s ORDER BY device_id, ts DESC, state DESC""", (devices, start))}
    inside: dict[str, list[tuple[datetime, str, str]]] = {}
    for dev, ts, state, reason in conn.execute(
            """SELECT device_id, ts, state, reason FROM device_status WHERE device_id = ANY(%s)
               AND ts >= %s AND ts < %s ORDER BY device_id, ts, state""", (devices, start, end)):
        inside.setdefault(str(dev), []).append((ts, str(state), str(reason)))
    return before, inside


def edge_gaps(conn: psycopg.Connection[Any], machines: list[Asset], start: datetime, end: datetime) -> list[EdgeGap]:
    """Gap records of the machines' devices overlapping [start, end), oldest first."""
    by_device: dict[str, list[str]] = {}
    for m in machines:
        if m.device:
            by_device.setdefault(m.device, []).append(m.id)
    if not by_device or conn.execute("SELECT to_regclass('edge_gaps')").fetchone()[0] is None:  # type: ignore[index]
        return []
    rows = conn.execute(
        """SELECT device_id, gateway_id, from_ts, to_ts, dropped, reason FROM edge_gaps
           WHERE device_id = ANY(%s) AND to_ts >= %s AND from_ts < %s ORDER BY from_ts, device_id""",
        (sorted(by_device), start, end)).fetchall()
    return [EdgeGap(mid, str(dev), str(gw), lo, hi, int(n), str(reason))
            for dev, gw, lo, hi, n, reason in rows for mid in by_device[str(dev)]]


def networking_rate(conn: psycopg.Connection[Any], cfg: PlantConfig, scope: str | None, start: datetime,
                    end: datetime) -> NetworkingRate:
    """Networking rate of the production machines in scope over [start, end)."""
    if end <= start:
        raise ValueError(f"empty period: end {end.isoformat()} is not after start {start.isoformat()}")
    machines = scope_machines(cfg, scope)
    devices = sorted({m.device for m in machines if m.device})
    stats = _sample_stats(conn, devices, start, end) if devices else {}
    before, inside = _status(conn, devices, start, end) if devices else ({}, {})
    period = (end - start).total_seconds()
    result: list[MachineNetworking] = []
    for m in machines:
        if not m.device:
            result.append(MachineNetworking(m.id, None, False, 0.0, "no device configured"))
            continue
        good, first, last, last_any = stats.get(m.device, (False, None, None, None))
        prior = before.get(m.device)
        events = inside.get(m.device, [])
        if prior is None and not events:
            # No connectivity log: the device counts as connected from its first to its last sample.
            fraction = (last - first).total_seconds() / period if first and last else 0.0
            state = "unknown"
        else:
            fraction = connected_seconds(prior[1] if prior else None, [(t, s) for t, s, _ in events],
                                         start, end) / period
            state = events[-1][1] if events else prior[1]  # type: ignore[index]
        reason = ""
        if not good:
            last_event = events[-1] if events else (prior if prior else None)
            if last_event is not None and last_event[1] == "disconnected":
                why = f": {last_event[2]}" if last_event[2] else ""
                reason = f"disconnected since {last_event[0].astimezone(UTC).isoformat(timespec='seconds')}{why}"
            elif first is not None:
                reason = "no good-quality samples in period"
            else:
                reason = "no samples in period"
        result.append(MachineNetworking(m.id, m.device, good, min(max(fraction, 0.0), 1.0), reason,
                                        last_any, state))
    total = len(result)
    reporting = sum(1 for r in result if r.reporting)
    return NetworkingRate(
        scope=scope, start=start, end=end, machines_total=total, machines_reporting=reporting,
        rate=reporting / total if total else None,
        time_weighted_rate=sum(r.connected_fraction for r in result) / total if total else None,
        machines=result, gaps=edge_gaps(conn, machines, start, end))


@dataclass(frozen=True)
class TimelineBucket:
    start: datetime  # bucket start (UTC); the first bucket may start before the period, counts cover only [start, end)
    machines_total: int
    machines_reporting: int
    rate: float | None


def networking_timeline(conn: psycopg.Connection[Any], cfg: PlantConfig, scope: str | None, start: datetime,
                        end: datetime, width: str = "1 hour", path: str | None = None) -> list[TimelineBucket]:
    """Per `width` bucket of [start, end): production machines in scope with >= 1 good sample in the bucket.

    Every bucket overlapping the period is returned (empty ones with 0 reporting). Buckets are computed in the
    database by bucket_sql (time_bucket / date_bin, same origin), so both paths return identical results.
    """
    if end <= start:
        raise ValueError(f"empty period: end {end.isoformat()} is not after start {start.isoformat()}")
    delta = bucket_width(width)
    machines = scope_machines(cfg, scope)
    by_device: dict[str, int] = {}
    for m in machines:
        if m.device:
            by_device[m.device] = by_device.get(m.device, 0) + 1
    counts: dict[datetime, int] = {}
    if by_device:
        path = path or detect_path(conn)
        for bucket, device in conn.execute(
                f"""SELECT DISTINCT {bucket_sql(path, width)} AS bucket, device_id FROM samples
                    WHERE device_id = ANY(%s) AND quality = 'good' AND ts >= %s AND ts < %s""",
                (sorted(by_device), start, end)):
            counts[bucket] = counts.get(bucket, 0) + by_device[str(device)]
    total = len(machines)
    out: list[TimelineBucket] = []
    b = bucket_start(start, width)
    while b < end:
        n = counts.get(b, 0)
        out.append(TimelineBucket(b.astimezone(UTC), total, n, n / total if total else None))
        b += delta
    return out


def _age(ts: datetime | None, now: datetime) -> str:
    return "never" if ts is None else duration_text((now - ts).total_seconds())


def duration_text(seconds: float) -> str:
    """Short human duration: 45 s, 12 min, 3.5 h, 2.1 d."""
    s = max(seconds, 0.0)
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def format_status(rate: NetworkingRate, now: datetime | None = None) -> str:
    """Terminal table for `shopfloor collector status`: summary line, then one line per machine."""
    now = now or min(datetime.now(UTC), rate.end)
    head = (f"networking rate {rate.scope or 'plant'} {rate.start.astimezone(UTC):%Y-%m-%d %H:%M}"
            f"..{rate.end.astimezone(UTC):%Y-%m-%d %H:%M} UTC: {_pct(rate.rate)} "
            f"({rate.machines_reporting}/{rate.machines_total} reporting), time-weighted {_pct(rate.time_weighted_rate)}")
    cols = ("machine", "device", "reporting", "last sample", "connected", "reason")
    rows = [(m.machine_id, m.device_id or "-", "yes" if m.reporting else "no", _age(m.last_sample_ts, now),
             _pct(m.connected_fraction), m.reason) for m in rate.machines]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    lines = [head, fmt.format(*cols), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in rows]
    if rate.gaps:
        lines.append(f"samples dropped at the edge (gateway buffer policy): {sum(g.dropped for g in rate.gaps)} "
                     f"in {len(rate.gaps)} gaps")
        lines += [f"  {g.machine_id}  {g.device_id}  {g.start.astimezone(UTC):%Y-%m-%d %H:%M:%S}.."
                  f"{g.end.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC  dropped {g.dropped}  {g.reason}  "
                  f"(gateway {g.gateway_id})" for g in rate.gaps]
    return "\n".join(line.rstrip() for line in lines)
