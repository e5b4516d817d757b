"""One machine, one bucket set: signal arrays -> element sums per bucket (pure; the kernels do the work)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kpi import kernels as K
from kpi.buckets import BucketSet
from kpi.kernels.counters import DEFAULT_WRAP_FRACTION
from kpi.statemodel import REDUCED_SPEED_WINDOW_S, with_disconnects

Series = tuple[np.ndarray, np.ndarray]  # (ts int64 us, values float64), sorted by ts, lookback sample first
COUNTERS = ("total_count", "good_count", "scrap_count", "rework_count")


@dataclass
class MachineInputs:
    """What a machine's signals delivered around one window (None: signal not configured)."""

    state: tuple[np.ndarray, np.ndarray] | None = None  # (ts, state codes int64; -1 unknown)
    counters: dict[str, Series] = field(default_factory=dict)
    energy_kwh: Series | None = None
    power_kw: Series | None = None
    networked: np.ndarray | None = None  # per bucket of the set: 1.0 if >= 1 good sample, computed by the reader
    ideal_cycle_time_s: float | None = None
    production: bool = True
    has_device: bool = False
    disconnects: np.ndarray | None = None  # instants (us) of device_status `disconnected`: unknown from there
    micro_stop_us: int = 0  # kpi.statemodel.micro_stop_s in us (0: no micro-stop reclassification)
    max_hold_us: int = 0  # kpi.statemodel.state_max_hold_s in us (0: unlimited)
    reduced_speed_ratio: float = 0.0  # kpi.statemodel.reduced_speed_ratio (0: no reduced-speed loss)
    reduced_speed_window_us: int = REDUCED_SPEED_WINDOW_S * 1_000_000


@dataclass
class ElementSums:
    values: dict[str, np.ndarray]  # element -> [nb] (NaN: not available)
    why: dict[str, str]  # element -> reason it is NaN
    input_rows: np.ndarray  # [nb]
    coverage: np.ndarray  # [nb], NaN without a state signal


def _nan(nb: int) -> np.ndarray:
    return np.full(nb, np.nan)


