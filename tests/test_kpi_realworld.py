"""KPIs from plant-like raw samples (COPY -> kpi backfill / kpi run): counter corrections, resets and rollovers,
colliding shifts, daylight saving in Europe/Berlin, partial backfills, off-calendar counts, no data, impossible
values, and the command line. Every expected value is worked by hand in the comments."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from typer.testing import CliRunner

from core.config import parse_config
from core.plant import PlantConfig
from kpi.buckets import window_start
from kpi.job import backfill, run_once
from shopfloor.cli import app

pytestmark = pytest.mark.integration
TZ = ZoneInfo("Europe/Berlin")
DAY = datetime(2024, 1, 10, tzinfo=TZ)  # a Wednesday, local midnight (CET, +01:00)

CONFIG = """
plant: {id: plant-1, timezone: Europe/Berlin, emission_factor_kg_per_kwh: 0.5}
shifts: %(shifts)s
kpi: {calendar: shifts}
assets:
  - id: line-1
    kind: line
    children:
      - id: m1
        kind: machine
        ideal_cycle_time_s: %(ict)s
        device: d1
        signals:
          state: {tag: status, map: {1: running, 2: idle, 3: down}}
          total_count: {tag: parts32}
          energy_kwh: {tag: energy}
      - id: m2
        kind: machine
        ideal_cycle_time_s: 1.0
        device: d2
        signals:
          state: {tag: status, map: {1: running, 3: down}}
          total_count: {tag: parts%(m2_counter)s}
          good_count: {tag: display, rollover: 100000}
devices:
  - {id: d1, protocol: modbus, endpoint: "tcp://127.0.0.1:5020", poll_interval_s: %(poll)s, tags: [
      {name: status, address: 40001}, {name: parts32, address: 40002, type: uint32},
      {name: energy, address: 40004, type: float32}]}
  - {id: d2, protocol: modbus, endpoint: "tcp://127.0.0.1:5021", poll_interval_s: %(poll)s, tags: [
      {name: status, address: 40001}, {name: parts16, address: 40002}, {name: parts_big, address: 40003,
      type: uint32}, {name: display, address: 40005, type: uint32}]}
