"""Networking rate from samples and the device connectivity log, with values worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from collector.errors import ScopeError
from collector.writer import SampleWriter
from core.config import parse_config
from core.record import Quality, Sample, StatusEvent
from core.times import to_us
from kpi.networking import connected_seconds, format_status, networking_rate

P0 = datetime(2024, 3, 1, 8, tzinfo=UTC)
P1 = P0 + timedelta(hours=4)

PLANT = """
plant: {id: plant-1}
assets:
  - id: line-1
    kind: line
    children:
      - {id: m1, kind: machine, device: d1}
      - {id: m2, kind: machine}
  - id: line-2
    kind: line
    children:
      - {id: m3, kind: machine, device: d3}
      - {id: m4, kind: machine, device: d4}
      - {id: crane, kind: machine, device: d5, production: false}
devices:
""" + "".join(f"""  - id: {d}
    protocol: modbus
    endpoint: tcp://127.0.0.1:5020
    tags: [{{name: status, address: 40001}}]
""" for d in ("d1", "d3", "d4", "d5"))


def us(dt: datetime) -> int:
    return to_us(dt)


def test_connected_seconds_clips_events_to_the_period() -> None:
    events = [(P0 - timedelta(hours=1), "disconnected"), (P0 + timedelta(hours=1), "connected"),
              (P1 + timedelta(hours=1), "disconnected")]
    assert connected_seconds("connected", events, P0, P1) == 3 * 3600
    assert connected_seconds(None, [], P0, P1) == 0


@pytest.mark.integration
def test_rate_and_time_weighted_rate_over_four_machines(db: str) -> None:
    cfg = parse_config(PLANT)
    with SampleWriter(db) as w:
        w.write([Sample("d1", "status", us(P0), 1.0), Sample("d1", "status", us(P0 + timedelta(hours=3)), 1.0),
                 Sample("d4", "status", us(P0 + timedelta(hours=1)), 1.0),
                 Sample("d4", "status", us(P0 + timedelta(hours=3)), None, quality=Quality.BAD),
                 Sample("d5", "status", us(P0), 1.0)],
                [StatusEvent("d3", us(P0 - timedelta(hours=1)), "connected"),
                 StatusEvent("d4", us(P0 - timedelta(hours=1)), "connected"),
                 StatusEvent("d4", us(P0 + timedelta(hours=2)), "disconnected", "timeout after 3 s")])
    with psycopg.connect(db) as c:
        r = networking_rate(c, cfg, None, P0, P1)
        line2 = networking_rate(c, cfg, "line-2", P0, P1)
        late = networking_rate(c, cfg, "m4", P0 + timedelta(hours=2), P1)
        with pytest.raises(ScopeError):
            networking_rate(c, cfg, "nowhere", P0, P1)
    # m1 reports (no status log: connected from first to last sample, 3 h of 4), m2 has no device,
    # m3 is connected all period but sends nothing, m4 reports and is connected for 2 h of 4; crane is not
    # a production machine.
    assert (r.machines_total, r.machines_reporting, r.rate) == (4, 2, 0.5)
    assert r.time_weighted_rate == pytest.approx((0.75 + 0 + 1 + 0.5) / 4)
    by_id = {m.machine_id: m for m in r.machines}
    assert set(by_id) == {"m1", "m2", "m3", "m4"}
    assert (by_id["m2"].reporting, by_id["m2"].reason) == (False, "no device configured")
    assert (by_id["m3"].reporting, by_id["m3"].reason, by_id["m3"].connected_fraction) == (
        False, "no samples in period", 1.0)
    assert by_id["m4"].connected_fraction == 0.5 and by_id["m4"].state == "disconnected"
    assert (line2.rate, line2.time_weighted_rate) == (0.5, 0.75)
    assert late.rate == 0.0 and late.machines[0].connected_fraction == 0.0
    assert late.machines[0].reason == "disconnected since 2024-03-01T10:00:00+00:00: timeout after 3 s"
    table = format_status(r, now=P1)
    assert "50.0 % (2/4 reporting), time-weighted 56.2 %" in table
    assert "no device configured" in table and "m4" in table


def test_no_machines_gives_no_rate() -> None:
    cfg = parse_config("plant: {id: p}\nassets: [{id: l, kind: line}]\n")
    r = networking_rate(None, cfg, "l", P0, P1)  # type: ignore[arg-type]  # no device: no query
    assert (r.rate, r.time_weighted_rate, r.machines_total) == (None, None, 0)