def _state_elements(inp: MachineInputs, b: BucketSet, end_us: int, cal: tuple[np.ndarray, np.ndarray] | None,
                    out: dict[str, np.ndarray], why: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    nb = len(b)
    names = ("calendar_time_s", "planned_stop_time_s", "planned_busy_time_s", "actual_production_time_s",
             "setup_time_s", "down_time_s", "idle_time_s", "no_data_time_s", "failure_events",
             "micro_stop_time_s", "micro_stop_count")
    if inp.state is None:
        for n in names:
            out[n], why[n] = _nan(nb), "no state signal configured"
        return np.zeros(nb, dtype=np.int64), _nan(nb)
    ts, codes = state_series(inp, end_us)
    everything = (np.array([b.starts.min() if nb else 0], dtype=np.int64), np.array([end_us], dtype=np.int64))
    cs, ce = cal if cal is not None else everything
    hold = inp.max_hold_us
    codes, micro = K.micro_stops(ts, codes, end_us + inp.micro_stop_us, inp.micro_stop_us, hold)
    keep = ts < end_us  # the look-ahead only decides micro-stops; nothing after the data end is counted
    ts, codes, micro = ts[keep], codes[keep], micro[keep]
    in_cal, known, rows = K.state_durations(ts, codes, end_us, b.starts, b.ends, cs, ce, hold)
    micro_codes = np.where(micro == 1, K.RUNNING, -1).astype(np.int64)
    micro_time, _, _ = K.state_durations(ts, micro_codes, end_us, b.starts, b.ends, cs, ce, hold)
    out["micro_stop_time_s"] = micro_time[:, K.RUNNING]
    starts = micro == 1
    starts[1:] &= micro[:-1] == 0
    out["micro_stop_count"] = K.event_counts(ts[starts], b.starts, b.ends, cs, ce).astype(np.float64)
    length = np.maximum(np.minimum(b.ends, end_us) - b.starts, 0) / 1e6
    coverage = np.where(length > 0, known / np.where(length > 0, length, 1.0), np.nan)
    out["actual_production_time_s"] = in_cal[:, K.RUNNING]
    out["setup_time_s"] = in_cal[:, K.SETUP]
    out["down_time_s"] = in_cal[:, K.DOWN]
    out["idle_time_s"] = in_cal[:, K.IDLE]
    out["planned_stop_time_s"] = in_cal[:, K.PLANNED_STOP]
    out["failure_events"] = K.failure_events(ts, codes, b.starts, b.ends, cs, ce).astype(np.float64)
    if cal is None:
        for n in ("calendar_time_s", "planned_busy_time_s", "no_data_time_s"):
            out[n], why[n] = _nan(nb), "no shift calendar"
    else:
        pot = K.calendar_time(np.minimum(b.starts, end_us), np.minimum(b.ends, end_us), cs, ce)
        out["calendar_time_s"] = pot
        out["planned_busy_time_s"] = pot - out["planned_stop_time_s"]
        out["no_data_time_s"] = np.maximum(pot - in_cal.sum(axis=1), 0.0)
    return rows, coverage


def state_series(inp: MachineInputs, end_us: int) -> tuple[np.ndarray, np.ndarray]:
    """The state samples with an unknown state inserted at every disconnect."""
    assert inp.state is not None
    ts, codes = inp.state
    if inp.disconnects is not None:
        ts, codes = with_disconnects(ts, codes, inp.disconnects[inp.disconnects < end_us])
    return ts, codes


def part_events(inp: MachineInputs, wrap: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Produced-part increments at their sample instants: total_count, else good + scrap + rework (as PQ)."""
    names = ("total_count",) if "total_count" in inp.counters else \
        ("good_count", "scrap_count", "rework_count") if "good_count" in inp.counters else ()
    series = [inp.counters[n] for n in names if n in inp.counters]
    if not series:
        return None
    ts = np.concatenate([s[0] for s in series])
    inc = np.concatenate([K.counter_increments(s[0], s[1], wrap) for s in series])
    return ts, inc


def _reduced_speed_elements(inp: MachineInputs, b: BucketSet, end_us: int,
                            cal: tuple[np.ndarray, np.ndarray] | None, wrap: float, out: dict[str, np.ndarray],
                            why: dict[str, str]) -> None:
    """reduced_speed_time_s / reduced_speed_count (kernels/speed.py): 0 when the ratio is 0."""
    nb = len(b)
    names = ("reduced_speed_time_s", "reduced_speed_count")
    parts = part_events(inp, wrap)
    reason = ("no state signal configured" if inp.state is None
              else "no ideal_cycle_time_s configured" if inp.ideal_cycle_time_s is None
              else "no total_count or good_count signal configured" if parts is None else None)
    if reason is not None or parts is None or inp.ideal_cycle_time_s is None:
        for n in names:
            out[n], why[n] = _nan(nb), reason or "not available"
        return
    ts, codes = state_series(inp, end_us)
    keep = ts < end_us
    w = inp.reduced_speed_window_us
    everything = (np.array([b.starts.min() - w if nb else 0], dtype=np.int64), np.array([end_us], dtype=np.int64))
    cs, ce = cal if cal is not None else everything
    # the codes before micro-stop reclassification: a micro-stop is its own loss, not slow running
    secs, count = K.reduced_speed(ts[keep], codes[keep], end_us, inp.max_hold_us, parts[0], parts[1],
                                  inp.ideal_cycle_time_s * 1e6, inp.reduced_speed_ratio, w, b.starts, b.ends, cs, ce)
    out["reduced_speed_time_s"], out["reduced_speed_count"] = secs, count.astype(np.float64)


def _count_elements(inp: MachineInputs, b: BucketSet, wrap: float, out: dict[str, np.ndarray],
                    why: dict[str, str]) -> np.ndarray:
    nb = len(b)
    rows = np.zeros(nb, dtype=np.int64)
    got: dict[str, np.ndarray] = {}
    for name in COUNTERS:
        series = inp.counters.get(name)
        if series is not None:
            got[name], r = K.counter_bucket_sums(series[0], series[1], b.starts, b.ends, wrap)
            rows += r
    zero = np.zeros(nb)
    if "total_count" in got:
        pq = got["total_count"]
    elif "good_count" in got:
        pq = got["good_count"] + got.get("scrap_count", zero) + got.get("rework_count", zero)
    else:
        pq = None
    for name, element in (("scrap_count", "scrap_quantity"), ("rework_count", "rework_quantity")):
        out[element] = got.get(name, _nan(nb))
        if name not in got:
            why[element] = f"no {name} signal configured"
    if pq is None:
        for n in ("produced_quantity", "good_quantity"):
            out[n], why[n] = _nan(nb), "no total_count or good_count signal configured"
    else:
        out["produced_quantity"] = pq
        out["good_quantity"] = got["good_count"] if "good_count" in got else \
            pq - got.get("scrap_count", zero) - got.get("rework_count", zero)
    return rows


def machine_elements(inp: MachineInputs, b: BucketSet, end_us: int, cal: tuple[np.ndarray, np.ndarray] | None,
                     wrap_fraction: float = DEFAULT_WRAP_FRACTION) -> ElementSums:
    """Element sums for every bucket of `b`; data after end_us (now) is not extrapolated."""
    nb = len(b)
    out: dict[str, np.ndarray] = {}
    why: dict[str, str] = {}
    rows, coverage = _state_elements(inp, b, end_us, cal, out, why)
    rows = rows + _count_elements(inp, b, wrap_fraction, out, why)
    _reduced_speed_elements(inp, b, end_us, cal, wrap_fraction, out, why)
    ict = inp.ideal_cycle_time_s
    if ict is None or "produced_quantity" in why:
        out["ideal_production_time_s"] = out["performance_time_s"] = _nan(nb)
        reason = "no ideal_cycle_time_s configured" if ict is None else why["produced_quantity"]
        why["ideal_production_time_s"] = why["performance_time_s"] = reason
    else:
        out["ideal_production_time_s"] = ict * out["produced_quantity"]
        out["performance_time_s"] = out["actual_production_time_s"]
        if "actual_production_time_s" in why:
            why["performance_time_s"] = why["actual_production_time_s"]
    if inp.energy_kwh is not None:
        out["energy_kwh"], r = K.counter_bucket_sums(inp.energy_kwh[0], inp.energy_kwh[1], b.starts, b.ends,
                                                     wrap_fraction)
        rows = rows + r
    elif inp.power_kw is not None:
        out["energy_kwh"], _ = K.step_integral(inp.power_kw[0], inp.power_kw[1], end_us, b.starts, b.ends,
                                               inp.max_hold_us)
        pts = inp.power_kw[0]
        rows = rows + np.searchsorted(pts, b.ends) - np.searchsorted(pts, b.starts)
    else:
        out["energy_kwh"], why["energy_kwh"] = _nan(nb), "no energy_kwh or power_kw signal configured"
    prod = 1.0 if inp.production else 0.0
    out["production_machines"] = np.full(nb, prod)
    net = inp.networked if inp.networked is not None and inp.has_device else np.zeros(nb)
    out["networked_machines"] = prod * net
    return ElementSums(out, why, rows, coverage)
