"""KPI job against a real database: known state intervals and counts -> exact KPI rows (values worked by hand)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest

from core.config import parse_config
from core.plant import PlantConfig
from kpi.job import backfill, run_once

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Asia/Shanghai")
DAY = datetime(2024, 1, 10, tzinfo=TZ)  # a Wednesday, local midnight

CONFIG = """
plant: {id: plant-1, timezone: Asia/Shanghai, emission_factor_kg_per_kwh: 0.5, emission_factor_version: "test-ef-1"}
%(shifts)s
kpi: {calendar: shifts}
assets:
  - id: line-1
    kind: line
    children:
      - id: m1
        kind: machine
        ideal_cycle_time_s: 2.0
        device: d1
        signals:
          state: {tag: status, map: {1: running, 2: idle, 3: down, 4: setup, 5: planned_stop}}
          total_count: {tag: parts_total}
          scrap_count: {tag: parts_scrap}
          energy_kwh: {tag: energy_total}
      - id: m2
        kind: machine
        ideal_cycle_time_s: 1.0
        device: d2
        signals:
          state: {tag: status, map: {"1": running, "3": down}}
          total_count: {tag: parts_total}
          good_count: {tag: parts_good}
          power_kw: {tag: power}
      - {id: m3, kind: machine, ideal_cycle_time_s: 3.0}
# the hand-made samples are sparse (hours apart): the devices poll daily, so no sample is stale (see staleness tests)
devices:
  - {id: d1, protocol: modbus, endpoint: "tcp://127.0.0.1:5020", poll_interval_s: 86400, tags: [
      {name: status, address: 40001}, {name: parts_total, address: 40002}, {name: parts_scrap, address: 40003},
      {name: energy_total, address: 40004, type: float32}]}
  - {id: d2, protocol: modbus, endpoint: "tcp://127.0.0.1:5021", poll_interval_s: 86400, tags: [
      {name: status, address: 40001}, {name: parts_total, address: 40002}, {name: parts_good, address: 40003},
      {name: power, address: 40004, type: float32}]}
