"""A small plant with one day of loaded samples, status events, KPIs (kpi backfill) and sealed ledger hours,
plus one token per role: shared by the API tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

from api.auth import create_token, revoke_token
from collector.db import sync_assets
from collector.ledger import seal_hours
from collector.writer import SampleWriter
from core.config import parse_config
from core.plant import PlantConfig
from core.record import Quality, Sample, StatusEvent
from core.times import to_us

DAY = datetime(2024, 3, 1, tzinfo=UTC)
END = DAY + timedelta(days=1)

PLANT = """
plant: {id: plant-1, name: Test plant, timezone: UTC}
kpi: {calendar: always}
assets:
  - id: area-1
    kind: area
    children:
      - id: line-1
        kind: line
        children:
          - id: m1
            kind: machine
            ideal_cycle_time_s: 30.0
            device: d1
            signals:
              state: {tag: status, map: {1: running, 3: down}}
              total_count: {tag: parts_total}
          - {id: m2, kind: machine}
      - id: line-2
        kind: line
        children:
          - id: m3
            kind: machine
            ideal_cycle_time_s: 30.0
            device: d3
            signals:
              state: {tag: status, map: {1: running, 3: down}}
              total_count: {tag: parts_total}
devices:
  - {id: d1, protocol: modbus, endpoint: "tcp://127.0.0.1:5020", poll_interval_s: 600, tags: [
      {name: status, address: 40001}, {name: parts_total, address: 40002, type: uint32}]}
  - {id: d3, protocol: modbus, endpoint: "tcp://127.0.0.1:5021", poll_interval_s: 600, tags: [
      {name: status, address: 40001}, {name: parts_total, address: 40002, type: uint32}]}
"""


@dataclass
class Env:
    url: str
    cfg: PlantConfig
    tokens: dict[str, str] = field(default_factory=dict)


def samples() -> list[Sample]:
    """d1 reports all day every 10 min (down 10:00-11:00); d3 until 06:00, then silent; one bad-quality d3 sample."""
    out: list[Sample] = []
    for i in range(144):
        t = DAY + timedelta(minutes=10 * i)
        out.append(Sample("d1", "status", to_us(t), 3.0 if 60 <= i < 66 else 1.0))
        out.append(Sample("d1", "parts_total", to_us(t), float(i * 18)))
        if i < 36:
            out.append(Sample("d3", "status", to_us(t), 1.0))
            out.append(Sample("d3", "parts_total", to_us(t), float(i * 15)))
    out.append(Sample("d3", "status", to_us(DAY + timedelta(hours=7)), None, quality=Quality.BAD))
    return out


def events() -> list[StatusEvent]:
    return [StatusEvent("d1", to_us(DAY), "connected"), StatusEvent("d3", to_us(DAY), "connected"),
            StatusEvent("d3", to_us(DAY + timedelta(hours=6)), "disconnected", "read timeout: check the cable")]


def load(url: str) -> Env:
    """Fill a migrated database: samples, events, KPIs for the day, ledger, and the role tokens."""
    from kpi.job import backfill

    cfg = parse_config(PLANT)
    with SampleWriter(url) as w:
        w.write(samples(), events())
    backfill(url, cfg, DAY, END)
    env = Env(url, cfg)
    with psycopg.connect(url, autocommit=True) as conn:
        sync_assets(conn, cfg)
        seal_hours(conn, END)
        later = datetime.now(UTC) + timedelta(days=1)
        for role in ("viewer", "manager", "admin"):
            env.tokens[role] = create_token(conn, role, name=role)[1]
        env.tokens["certifier"] = create_token(conn, "certifier", scope="line-1", period_from=DAY - timedelta(days=1),
                                               period_to=END + timedelta(days=1), expires_at=later)[1]
        env.tokens["certifier_other_line"] = create_token(conn, "certifier", scope="line-2", expires_at=later)[1]
        tid, env.tokens["certifier_expired"] = create_token(conn, "certifier", scope="line-1", expires_at=later)
        conn.execute("UPDATE api_tokens SET expires_at = now() - interval '1 minute' WHERE id = %s", (tid,))
        tid, env.tokens["certifier_revoked"] = create_token(conn, "certifier", scope="line-1", expires_at=later)
        revoke_token(conn, str(tid))
        env.tokens["certifier_old_period"] = create_token(
            conn, "certifier", scope="line-1", period_from=DAY - timedelta(days=30), period_to=DAY - timedelta(days=1),
            expires_at=later)[1]
    return env