"""
DAY_SHIFT = '[{name: day, start: "08:00", end: "20:00"}]'


def cfg(shifts: str = DAY_SHIFT, ict: float = 1.0, poll: float = 86400, m2_counter: str = "16") -> PlantConfig:
    return parse_config(CONFIG % {"shifts": shifts, "ict": ict, "poll": poll, "m2_counter": m2_counter})


def at(hhmm: str, day: datetime = DAY) -> datetime:
    h, m = hhmm.split(":")
    return day + timedelta(hours=int(h), minutes=int(m))


def insert(url: str, rows: list[tuple[str, str, datetime, float]]) -> None:
    with psycopg.connect(url) as c, c.cursor() as cur:
        with cur.copy("COPY samples (device_id, tag, ts, value) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)


def kpis(url: str, asset: str, bucket: str, start: datetime, shift: str | None = None) -> dict[str, Any]:
    """kpi -> (value, null_reason) of one bucket; also '_flags', '_prov', '_final', '_date' of its rows."""
    with psycopg.connect(url) as c:
        rows = c.execute("SELECT kpi, value, null_reason, quality_flags, provenance, is_final, bucket_date "
                         "FROM kpi_values WHERE asset_id = %s AND bucket = %s AND bucket_start = %s "
                         "AND shift_name IS NOT DISTINCT FROM %s", (asset, bucket, start, shift)).fetchall()
    out: dict[str, Any] = {k: (v, r) for k, v, r, *_ in rows}
    if rows:
        out["_flags"], out["_prov"], out["_final"], out["_date"] = rows[0][3], rows[0][4], rows[0][5], rows[0][6]
    return out


def states(dev: str, *pairs: tuple[str, int], day: datetime = DAY) -> list[tuple[str, str, datetime, float]]:
    return [(dev, "status", at(t, day), float(v)) for t, v in pairs]


def series(dev: str, tag: str, *pairs: tuple[str, float], day: datetime = DAY) -> list[tuple[str, str, datetime, float]]:
    return [(dev, tag, at(t, day), float(v)) for t, v in pairs]


# m1 runs the whole shift; its uint32 counter is corrected down by one part, reads negative once, is reset to 0
# twice (once from 65,000: a 32-bit counter, so not a 16-bit wrap); the float energy meter steps back 0.1 kWh.
COUNTER_DAY = [
    *states("d1", ("08:00", 1), ("20:00", 2)),
    *series("d1", "parts32", ("08:00", 100000), ("09:00", 100500), ("09:30", 100499), ("10:00", 101000),
            ("10:30", -5), ("11:00", 101500), ("12:00", 0), ("13:00", 65000), ("14:00", 0), ("15:00", 2000)),
    # +500, correction (0), +501, negative (ignored), +500, reset (0), +65000, reset (0), +2000 = 68501
    *series("d1", "energy", ("08:00", 70000.0), ("12:00", 70400.0), ("12:30", 70399.9), ("16:00", 70800.0)),
    # +400, correction (0), +400.1 = 800.1
    # m2: uint16 counter wraps 65530 -> 5 (+11); the good counter declares rollover 100000: 99990 -> 10 (+20)
    *states("d2", ("08:00", 1), ("20:00", 3)),
    *series("d2", "parts16", ("08:00", 65000), ("12:00", 65530), ("16:00", 5)),
    *series("d2", "display", ("08:00", 99000), ("12:00", 99990), ("16:00", 10)),
    # 32-bit reading of the same machine (used with m2_counter="_big"): 65,000 -> 5 is a reset, not a wrap
    *series("d2", "parts_big", ("08:00", 60000), ("12:00", 65000), ("16:00", 5)),
]


def test_counter_drops_corrections_resets_and_declared_rollover(db: str) -> None:
    insert(db, COUNTER_DAY)
    report = backfill(db, cfg(), DAY, DAY + timedelta(days=1))
    assert not report.failures
    k = kpis(db, "m1", "day", DAY)
    assert k["produced_quantity"][0] == 68501
    assert k["energy_kwh"][0] == pytest.approx(800.1)
    assert k["performance"][0] == pytest.approx(68501 / 43200, rel=1e-12)  # stored as computed (> 1) ...
    assert k["_flags"] == ["counter_correction", "negative_counter_reading", "performance_above_1"]  # ... flagged
    dq = k["_prov"]["data_quality"]
    assert dq["events"]["total_count"] == {"corrections": 1, "negative_readings": 1,
                                                                   "resets": 2}
    assert dq["events"]["energy_kwh"] == {"corrections": 1}
    assert "ideal_cycle_time_s" in dq["flags"]["performance_above_1"]
    hour = kpis(db, "m1", "hour", at("09:00"))  # +500 at 09:00; the 09:30 correction adds nothing
    assert hour["produced_quantity"][0] == 500 and hour["_flags"] == ["counter_correction"]
    assert kpis(db, "m1", "hour", at("08:00"))["_flags"] is None  # a clean hour has no flags
    line = kpis(db, "line-1", "day", DAY)
    assert line["energy_kwh"][0] == pytest.approx(800.1)  # no phantom energy rolls up
    assert "counter_correction" in line["_flags"]  # and the line shows where its machines' data was odd
    assert line["_prov"]["data_quality"]["flags"]["counter_correction"] == "in machine(s) m1"
    k2 = kpis(db, "m2", "day", DAY)
    assert k2["produced_quantity"][0] == 530 + 11 and k2["good_quantity"][0] == 990 + 20
    assert k2["_prov"]["data_quality"]["events"]["total_count"] == {"rollovers": 1}


def test_32_bit_counter_reset_is_not_read_as_a_16_bit_wrap(db: str) -> None:
    insert(db, COUNTER_DAY)
    backfill(db, cfg(m2_counter="_big"), DAY, DAY + timedelta(days=1))
    assert kpis(db, "m2", "day", DAY)["produced_quantity"][0] == 5000 + 5  # 65,000 -> 5: reset, counts 5


def test_reset_threshold_is_configurable_per_signal(db: str) -> None:
    insert(db, COUNTER_DAY)
    c = parse_config((CONFIG % {"shifts": DAY_SHIFT, "ict": 1.0, "poll": 86400, "m2_counter": "16"}).replace(
        "total_count: {tag: parts32}", "total_count: {tag: parts32, reset_below: 100000}"))
    backfill(db, c, DAY, DAY + timedelta(days=1))
    # 100,500 -> 100,499 is still a correction (not below 100,000); 101,500 -> 0 and 65,000 -> 0 resets as before
    assert kpis(db, "m1", "day", DAY)["produced_quantity"][0] == 68501
    c = parse_config((CONFIG % {"shifts": DAY_SHIFT, "ict": 1.0, "poll": 86400, "m2_counter": "16"}).replace(
        "total_count: {tag: parts32}", "total_count: {tag: parts32, reset_ratio: 0.999999}"))
    backfill(db, c, DAY, DAY + timedelta(days=1))
    # with a ratio this close to 1 the one-part correction reads as a reset after which 100,499 parts were made
    assert kpis(db, "m1", "day", DAY)["produced_quantity"][0] == 68501 + 100499


def test_two_shifts_starting_together_and_a_failing_asset_do_not_stop_the_run(
        db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    insert(db, COUNTER_DAY)
    shifts = '[{name: a, start: "08:00", end: "14:00"}, {name: b, start: "08:00", end: "20:00"}]'
    report = backfill(db, cfg(shifts), DAY, DAY + timedelta(days=1))
    assert not report.failures
    a, b = kpis(db, "m1", "shift", at("08:00"), "a"), kpis(db, "m1", "shift", at("08:00"), "b")
    assert a["calendar_time_s"][0] == 6 * 3600 and b["calendar_time_s"][0] == 12 * 3600
    assert a["produced_quantity"][0] == 500 + 501 + 500 + 65000 and b["produced_quantity"][0] == 68501
    assert kpis(db, "line-1", "shift", at("08:00"), "a")["calendar_time_s"][0] == 2 * 6 * 3600
    assert a["_date"] == date(2024, 1, 10)

    import kpi.job

    real = kpi.job.read_machine

    def broken(conn: Any, machine: Any, *args: Any, **kw: Any) -> Any:
        if machine.id == "m2":
            raise ValueError("simulated read failure")
        return real(conn, machine, *args, **kw)

    monkeypatch.setattr(kpi.job, "read_machine", broken)
    real_chunk = kpi.job.read_chunk
    monkeypatch.setattr(kpi.job, "read_chunk", lambda conn, machine, *a, **kw: (  # the one-query reader too
        broken(conn, machine, *a, **kw), real_chunk(conn, machine, *a, **kw)[1]))
    report = run_once(db, cfg(shifts), until=DAY + timedelta(days=2))
    assert len(report.failures) >= 1 and all(f.startswith("m2: buckets starting ") for f in report.failures)
    assert "simulated read failure" in report.failures[0]
    assert kpis(db, "m1", "day", DAY)["produced_quantity"][0] == 68501  # m1 went on
    with psycopg.connect(db) as c:
        marks = dict(c.execute("SELECT asset_id, computed_until FROM kpi_watermarks").fetchall())
    assert marks["m1"] == DAY + timedelta(days=2)
    assert marks["m2"] < DAY + timedelta(days=2)  # m2 stays where the backfill left it: retried next run


SPRING = datetime(2024, 3, 31, tzinfo=TZ)  # Sunday: 02:00 CET -> 03:00 CEST


def test_dst_spring_forward_two_shift_starts_fold_into_one_instant(db: str) -> None:
    shifts = '[{name: x, start: "02:00", end: "06:00"}, {name: y, start: "03:00", end: "07:00"}]'
    rows = [("d1", "status", SPRING + timedelta(hours=-1), 1.0),
            ("d1", "parts32", SPRING + timedelta(hours=-1), 0.0),
            ("d1", "parts32", datetime(2024, 3, 31, 4, 59, tzinfo=UTC), 14400.0)]  # 06:59 CEST
    insert(db, rows)
    report = backfill(db, cfg(shifts), SPRING, SPRING + timedelta(days=1))
    assert not report.failures
    start = datetime(2024, 3, 31, 1, tzinfo=UTC)  # 02:00 does not exist: both shifts start at 03:00 CEST
    x, y = kpis(db, "m1", "shift", start, "x"), kpis(db, "m1", "shift", start, "y")
    assert x["calendar_time_s"][0] == 3 * 3600 and y["calendar_time_s"][0] == 4 * 3600
    assert x["_date"] == y["_date"] == date(2024, 3, 31)
    day = kpis(db, "m1", "day", SPRING)
    assert day["calendar_time_s"][0] == 4 * 3600  # union 03:00-07:00 CEST
    assert day["availability"][0] == 1.0 and day["produced_quantity"][0] == 14400
    with psycopg.connect(db) as c:
        hours = c.execute("SELECT count(DISTINCT bucket_start) FROM kpi_values WHERE asset_id = 'm1' AND "
                          "bucket = 'hour' AND bucket_date = '2024-03-31'").fetchone()
    assert hours == (23,)


AUTUMN = datetime(2024, 10, 26, tzinfo=TZ)  # Saturday; the night to Sunday has 03:00 CEST -> 02:00 CET


def test_night_shift_across_midnight_and_dst_fall_back_mtbf_mttr_energy(db: str) -> None:
    night = '[{name: night, start: "22:00", end: "06:00"}]'
    sun = AUTUMN + timedelta(days=1)
    insert(db, [
        ("d1", "status", at("22:00", AUTUMN), 1.0), ("d1", "status", at("23:00", AUTUMN), 3.0),
        ("d1", "status", at("23:30", AUTUMN), 1.0),
        ("d1", "status", datetime(2024, 10, 27, 3, tzinfo=UTC), 3.0),  # 04:00 CET
        ("d1", "status", datetime(2024, 10, 27, 4, tzinfo=UTC), 1.0),  # 05:00 CET
        ("d1", "status", at("06:00", sun), 2.0),
        ("d1", "parts32", at("22:00", AUTUMN), 0.0), ("d1", "parts32", at("05:59", sun), 13500.0),
        ("d1", "energy", at("22:00", AUTUMN), 1000.0), ("d1", "energy", at("05:59", sun), 1900.0),
    ])
    backfill(db, cfg(night, ict=2.0), AUTUMN, sun + timedelta(days=1))
    k = kpis(db, "m1", "shift", at("22:00", AUTUMN), "night")
    # 22:00 CEST -> 06:00 CET is 9 h: 32400 s; down 30 min + 1 h: APT 27000, FE 2
    assert k["calendar_time_s"][0] == 32400 and k["actual_production_time_s"][0] == 27000
    assert k["failure_events"][0] == 2 and k["mtbf_s"][0] == 13500 and k["mttr_s"][0] == 2700
    assert k["performance"][0] == pytest.approx(2.0 * 13500 / 27000) and k["energy_kwh"][0] == pytest.approx(900)
    assert k["energy_per_unit_kwh"][0] == pytest.approx(900 / 13500)
    assert k["_date"] == date(2024, 10, 26)  # the shift belongs to the day it starts
    sat = kpis(db, "m1", "day", AUTUMN)
    # Saturday: the end of Friday's night shift (00:00-06:00) and the start of this one (22:00-24:00)
    assert sat["calendar_time_s"][0] == 8 * 3600 and sat["failure_events"][0] == 1


# m1: runs 06:00-20:00 but the shift is 08:00-20:00; 2 s ideal cycle, one part every 2 s
OFF_SHIFT = [*states("d1", ("06:00", 1), ("20:00", 2)),
             *series("d1", "parts32", ("06:00", 0), ("07:00", 1800), ("07:59", 3570), ("19:59", 25170)),
             *series("d1", "energy", ("06:00", 0), ("07:59", 20), ("19:59", 140))]


def test_counts_and_energy_are_clipped_to_planned_time(db: str) -> None:
    insert(db, OFF_SHIFT)
    backfill(db, cfg(ict=2.0), DAY, DAY + timedelta(days=1))
    k = kpis(db, "m1", "day", DAY)
    # an increment belongs to the instant of the later sample: 07:00 and 07:59 are off-shift, 19:59 inside
    assert k["produced_quantity"][0] == 21600 and k["off_calendar_produced_quantity"][0] == 3570
    assert k["performance"][0] == pytest.approx(1.0) and k["_flags"] is None  # not 3570 parts too many
    assert k["energy_kwh"][0] == pytest.approx(120) and k["off_calendar_energy_kwh"][0] == pytest.approx(20)
    early = kpis(db, "m1", "hour", at("07:00"))
    assert early["produced_quantity"][0] == 0 and early["off_calendar_produced_quantity"][0] == 3570
    assert early["performance"] == (None, "bucket outside the shift calendar (no planned operation time); "
                                          "3570 parts counted outside it")


def test_power_integral_is_clipped_to_planned_time(db: str) -> None:
    c = parse_config((CONFIG % {"shifts": DAY_SHIFT, "ict": 2.0, "poll": 86400, "m2_counter": "16"}).replace(
        "energy_kwh: {tag: energy}", "power_kw: {tag: energy}"))
    insert(db, [*states("d1", ("06:00", 1), ("21:00", 2)), *series("d1", "energy", ("06:00", 10.0), ("21:00", 0.0))])
    backfill(db, c, DAY, DAY + timedelta(days=1))
    k = kpis(db, "m1", "day", DAY)
    assert k["energy_kwh"][0] == pytest.approx(120) and k["off_calendar_energy_kwh"][0] == pytest.approx(30)


def test_no_data_is_null_with_its_reason_never_zero(db: str) -> None:
    # m2 is never seen; m1 (polled every second) runs, but its counter stops reporting at 09:00
    insert(db, [*[("d1", "status", at("08:00") + timedelta(seconds=s), 1.0) for s in range(0, 7200, 10)],
                *series("d1", "parts32", ("08:00", 0), ("08:30", 900), ("09:00", 1800))])
    backfill(db, cfg(poll=1), DAY, DAY + timedelta(days=1))
    m2 = kpis(db, "m2", "day", DAY)
    for name in ("produced_quantity", "good_quantity"):
        assert m2[name][0] is None and "not seen yet" in m2[name][1]
    assert m2["failure_events"] == (None, "no machine data in bucket (coverage 0)")
    assert m2["mtbf_s"] == (None, "no machine data in bucket (coverage 0)")
    h10 = kpis(db, "m1", "hour", at("10:00"))
    # only the last state sample (09:59:50) still holds 20 s into the hour, and the polled counter sent nothing
    assert h10["actual_production_time_s"][0] == 20
    assert h10["produced_quantity"] == (None, "no total_count sample in bucket (polled counter: the data stopped)")
    assert h10["performance"] == h10["produced_quantity"]
    line = kpis(db, "line-1", "hour", at("08:00"))
    assert line["produced_quantity"][0] == 900  # the unseen machine is left out of the sum, not added as 0


def test_partial_backfill_never_lowers_a_final_bucket(db: str) -> None:
    insert(db, COUNTER_DAY)
    backfill(db, cfg(), DAY, DAY + timedelta(days=1))
    before = kpis(db, "m1", "day", DAY)
    report = backfill(db, cfg(), at("10:00"), at("11:00"))
    assert report.widened == (DAY.astimezone(UTC), (DAY + timedelta(days=1)).astimezone(UTC))
    after = kpis(db, "m1", "day", DAY)
    assert after["_final"] and after["produced_quantity"] == before["produced_quantity"]
    assert after["availability"] == before["availability"] == (1.0, None)
    assert kpis(db, "m1", "shift", at("08:00"), "day")["produced_quantity"][0] == 68501
    run_once(db, cfg(), until=DAY + timedelta(days=2))
    assert kpis(db, "m1", "day", DAY)["produced_quantity"][0] == 68501


def test_backfill_leaves_a_watermark_and_run_goes_on_from_it(db: str) -> None:
    insert(db, COUNTER_DAY)
    backfill(db, cfg(), DAY, DAY + timedelta(days=1))
    report = run_once(db, cfg(), until=DAY + timedelta(days=1, hours=5))
    assert report.windows["m1"][0] == window_start(cfg(), DAY + timedelta(days=1))  # not the first sample
    insert(db, series("d1", "parts32", ("19:00", 2100)))  # late: +100 in the day's last hour of the shift
    report = run_once(db, cfg(), until=DAY + timedelta(days=1, hours=6))
    assert report.revisions > 0
    assert kpis(db, "m1", "day", DAY)["produced_quantity"][0] == 68601


def test_cli_reads_plant_clock_says_widened_prints_flags_and_one_line_failures(
        db: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    insert(db, COUNTER_DAY)
    plant = tmp_path / "plant.yaml"
    plant.write_text(CONFIG % {"shifts": DAY_SHIFT, "ict": 1.0, "poll": 86400, "m2_counter": "16"})
    runner = CliRunner()
    args = ["kpi", "backfill", "-c", str(plant), "--database-url", db]
    res = runner.invoke(app, [*args, "--from", "2024-01-10T00:00", "--to", "2024-01-10T10:30"])
    assert res.exit_code == 0, res.output
    assert "range widened to whole buckets: 2024-01-10T00:00:00+01:00 to 2024-01-11T00:00:00+01:00" in res.output
    assert "data-quality flags: counter_correction in" in res.output
    assert kpis(db, "m1", "day", DAY)["produced_quantity"][0] == 68501  # local midnight, not UTC midnight

    import kpi.job

    def broken(*_: Any, **__: Any) -> Any:
        raise ValueError("simulated read failure")

    monkeypatch.setattr(kpi.job, "read_machine", broken)
    monkeypatch.setattr(kpi.job, "read_chunk", broken)
    res = runner.invoke(app, [*args, "--from", "2024-01-10T08:00", "--to", "2024-01-10T09:00"])
    assert res.exit_code == 1
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert errors and all("simulated read failure" in line for line in errors)
    assert errors[0].startswith("error: backfill: m1: buckets starting 2024-01-10 00:00 CET")
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["kpi", "run", "--once", "-c", str(plant), "--database-url", db])
    assert res.exit_code == 1 and "error: kpi run: m1: buckets starting" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["kpi", "run", "--once", "--verbose", "-c", str(plant), "--database-url", db])
    assert res.exit_code == 1


def test_migration_032_upgrades_an_existing_kpi_table(empty_db: str, tmp_path: Any) -> None:
    import shutil

    from collector.db import migrate
    from shopfloor.stages import schema_dirs

    dirs = schema_dirs()
    old = tmp_path / "kpi"
    old.mkdir()
    for f in ("030_kpi.sql", "031_kpi.timescaledb.sql"):
        shutil.copy(next(d for d in dirs if d.name == "schema" and d.parent.name == "kpi") / f, old / f)
    migrate(empty_db, log=lambda _: None, schema_dirs=[dirs[0], old])
    with psycopg.connect(empty_db) as c:
        c.execute("""INSERT INTO kpi_values (bucket_start, bucket, asset_id, kpi, value, shift_name, provenance)
                     VALUES ('2024-01-09 23:00+00', 'shift', 'm1', 'oee', 0.5, 'night', '{"timezone": "Europe/Berlin"}'),
                            ('2024-01-09 23:00+00', 'day', 'm1', 'oee', 0.4, NULL, '{"timezone": "Europe/Berlin"}')""")
    migrate(empty_db, log=lambda _: None, schema_dirs=dirs)
    with psycopg.connect(empty_db) as c:
        rows = c.execute("SELECT bucket, shift_key, bucket_date FROM kpi_values ORDER BY bucket").fetchall()
        assert rows == [("day", "", date(2024, 1, 10)), ("shift", "night", date(2024, 1, 10))]
        # a second shift at the same instant is a row of its own now
        c.execute("""INSERT INTO kpi_values (bucket_start, bucket, asset_id, kpi, value, shift_name, shift_key)
                     VALUES ('2024-01-09 23:00+00', 'shift', 'm1', 'oee', 0.6, 'early', 'early')""")


def test_conflicting_state_samples_are_flagged_as_overlapping_states() -> None:
    """The database keeps one sample per (device, tag, ts); other readers (files) may not: flagged, not hidden."""
    import numpy as np

    from kpi.buckets import BucketSet
    from kpi.compute import MachineInputs, machine_elements
    from kpi.formulas import kpis_from_elements
    from kpi.rows import data_quality

    s = 1_000_000
    inp = MachineInputs(state=(np.array([0, 10 * s, 10 * s, 20 * s]), np.array([0, 0, 2, 0])))
    b = BucketSet("hour", np.array([0, 15 * s]), np.array([15 * s, 30 * s]))
    cal = (np.array([0]), np.array([30 * s]))
    es = machine_elements(inp, b, 30 * s, cal)
    assert es.events["state"]["conflicting_samples"].tolist() == [1.0, 0.0]
    e = {k: float(v[0]) for k, v in es.values.items()}
    seen, flags = data_quality(0, es.events, e, kpis_from_elements(e, es.why, None, True))
    assert seen == {"state": {"conflicting_samples": 1.0}} and "overlapping_states" in flags


def test_rollover_width_comes_from_the_declared_type_or_the_rollover_key() -> None:
    c = parse_config("""