"""
SHIFTS = 'shifts: [{name: day, start: "08:00", end: "20:00"}]'


def cfg(shifts: str = SHIFTS) -> PlantConfig:
    return parse_config(CONFIG % {"shifts": shifts})


def at(hhmm: str) -> datetime:
    h, m = hhmm.split(":")
    return DAY + timedelta(hours=int(h), minutes=int(m))


SAMPLES = [
    # m1 states: setup 08:00, running 08:30, down 10:00, running 10:15, planned stop 12:00, running 13:00,
    # down 15:00, running 15:45, idle 20:00 (a running sample at 07:00 lies outside the shift)
    *[("d1", "status", at(t), v) for t, v in [("07:00", 1), ("08:00", 4), ("08:30", 1), ("10:00", 3),
                                              ("10:15", 1), ("12:00", 5), ("13:00", 1), ("15:00", 3),
                                              ("15:45", 1), ("20:00", 2)]],
    # uint16 counter that rolls over between 12:00 and 16:00: 4900 + 4000 + 5100 = 14000 parts
    *[("d1", "parts_total", at(t), v) for t, v in [("08:00", 60100), ("12:00", 65000), ("16:00", 3464),
                                                   ("19:59", 8564)]],
    ("d1", "parts_scrap", at("08:00"), 0), ("d1", "parts_scrap", at("19:59"), 280),
    ("d1", "energy_total", at("08:00"), 1000.0), ("d1", "energy_total", at("19:59"), 1450.0),
    # m2: running 08:00, down 14:00-16:00; a PLC restart resets the counter at 12:00 (5000 -> 0)
    *[("d2", "status", at(t), v) for t, v in [("08:00", 1), ("14:00", 3), ("16:00", 1)]],
    *[("d2", "parts_total", at(t), v) for t, v in [("08:00", 0), ("11:59", 5000), ("12:00", 0),
                                                   ("19:59", 25000)]],
    ("d2", "parts_good", at("08:00"), 0), ("d2", "parts_good", at("19:59"), 29000),
    *[("d2", "power", at(t), v) for t, v in [("08:00", 10.0), ("14:00", 2.0), ("16:00", 10.0), ("20:00", 0.0)]],
]


def insert(url: str, rows: list[tuple[str, str, datetime, float]]) -> None:
    with psycopg.connect(url) as c, c.cursor() as cur:
        with cur.copy("COPY samples (device_id, tag, ts, value) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)


def kpis(url: str, asset: str, bucket: str, start: datetime) -> dict[str, tuple[float | None, str | None]]:
    with psycopg.connect(url) as c:
        rows = c.execute("SELECT kpi, value, null_reason FROM kpi_values WHERE asset_id = %s AND bucket = %s "
                         "AND bucket_start = %s", (asset, bucket, start)).fetchall()
    return {k: (v, r) for k, v, r in rows}


def test_backfill_machine_kpis_match_hand_worked_values(db: str) -> None:
    insert(db, SAMPLES)
    seen: list[tuple[int, int]] = []
    report = backfill(db, cfg(), DAY, DAY + timedelta(days=1), progress=lambda d, t: seen.append((d, t)))
    assert report.rows_written > 0 and seen[-1][0] == seen[-1][1]
    k = kpis(db, "m1", "day", DAY)
    # shift 12 h = 43200 s; planned stop 3600 -> PBT 39600; running 5400+6300+7200+15300 = 34200
    assert k["planned_busy_time_s"][0] == 39600 and k["actual_production_time_s"][0] == 34200
    assert k["setup_time_s"][0] == 1800 and k["down_time_s"][0] == 3600
    assert k["availability"][0] == pytest.approx(34200 / 39600, rel=1e-12)
    assert k["produced_quantity"][0] == 14000 and k["scrap_quantity"][0] == 280 and k["good_quantity"][0] == 13720
    assert k["performance"][0] == pytest.approx(2.0 * 14000 / 34200, rel=1e-12)
    assert k["quality"][0] == pytest.approx(0.98, rel=1e-12)
    assert k["oee"][0] == pytest.approx(28000 / 39600 * 0.98, rel=1e-12)
    assert k["failure_events"][0] == 2
    assert k["mtbf_s"][0] == pytest.approx((34200 + 1800) / 2) and k["mttr_s"][0] == pytest.approx(1800)
    assert k["energy_kwh"][0] == pytest.approx(450.0)
    assert k["energy_per_good_unit_kwh"][0] == pytest.approx(450 / 13720)
    assert k["co2_per_good_unit_kg"][0] == pytest.approx(450 * 0.5 / 13720)
    assert k["rework_ratio"] == (None, "no rework_count signal configured")
    shift = kpis(db, "m1", "shift", at("08:00"))
    assert shift["availability"][0] == pytest.approx(34200 / 39600)
    hour = kpis(db, "m1", "hour", at("10:00"))  # down 10:00-10:15, running after
    assert hour["availability"][0] == pytest.approx(0.75) and hour["mttr_s"][0] == 900
    assert hour["mtbf_s"][0] == 2700
    assert kpis(db, "m1", "hour", at("11:00"))["mttr_s"] == (None, "no failure events in bucket")
    night = kpis(db, "m1", "hour", at("03:00"))
    assert night["availability"] == (None, "planned busy time is zero")
    k2 = kpis(db, "m2", "day", DAY)
    assert k2["availability"][0] == pytest.approx(36000 / 43200)
    assert k2["produced_quantity"][0] == 30000 and k2["good_quantity"][0] == 29000  # reset: 5000 + 25000
    assert k2["energy_kwh"][0] == pytest.approx(6 * 10 + 2 * 2 + 4 * 10)
    assert k2["mttr_s"][0] == 7200
    with psycopg.connect(db) as c:
        prov = c.execute("SELECT definition_version, code_version, input_rows, coverage, provenance "
                         "FROM kpi_values WHERE asset_id='m1' AND bucket='day' AND kpi='oee'").fetchone()
    assert prov is not None and prov[0] and prov[1].startswith("shopfloor") and prov[2] > 0
    assert prov[3] == pytest.approx(17 / 24)  # state known from 07:00 to midnight
    assert prov[4]["emission_factor_version"] == "test-ef-1"


def test_line_rollup_is_ratio_of_sums_and_networking_rate(db: str) -> None:
    insert(db, SAMPLES)
    backfill(db, cfg(), DAY, DAY + timedelta(days=1))
    line = kpis(db, "line-1", "day", DAY)
    assert line["availability"][0] == pytest.approx((34200 + 36000) / (39600 + 43200), rel=1e-12)
    assert line["availability"][0] != pytest.approx((34200 / 39600 + 36000 / 43200) / 2, rel=1e-6)
    perf = (28000 + 30000) / (34200 + 36000)
    qual = (13720 + 29000) / (14000 + 30000)
    assert line["performance"][0] == pytest.approx(perf, rel=1e-12)
    assert line["quality"][0] == pytest.approx(qual, rel=1e-12)
    assert line["oee"][0] == pytest.approx((34200 + 36000) / (39600 + 43200) * perf * qual, rel=1e-12)
    assert line["energy_kwh"][0] == pytest.approx(554.0)
    assert line["networking_rate"][0] == pytest.approx(2 / 3)  # m3 has no device
    plant = kpis(db, "plant-1", "day", DAY)
    assert plant["oee"][0] == pytest.approx(line["oee"][0])


def test_no_shift_calendar_gives_null_with_reason(db: str) -> None:
    insert(db, SAMPLES)
    backfill(db, cfg("shifts: []"), DAY, DAY + timedelta(days=1))
    k = kpis(db, "m1", "day", DAY)
    assert k["availability"] == (None, "no shift calendar")
    assert k["oee"] == (None, "no shift calendar")
    assert k["planned_busy_time_s"] == (None, "no shift calendar")
    assert k["quality"][0] == pytest.approx(0.98)  # counts do not need a calendar
    assert kpis(db, "line-1", "day", DAY)["availability"] == (None, "no shift calendar")


def test_calendar_always_is_an_explicit_choice(db: str) -> None:
    insert(db, SAMPLES)
    c = parse_config((CONFIG % {"shifts": ""}).replace("calendar: shifts", "calendar: always"))
    backfill(db, c, DAY, DAY + timedelta(days=1))
    k = kpis(db, "m2", "day", DAY)
    assert k["planned_busy_time_s"][0] == 86400 and k["actual_production_time_s"][0] == 86400 - 8 * 3600 - 7200


def test_late_sample_in_closed_bucket_keeps_revision(db: str) -> None:
    insert(db, SAMPLES)
    until = DAY + timedelta(days=2)
    first = run_once(db, cfg(), until=until)
    assert first.windows["m1"][0] <= at("07:00")
    assert kpis(db, "m1", "day", DAY)["quality"][0] == pytest.approx(0.98)
    insert(db, [("d1", "parts_scrap", at("19:59") + timedelta(seconds=30), 380)])
    second = run_once(db, cfg(), until=until)
    assert second.revisions > 0
    assert kpis(db, "m1", "day", DAY)["quality"][0] == pytest.approx((14000 - 380) / 14000)
    with psycopg.connect(db) as c:
        rev = c.execute("SELECT value, revision FROM kpi_value_revisions WHERE asset_id='m1' AND kpi='quality' "
                        "AND bucket='day' AND bucket_start=%s", (DAY,)).fetchall()
        cur = c.execute("SELECT revision FROM kpi_values WHERE asset_id='m1' AND kpi='quality' AND bucket='day' "
                        "AND bucket_start=%s", (DAY,)).fetchone()
    assert rev == [(pytest.approx(0.98), 1)] and cur == (2,)
    third = run_once(db, cfg(), until=until)
    assert third.revisions == 0


def test_workers_skip_assets_claimed_by_another(db: str) -> None:
    insert(db, SAMPLES)
    with psycopg.connect(db, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(hashtext('m1'))")
        report = run_once(db, cfg(), until=DAY + timedelta(days=1))
    assert "m1" in report.skipped_locked and "m2" in report.windows
    assert kpis(db, "m1", "day", DAY) == {} and kpis(db, "m2", "day", DAY)


def test_bucket_start_is_local_midnight_in_utc(db: str) -> None:
    insert(db, SAMPLES)
    backfill(db, cfg(), DAY, DAY + timedelta(days=1))
    with psycopg.connect(db) as c:
        starts = {r[0] for r in c.execute("SELECT bucket_start FROM kpi_values WHERE bucket='day' AND asset_id='m1'")}
    assert datetime(2024, 1, 9, 16, tzinfo=UTC) in starts


STATE_MODEL = """
plant: {id: p, timezone: Asia/Shanghai}
kpi: {calendar: always, micro_stop_s: %(micro)s}
assets:
  - {id: m1, kind: machine, device: d1, ideal_cycle_time_s: 1.0,
     signals: {state: {tag: status, map: {1: running, 2: idle, 3: down, 5: planned_stop}}}}
  - {id: m2, kind: machine, device: d2, micro_stop_s: 0,
     signals: {state: {tag: status, map: {1: running, 2: idle, 3: down, 5: planned_stop}}}}
