"""KPI end to end: simulated factory -> edge (Modbus) -> PostgreSQL -> kpi.job.backfill, against exact ground truth.

The simulator knows every state interval and the instant of every count. The KPI rows computed from what the
edge stored must match the values computed from that truth over the SAME window (first to last stored
sample), within the sampling error derived below.

Sampling error. A state change at true instant T shows in the database at T + d with 0 <= d <= D, where
D = simulator tick (the PLC's registers change only on a tick) + poll interval (the next read) + read latency.
Each boundary of a state's intervals inside the window can therefore move that state's time by at most D (a
state shorter than D may be missed entirely; its error is then its length < D, the same bound). So
|stored - true| <= D x (number of that state's boundaries in the window). Counters are cumulative: only the
two window ends are uncertain, by the counts completed within D of the first and of the last sample (at most
ceil(D / shortest cycle) each). The energy meter likewise: at most 2 x D x the highest power draw.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from core.config import parse_config
from core.plant import PlantConfig
from edge.runner import Edge
from kpi.buckets import from_us, to_us
from kpi.job import backfill
from shopfloor.wiring import InProcessSink
from simulator.factory import Factory, FactoryPlan
from simulator.machine import POWER_KW, Machine
from tests.conftest import free_port

pytestmark = pytest.mark.integration

SPEED = 10.0  # ten simulated seconds per wall second: ~0.2 s wall per part, enough parts for quality to mean much
TICK_S, POLL_S = 0.05, 0.1
LATENCY_S = 0.1  # allowance for the Modbus round trip and event-loop jitter on a loaded test machine
D_US = int((TICK_S + POLL_S + LATENCY_S) * 1e6)
RUN_S = 12.0
STATES = ("running", "idle", "down", "setup", "planned_stop")
ELEMENT_OF = {"running": "actual_production_time_s", "idle": "idle_time_s", "down": "down_time_s",
              "setup": "setup_time_s", "planned_stop": "planned_stop_time_s"}


def plant(factory: Factory, tmp_path: Path) -> PlantConfig:
    doc = factory.plant_config("kpi-e2e")
    doc["kpi"] = {"calendar": "always"}
    doc["edge"] = {"gateway_id": f"gw-{uuid.uuid4().hex[:6]}", "buffer_path": str(tmp_path / "buf.sqlite"),
                   "batch_max_delay_s": 0.1}
    for m, spec in zip(doc["assets"][0]["children"][0]["children"], (m.spec for m in factory.machines), strict=False):
        # the engine works on wall-clock timestamps: the factory writes PRU in wall seconds
        assert m["ideal_cycle_time_s"] == pytest.approx(spec.ideal_cycle_time_s / SPEED)
    return parse_config(yaml.safe_dump(doc, sort_keys=False), "kpi-e2e.yaml")


def overlap(a: int, b: int, lo: int, hi: int) -> int:
    return max(0, min(b, hi) - max(a, lo))


def truth_in(m: Machine, lo: int, hi: int) -> dict[str, Any]:
    """Exact elements of the simulator over [lo, hi] (wall-clock microseconds) and their error bounds."""
    gt = m.ground_truth(hi)
    t: dict[str, Any] = {s: 0 for s in STATES}
    bounds = dict.fromkeys(STATES, 0)
    energy = 0.0
    for a, b, s in gt["intervals"]:
        t[s] += overlap(a, b, lo, hi)
        energy += POWER_KW[s] * overlap(a, b, lo, hi) / 1e6 * m.spec.speed / 3600.0
        for edge in (a, b):
            if lo < edge < hi:
                bounds[s] += 1
    t["energy_kwh"] = energy
    counts = [c for c in gt["counts"] if lo < c[0] <= hi]
    before = [c for c in gt["counts"] if c[0] <= lo]
    base_total, base_scrap = (before[-1][1], before[-1][2]) if before else (0, 0)
    t["pq"] = (counts[-1][1] - base_total) if counts else 0
    t["sq"] = (counts[-1][2] - base_scrap) if counts else 0
    t["bounds"] = bounds
    return t


def stored(url: str, asset: str, bucket: str, lo_us: int, hi_us: int) -> dict[str, float | None]:
    """Element and KPI values of one asset, summed over the buckets of a kind that overlap the window."""
    where = "asset_id = %s AND bucket = %s AND bucket_start <= %s AND bucket_end > %s"
    args = (asset, bucket, from_us(hi_us), from_us(lo_us))
    with psycopg.connect(url) as c:
        rows = c.execute(f"SELECT kpi, sum(value), count(*) FROM kpi_values WHERE {where} GROUP BY kpi",
                         args).fetchall()
        ratios = c.execute(f"SELECT kpi, value FROM kpi_values WHERE {where} "
                           "AND kpi IN ('availability', 'performance', 'quality', 'scrap_ratio')", args).fetchall()
    out: dict[str, float | None] = {k: v for k, v, _ in rows}
    for k, v in ratios:  # one bucket: the stored ratio; several (the window crossed an hour): from the sums
        out[k] = v if len(ratios) == 4 else None
    return out


def test_kpis_from_simulated_factory_match_ground_truth(db: str, tmp_path: Path) -> None:
    plan = FactoryPlan(modbus=2, opcua=0, mqtt=0, sparkplug=0, seed=11, speed=SPEED, duration_scale=0.15,
                       modbus_port=free_port(), tick_s=TICK_S, poll_interval_s=POLL_S, unnetworked=0)
    factory = Factory(plan)
    for m in factory.machines:
        m.spec.scrap_rate = 0.2  # enough scrap in a few seconds for the quality ratio to be tested
    cfg = plant(factory, tmp_path)

    async def main() -> None:
        await factory.start()
        stop = asyncio.Event()
        edge = Edge(cfg, InProcessSink(db))
        task = asyncio.create_task(edge.run(stop))
        await asyncio.sleep(RUN_S)
        stop.set()  # the edge stops (and drains its buffer) while the PLCs still answer
        await task
        await factory.stop()

    asyncio.run(main())
    first: dict[str, int] = {}
    with psycopg.connect(db) as c:
        for dev, t0 in c.execute("SELECT device_id, min(ts) FROM samples WHERE tag = 'status' AND quality = 'good' "
                                 "GROUP BY device_id"):
            first[dev] = to_us(t0)
        (hi,) = c.execute("SELECT max(ts) FROM samples").fetchone()  # type: ignore[misc]
    assert len(first) == 2
    end_us = to_us(hi) + 1  # the job reads ts < end: include the last sample
    report = backfill(db, cfg, from_us(min(first.values())), from_us(end_us))
    assert report.rows_written > 0 and not report.skipped_locked
    for m in factory.machines:
        lo_us = first[f"{m.spec.id}-plc"]  # the window of this machine: its first state sample to the end
        assert end_us - lo_us > RUN_S * 0.7 * 1e6
        truth = truth_in(m, lo_us, end_us)
        for bucket in ("hour", "day"):
            check(m, stored(db, m.spec.id, bucket, lo_us, end_us), truth, end_us - lo_us, bucket)


def check(m: Machine, got: dict[str, float | None], truth: dict[str, Any], window_us: int, bucket: str) -> None:
    who = f"{m.spec.id}/{bucket}"
    # (1) every state's time, within D per boundary of that state inside the window
    for s in STATES:
        value = got[ELEMENT_OF[s]]
        assert value is not None, f"{who}: {ELEMENT_OF[s]} is NULL"
        tol = D_US * truth["bounds"][s] / 1e6 + 1e-6
        assert abs(value - truth[s] / 1e6) <= tol, f"{who}: {s} {value} s vs truth {truth[s] / 1e6} s (±{tol})"
    # (2) the window itself: known time == last - first sample; the unknown time is only before the first sample
    pot, nodata = got["calendar_time_s"], got["no_data_time_s"]
    assert pot is not None and nodata is not None
    assert pot - nodata == pytest.approx(window_us / 1e6, abs=1e-3)
    # (3) availability = APT / PBT; the bucket's POT also holds the no-data time before the first sample, for
    # the truth as for the database (unknown is neither running nor a planned stop), so the same POT applies
    n_changes = sum(truth["bounds"].values())
    pbt_true = pot - truth["planned_stop"] / 1e6
    avail_true = truth["running"] / 1e6 / pbt_true
    tol_a = D_US * n_changes / 1e6 / pbt_true
    apt, pbt = got["actual_production_time_s"], got["planned_busy_time_s"]
    assert apt is not None and pbt is not None
    avail = got["availability"] if got["availability"] is not None else apt / pbt
    assert avail == pytest.approx(apt / pbt, rel=1e-9)
    assert abs(avail - avail_true) <= tol_a, f"{who}: availability {avail} vs {avail_true} (±{tol_a})"
    # availability over the known window only (time before the first sample left out on both sides)
    known_pbt = pbt - nodata
    assert abs(apt / known_pbt - truth["running"] / (window_us - truth["planned_stop"])) <= \
        D_US * n_changes / (window_us - truth["planned_stop"]) * 2
    # (4) quantities: only the two ends of the window are uncertain
    cycle_us = m.spec.ideal_cycle_time_s / m.spec.speed * 1e6
    n_end = 2 * math.ceil(D_US / cycle_us)
    pq, sq, gq = got["produced_quantity"], got["scrap_quantity"], got["good_quantity"]
    assert pq is not None and sq is not None and gq is not None
    assert truth["pq"] > 10, f"{who}: too few parts in the window for a meaningful test ({truth['pq']})"
    assert abs(pq - truth["pq"]) <= n_end, f"{who}: PQ {pq} vs {truth['pq']} (±{n_end})"
    assert abs(sq - truth["sq"]) <= n_end, f"{who}: SQ {sq} vs {truth['sq']} (±{n_end})"
    assert gq == pq - sq
    q_true = (truth["pq"] - truth["sq"]) / truth["pq"]
    q_tol = 2 * n_end / truth["pq"]  # both PQ and GQ may be off by n_end
    assert abs(gq / pq - q_true) <= q_tol, f"{who}: quality {gq / pq} vs {q_true} (±{q_tol})"
    if got.get("quality") is not None:
        assert got["quality"] == pytest.approx(gq / pq, rel=1e-9)
    # (5) performance inputs: PRU x PQ over APT, from the same PQ and APT as above
    ipt = got["ideal_production_time_s"]
    assert ipt is not None and ipt == pytest.approx(m.spec.ideal_cycle_time_s / m.spec.speed * pq, rel=1e-9)
    perf_true = m.spec.ideal_cycle_time_s / m.spec.speed * truth["pq"] / (truth["running"] / 1e6)
    apt_tol = D_US * truth["bounds"]["running"] / 1e6
    rel = n_end / truth["pq"] + apt_tol / (truth["running"] / 1e6 - apt_tol)
    assert abs(ipt / apt - perf_true) <= perf_true * rel * 1.01 + 1e-9, \
        f"{who}: performance {ipt / apt} vs {perf_true}"
    # (6) energy from the meter: the two ends, each within D at the highest draw
    e_tol = 2 * D_US / 1e6 * m.spec.speed / 3600 * max(POWER_KW.values()) + 1e-5
    energy = got["energy_kwh"]
    assert energy is not None and abs(energy - truth["energy_kwh"]) <= e_tol, \
        f"{who}: energy {energy} kWh vs {truth['energy_kwh']} (±{e_tol})"