plant: {id: p}
assets:
  - {id: ua, kind: machine, device: o, signals: {total_count: {tag: a}, good_count: {tag: b}, scrap_count: {tag: c},
     rework_count: {tag: a, rollover: 1000}}}
  - {id: mb, kind: machine, device: d, signals: {total_count: {tag: p16}, good_count: {tag: f},
     scrap_count: {tag: p32, reset_ratio: 0.2, reset_below: 5}}}
devices:
  - {id: o, protocol: opcua, endpoint: "opc.tcp://127.0.0.1:4840", security: {policy: None}, tags: [
      {name: a, node: "ns=2;s=A", type: uint32}, {name: b, node: "ns=2;s=B", data_type: UInt16},
      {name: c, node: "ns=2;s=C"}]}
  - {id: d, protocol: modbus, endpoint: "tcp://127.0.0.1:502", tags: [
      {name: p16, address: 40001}, {name: p32, address: 40002, type: uint32}, {name: f, address: 40004,
      type: float32}]}
""")
    from kpi.sources import counter_rules

    def modulus(m: str, sig: str) -> float | None:
        s = c.signal(m, sig)
        return None if s is None else s.counter_modulus

    assert modulus("ua", "total_count") == 2.0**32 and modulus("ua", "good_count") == 2.0**16
    assert modulus("ua", "scrap_count") is None and modulus("ua", "rework_count") == 1000  # undeclared; key wins
    assert modulus("mb", "total_count") == 2.0**16 and modulus("mb", "good_count") is None  # float: no wrap
    mb = next(m for m in c.machines() if m.id == "mb")
    rule = counter_rules(c, mb)["scrap_count"]
    assert (rule.modulus, rule.reset_ratio, rule.reset_below, rule.poll_interval_s) == (2.0**32, 0.2, 5.0, 1.0)
    assert counter_rules(c, mb)["good_count"].modulus == 0.0