devices:
  - {id: d1, protocol: modbus, endpoint: "tcp://127.0.0.1:5020", poll_interval_s: %(poll)s,
     tags: [{name: status, address: 40001}]}
  - {id: d2, protocol: modbus, endpoint: "tcp://127.0.0.1:5021", poll_interval_s: %(poll)s,
     tags: [{name: status, address: 40001}]}
"""


def state_cfg(micro: float = 0, poll: float = 86400) -> PlantConfig:
    return parse_config(STATE_MODEL % {"micro": micro, "poll": poll})


def sec(hhmmss: str) -> datetime:
    h, m, s = (int(x) for x in hhmmss.split(":"))
    return DAY + timedelta(hours=h, minutes=m, seconds=s)


MICRO = [("08:00:00", 1), ("08:10:00", 3), ("08:10:30", 1),  # a 30 s stop: micro
         ("08:20:00", 2), ("08:25:00", 1),  # a 5 min stop: not micro
         ("08:30:00", 3), ("08:30:20", 2), ("08:30:50", 1),  # down then idle, 50 s in all: one micro-stop
         ("09:00:00", 5)]


def test_micro_stops_below_threshold_count_as_running_with_loss(db: str) -> None:
    insert(db, [(d, "status", sec(t), v) for d in ("d1", "d2") for t, v in MICRO])
    backfill(db, state_cfg(micro=60), DAY, DAY + timedelta(days=1))
    k = kpis(db, "m1", "hour", at("08:00"))
    assert k["actual_production_time_s"][0] == 3300 and k["idle_time_s"][0] == 300
    assert k["down_time_s"][0] == 0 and k["failure_events"][0] == 0
    assert k["micro_stop_time_s"][0] == 80 and k["micro_stop_count"][0] == 2
    plain = kpis(db, "m2", "hour", at("08:00"))  # the machine's own micro_stop_s: 0 keeps the ISO reading
    assert plain["actual_production_time_s"][0] == 3220 and plain["down_time_s"][0] == 50
    assert plain["idle_time_s"][0] == 330 and plain["failure_events"][0] == 2
    assert plain["micro_stop_time_s"][0] == 0 and plain["micro_stop_count"][0] == 0
    with psycopg.connect(db) as c:
        prov = c.execute("SELECT provenance FROM kpi_values WHERE asset_id = 'm1' AND kpi = 'availability' "
                         "AND bucket = 'hour' AND bucket_start = %s", (at("08:00"),)).fetchone()
    assert prov is not None and prov[0]["micro_stop_s"] == 60 and prov[0]["reduced_speed_ratio"] == 0
    line = kpis(db, "p", "hour", at("08:00"))  # roll-ups sum the new elements like any other
    assert line["micro_stop_time_s"][0] == 80 and line["micro_stop_count"][0] == 2


def test_micro_stop_straddling_a_chunk_boundary_is_classified_from_both_sides(db: str) -> None:
    rows = [("23:59:00", 1), ("23:59:50", 3)]
    insert(db, [("d1", "status", sec(t), v) for t, v in rows]
           + [("d1", "status", DAY + timedelta(days=1, seconds=20), 1),
              ("d1", "status", DAY + timedelta(days=1, seconds=120), 5)])
    backfill(db, state_cfg(micro=60), DAY, DAY + timedelta(days=2))
    before = kpis(db, "m1", "hour", at("23:00"))
    after = kpis(db, "m1", "hour", DAY + timedelta(days=1))
    assert before["micro_stop_time_s"][0] == 10 and before["down_time_s"][0] == 0
    assert after["micro_stop_time_s"][0] == 20 and after["actual_production_time_s"][0] == 120


def test_stale_state_sample_of_a_polled_device_becomes_unknown_time(db: str) -> None:
    rows = [("08:00:00", 1), ("08:00:10", 1), ("08:10:00", 3), ("08:20:00", 2)]
    insert(db, [("d1", "status", sec(t), v) for t, v in rows] + [("d1", "status", at("09:00"), 5)])
    backfill(db, state_cfg(poll=1), DAY, DAY + timedelta(days=1))  # polled every 1 s: a sample holds <= 30 s
    k = kpis(db, "m1", "hour", at("08:00"))
    assert k["actual_production_time_s"][0] == 40 and k["down_time_s"][0] == 30 and k["idle_time_s"][0] == 30
    assert k["no_data_time_s"][0] == 3600 - 100
    with psycopg.connect(db) as c:
        cov = c.execute("SELECT coverage, provenance FROM kpi_values WHERE asset_id = 'm1' AND kpi = 'availability' "
                        "AND bucket = 'hour' AND bucket_start = %s", (at("08:00"),)).fetchone()
    assert cov is not None and cov[0] == pytest.approx(100 / 3600) and cov[1]["state_max_hold_s"] == 30


def test_disconnect_makes_state_unknown_until_the_next_sample(db: str) -> None:
    insert(db, [("d1", "status", at("08:00"), 1), ("d1", "status", sec("08:40:01"), 1),
                ("d1", "status", at("09:00"), 5)])
    with psycopg.connect(db) as c:
        c.execute("INSERT INTO device_status (ts, device_id, state, reason) VALUES (%s, 'd1', 'disconnected', "
                  "'timeout'), (%s, 'd1', 'connected', 'connected')", (at("08:30"), at("08:40")))
    backfill(db, state_cfg(), DAY, DAY + timedelta(days=1))
    k = kpis(db, "m1", "hour", at("08:00"))
    assert k["actual_production_time_s"][0] == 1800 + 1199 and k["no_data_time_s"][0] == 601
    assert k["availability"][0] == pytest.approx(2999 / 3600)


def test_bucket_without_any_machine_data_is_null_not_zero(db: str) -> None:
    """Calendar says planned, but nothing is known of the machine: availability and OEE are NULL, not 0 %."""
    insert(db, [("d1", "status", at("08:00"), 1), ("d1", "status", at("09:00"), 5)])
    backfill(db, state_cfg(), DAY, DAY + timedelta(days=1))
    empty = kpis(db, "m1", "hour", at("07:00"))
    assert empty["availability"] == (None, "no machine data in bucket (coverage 0)")
    assert empty["oee"] == (None, "no machine data in bucket (coverage 0)")
    assert kpis(db, "m1", "hour", at("08:00"))["availability"][0] == pytest.approx(1.0)


SPEED_MODEL = """
plant: {id: p, timezone: Asia/Shanghai}
kpi: {calendar: always, micro_stop_s: 60, reduced_speed_ratio: 0.8}
assets:
  - {id: m1, kind: machine, device: d1, ideal_cycle_time_s: 1.0,
     signals: {state: {tag: status, map: {1: running, 2: idle, 3: down, 5: planned_stop}},
               total_count: {tag: parts_total}}}
  - {id: m2, kind: machine, device: d2,
     signals: {state: {tag: status, map: {1: running, 2: idle, 3: down, 5: planned_stop}},
               total_count: {tag: parts_total}}}
devices:
  - {id: d1, protocol: modbus, endpoint: "tcp://127.0.0.1:5020", poll_interval_s: 86400,
     tags: [{name: status, address: 40001}, {name: parts_total, address: 40002}]}
  - {id: d2, protocol: modbus, endpoint: "tcp://127.0.0.1:5021", poll_interval_s: 86400,
     tags: [{name: status, address: 40001}, {name: parts_total, address: 40002}]}
"""
SPEED_STATES = [("08:00:00", 1), ("08:05:00", 3), ("08:05:30", 1),  # a 30 s micro-stop at 08:05
                ("08:10:00", 2), ("08:20:00", 1), ("08:30:00", 5)]  # idle 10 min, planned stop from 08:30
# parts per minute from 08:00 (PRU 1 s: 60 is full speed, slow below 0.8 x 60 = 48 per running minute)
SPEED_PARTS = [60, 60, 60, 30, 30, 30, 60, 60, 60, 60, *[0] * 10, 40, 40, *[60] * 8]


def counter_rows(start: datetime, per_minute: list[int]) -> list[tuple[str, str, datetime, float]]:
    """A counter sampled at :15 and :45 of every minute (baseline at the minute), half of a minute's parts each."""
    rows, total = [("d1", "parts_total", start, 0.0)], 0.0
    for k, n in enumerate(per_minute):
        for s in (15, 45):
            total += n / 2
            rows.append(("d1", "parts_total", start + timedelta(minutes=k, seconds=s), total))
    return rows


def test_reduced_speed_minutes_stay_in_apt_and_are_counted_as_periods(db: str) -> None:
    states = [(d, "status", sec(t), v) for d in ("d1", "d2") for t, v in SPEED_STATES]
    parts = counter_rows(at("08:00"), SPEED_PARTS)
    insert(db, states + parts + [("d2", tag, ts, v) for _, tag, ts, v in parts])
    backfill(db, parse_config(SPEED_MODEL), DAY, DAY + timedelta(days=1))
    k = kpis(db, "m1", "hour", at("08:00"))
    # APT = 08:00-08:10 (the 30 s micro-stop included) + 08:20-08:30 = 1200 s
    assert k["actual_production_time_s"][0] == 1200 and k["micro_stop_time_s"][0] == 30
    # slow minutes: 08:03, 08:04 (30 < 48) and 08:20, 08:21 (40 < 48). 08:05 ran 30 s (the micro-stop is its own
    # loss) for 30 parts >= 0.8 x 30: not slow. Two periods of 120 s.
    assert k["reduced_speed_time_s"][0] == 240 and k["reduced_speed_count"][0] == 2
    assert k["produced_quantity"][0] == sum(SPEED_PARTS)
    assert k["performance"][0] == pytest.approx(sum(SPEED_PARTS) / 1200, rel=1e-12)  # unchanged: APT stays
    assert k["availability"][0] == pytest.approx(1200 / 1800, rel=1e-12)  # planned stop from 08:30
    no_pru = kpis(db, "m2", "hour", at("08:00"))
    assert no_pru["reduced_speed_time_s"] == (None, "no ideal_cycle_time_s configured")
    day = kpis(db, "p", "day", DAY)  # roll-ups sum the element; m2 has none and is left out
    assert day["reduced_speed_time_s"][0] == 240 and day["reduced_speed_count"][0] == 2
    with psycopg.connect(db) as c:
        prov = c.execute("SELECT provenance FROM kpi_values WHERE asset_id = 'm1' AND kpi = 'reduced_speed_time_s' "
                         "AND bucket = 'hour' AND bucket_start = %s", (at("08:00"),)).fetchone()
    assert prov is not None and prov[0]["reduced_speed_ratio"] == 0.8 and prov[0]["reduced_speed_window_s"] == 60
    backfill(db, parse_config(SPEED_MODEL.replace("reduced_speed_ratio: 0.8", "reduced_speed_ratio: 0")), DAY,
             DAY + timedelta(days=1))
    off = kpis(db, "m1", "hour", at("08:00"))
    assert off["reduced_speed_time_s"][0] == 0 and off["reduced_speed_count"][0] == 0
    assert off["actual_production_time_s"][0] == 1200


def test_reduced_speed_period_across_a_chunk_boundary_is_counted_once(db: str) -> None:
    start = DAY + timedelta(hours=23, minutes=57)  # running 23:57-00:03; slow 23:59 and 00:00 (30 parts each)
    later = DAY + timedelta(days=1, hours=23, minutes=58)  # running 23:58-00:02; fast 23:59, slow 00:00
    insert(db, [("d1", "status", start, 1), ("d1", "status", start + timedelta(minutes=6), 5),
                ("d1", "status", later, 1), ("d1", "status", later + timedelta(minutes=4), 5)]
           + counter_rows(start, [60, 60, 30, 30, 60, 60]) + counter_rows(later, [60, 60, 30, 60])[1:])
    backfill(db, parse_config(SPEED_MODEL), DAY, DAY + timedelta(days=3))
    first, second, third = (kpis(db, "m1", "day", DAY + timedelta(days=d)) for d in range(3))
    assert first["reduced_speed_time_s"][0] == 60 and first["reduced_speed_count"][0] == 1
    assert second["reduced_speed_time_s"][0] == 60 and second["reduced_speed_count"][0] == 0
    assert second["actual_production_time_s"][0] == 180 + 120
    # the minute before midnight is read along with the day (its parts too): 00:00 starts a period there
    assert third["reduced_speed_time_s"][0] == 60 and third["reduced_speed_count"][0] == 1
