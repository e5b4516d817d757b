"""One machine, one bucket set: signal arrays -> element sums per bucket (pure; the kernels do the work)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kpi import kernels as K
from kpi.buckets import BucketSet
from kpi.kernels.counters import (
    CORRECTIONS,
    DEFAULT_RESET_RATIO,
    DEFAULT_WRAP_FRACTION,
    IN_CAL,
    NEGATIVES,
    OFF_CAL,
    RESETS,
    ROLLOVERS,
    SAMPLES,
)
from kpi.statemodel import REDUCED_SPEED_WINDOW_S, STALE_MIN_S, STALE_POLLS, with_disconnects

Series = tuple[np.ndarray, np.ndarray]  # (ts int64 us, values float64), sorted by ts, lookback sample first
COUNTERS = ("total_count", "good_count", "scrap_count", "rework_count")


@dataclass(frozen=True)
class CounterRule:
    """How one counter's drops are read (kpi/kernels/counters.py) and whether a missing sample means no data."""

    modulus: float = 0.0  # wrap value from the tag type or the signal's `rollover` key; 0: never rolls over
    reset_ratio: float = DEFAULT_RESET_RATIO
    reset_below: float = 0.0
    poll_interval_s: float = 0.0  # > 0: polled, so a bucket without any sample has no data; 0: by exception


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
    counter_rules: dict[str, CounterRule] = field(default_factory=dict)  # signal name -> rule (default: no wrap)


@dataclass
class ElementSums:
    values: dict[str, np.ndarray]  # element -> [nb] (NaN: not available)
    why: dict[str, str]  # element -> reason it is NaN
    input_rows: np.ndarray  # [nb]
    coverage: np.ndarray  # [nb], NaN without a state signal
    # signal -> event kind (rollovers, resets, corrections, negative_readings, conflicting_samples) -> [nb] counts
    events: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    why_at: dict[str, list[str | None]] = field(default_factory=dict)  # element -> per-bucket reason (wins)


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


def rule(inp: MachineInputs, name: str) -> CounterRule:
    return inp.counter_rules.get(name, CounterRule())


def part_events(inp: MachineInputs, wrap: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Produced-part increments at their sample instants: total_count, else good + scrap + rework (as PQ)."""
    names = pq_counters(inp)
    if not names:
        return None
    ts = np.concatenate([inp.counters[n][0] for n in names])
    inc = np.concatenate([K.counter_increments(*inp.counters[n], rule(inp, n).modulus, wrap, rule(inp, n).reset_ratio,
                                               rule(inp, n).reset_below) for n in names])
    return ts, inc


def pq_counters(inp: MachineInputs) -> tuple[str, ...]:
    """The counters whose increase is PQ: total_count, else good + scrap + rework (those configured)."""
    if "total_count" in inp.counters:
        return ("total_count",)
    if "good_count" in inp.counters:
        return tuple(n for n in ("good_count", "scrap_count", "rework_count") if n in inp.counters)
    return ()


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


def counter_events(res: np.ndarray) -> dict[str, np.ndarray]:
    """The data-quality events of a counter_bucket_sums result, by name."""
    return {"rollovers": res[ROLLOVERS], "resets": res[RESETS], "corrections": res[CORRECTIONS],
            "negative_readings": res[NEGATIVES]}


def _no_data(name: str, series: Series, b: BucketSet, end_us: int, r: CounterRule) -> list[str | None]:
    """Per bucket, why the counter says nothing there (None: it does): never seen yet, or a polled counter
    without a sample in a bucket longer than its stale limit (the data stopped)."""
    ts, v = series
    valid = ts[~np.isnan(v) & (v >= 0)]
    first = int(valid[0]) if valid.shape[0] else None
    n_in = np.searchsorted(valid, b.ends) - np.searchsorted(valid, b.starts)
    length = np.maximum(np.minimum(b.ends, end_us) - b.starts, 0)
    stale_us = max(STALE_POLLS * r.poll_interval_s, STALE_MIN_S) * 1e6
    out: list[str | None] = []
    for j in range(len(b)):
        if first is None or first >= b.ends[j]:
            out.append(f"no {name} sample up to the end of the bucket (machine not seen yet)")
        elif r.poll_interval_s > 0 and n_in[j] == 0 and length[j] > stale_us:
            out.append(f"no {name} sample in bucket (polled counter: the data stopped)")
        else:
            out.append(None)
    return out


def _set_unknown(out: dict[str, np.ndarray], why_at: dict[str, list[str | None]], element: str,
                 reasons: list[str | None]) -> None:
    if any(reasons):
        out[element] = np.where([r is not None for r in reasons], np.nan, out[element])
        why_at[element] = reasons


def _merge(*reasons: list[str | None]) -> list[str | None]:
    return [next((r for r in rs if r), None) for rs in zip(*reasons, strict=True)]


def _count_elements(inp: MachineInputs, b: BucketSet, end_us: int, cal: tuple[np.ndarray, np.ndarray], wrap: float,
                    out: dict[str, np.ndarray], why: dict[str, str], es: ElementSums) -> None:
    """PQ, GQ, SQ, RQ inside POT (and PQ outside it), with the counters' data-quality events."""
    nb = len(b)
    got: dict[str, np.ndarray] = {}
    unknown: dict[str, list[str | None]] = {}
    for name in COUNTERS:
        series = inp.counters.get(name)
        if series is not None:
            r = rule(inp, name)
            res = K.counter_bucket_sums(series[0], series[1], b.starts, b.ends, cal[0], cal[1], r.modulus, wrap,
                                        r.reset_ratio, r.reset_below)
            got[name] = res
            es.input_rows += res[SAMPLES].astype(np.int64)
            es.events[name] = counter_events(res)
            unknown[name] = _no_data(name, series, b, end_us, r)
    zero = np.zeros((OFF_CAL + 1, nb))
    used = pq_counters(inp)
    for name, element in (("scrap_count", "scrap_quantity"), ("rework_count", "rework_quantity")):
        out[element] = got[name][IN_CAL] if name in got else _nan(nb)
        if name not in got:
            why[element] = f"no {name} signal configured"
        else:
            _set_unknown(out, es.why_at, element, unknown[name])
    if not used:
        for n in ("produced_quantity", "good_quantity", "off_calendar_produced_quantity"):
            out[n], why[n] = _nan(nb), "no total_count or good_count signal configured"
        return
    pq = sum((got[n][:OFF_CAL + 1] for n in used), zero)
    pq_unknown = _merge(*(unknown[n] for n in used))
    out["produced_quantity"], out["off_calendar_produced_quantity"] = pq[IN_CAL], pq[OFF_CAL]
    if "good_count" in got:
        out["good_quantity"], gq_unknown = got["good_count"][IN_CAL], unknown["good_count"]
    else:
        side = [n for n in ("scrap_count", "rework_count") if n in got]
        out["good_quantity"] = pq[IN_CAL] - sum((got[n][IN_CAL] for n in side), np.zeros(nb))
        gq_unknown = _merge(pq_unknown, *(unknown[n] for n in side))
    _set_unknown(out, es.why_at, "produced_quantity", pq_unknown)
    _set_unknown(out, es.why_at, "off_calendar_produced_quantity", pq_unknown)
    _set_unknown(out, es.why_at, "good_quantity", gq_unknown)


def _pieces(b: BucketSet, cal: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bucket ∩ calendar intervals (sorted, disjoint) and the bucket each belongs to."""
    ps, pe, pj = [], [], []
    for j in range(len(b)):
        for cs, ce in zip(cal[0], cal[1], strict=True):
            lo, hi = max(int(b.starts[j]), int(cs)), min(int(b.ends[j]), int(ce))
            if hi > lo:
                ps.append(lo)
                pe.append(hi)
                pj.append(j)
    return np.array(ps, dtype=np.int64), np.array(pe, dtype=np.int64), np.array(pj, dtype=np.int64)


def _energy_elements(inp: MachineInputs, b: BucketSet, end_us: int, cal: tuple[np.ndarray, np.ndarray], wrap: float,
                     out: dict[str, np.ndarray], why: dict[str, str], es: ElementSums) -> None:
    """energy_kwh inside POT (meter increase, else power integral) and off_calendar_energy_kwh outside it."""
    nb = len(b)
    names = ("energy_kwh", "off_calendar_energy_kwh")
    if inp.energy_kwh is not None:
        r = rule(inp, "energy_kwh")
        res = K.counter_bucket_sums(inp.energy_kwh[0], inp.energy_kwh[1], b.starts, b.ends, cal[0], cal[1],
                                    r.modulus, wrap, r.reset_ratio, r.reset_below)
        out["energy_kwh"], out["off_calendar_energy_kwh"] = res[IN_CAL], res[OFF_CAL]
        es.input_rows += res[SAMPLES].astype(np.int64)
        es.events["energy_kwh"] = counter_events(res)
        reasons = _no_data("energy_kwh", inp.energy_kwh, b, end_us, r)
    elif inp.power_kw is not None:
        pts, pv = inp.power_kw
        total, _ = K.step_integral(pts, pv, end_us, b.starts, b.ends, inp.max_hold_us)
        ps, pe, pj = _pieces(b, cal)
        inside = np.zeros(nb)
        if ps.shape[0]:
            np.add.at(inside, pj, K.step_integral(pts, pv, end_us, ps, pe, inp.max_hold_us)[0])
        out["energy_kwh"], out["off_calendar_energy_kwh"] = inside, np.maximum(total - inside, 0.0)
        es.input_rows += (np.searchsorted(pts, b.ends) - np.searchsorted(pts, b.starts)).astype(np.int64)
        reasons = _no_data("power_kw", inp.power_kw, b, end_us, CounterRule())
    else:
        for n in names:
            out[n], why[n] = _nan(nb), "no energy_kwh or power_kw signal configured"
        return
    for n in names:
        _set_unknown(out, es.why_at, n, reasons)


def machine_elements(inp: MachineInputs, b: BucketSet, end_us: int, cal: tuple[np.ndarray, np.ndarray] | None,
                     wrap_fraction: float = DEFAULT_WRAP_FRACTION) -> ElementSums:
    """Element sums for every bucket of `b`; data after end_us (now) is not extrapolated.

    Counts and energy are clipped to the calendar like time (by the instant of the later counter sample); what
    falls outside it is kept in the off_calendar_* elements. Without a calendar (None) nothing is clipped.
    """
    nb = len(b)
    out: dict[str, np.ndarray] = {}
    why: dict[str, str] = {}
    rows, coverage = _state_elements(inp, b, end_us, cal, out, why)
    es = ElementSums(out, why, rows.astype(np.int64), coverage)
    if inp.state is not None:
        es.why_at["failure_events"] = [None if c > 0 else "no machine data in bucket (coverage 0)"
                                       for c in coverage]
        _set_unknown(out, es.why_at, "failure_events", es.why_at["failure_events"])
        sts, scodes = inp.state
        dup = sts[np.flatnonzero((sts[1:] == sts[:-1]) & (scodes[1:] != scodes[:-1])) + 1]
        es.events["state"] = {"conflicting_samples": (np.searchsorted(dup, b.ends)
                                                      - np.searchsorted(dup, b.starts)).astype(np.float64)}
    everything = (np.array([b.starts.min() if nb else 0], dtype=np.int64),
                  np.array([max(end_us, int(b.ends.max()) if nb else 0)], dtype=np.int64))
    clip = cal if cal is not None else everything
    _count_elements(inp, b, end_us, clip, wrap_fraction, out, why, es)
    _reduced_speed_elements(inp, b, end_us, cal, wrap_fraction, out, why)
    ict = inp.ideal_cycle_time_s
    if ict is None or "produced_quantity" in why:
        out["ideal_production_time_s"] = out["performance_time_s"] = _nan(nb)
        reason = "no ideal_cycle_time_s configured" if ict is None else why["produced_quantity"]
        why["ideal_production_time_s"] = why["performance_time_s"] = reason
    else:
        out["ideal_production_time_s"] = ict * out["produced_quantity"]
        out["performance_time_s"] = np.where(np.isnan(out["produced_quantity"]), np.nan,
                                             out["actual_production_time_s"])
        if "actual_production_time_s" in why:
            why["performance_time_s"] = why["actual_production_time_s"]
        elif "produced_quantity" in es.why_at:
            es.why_at["ideal_production_time_s"] = es.why_at["performance_time_s"] = es.why_at["produced_quantity"]
    _energy_elements(inp, b, end_us, clip, wrap_fraction, out, why, es)
    prod = 1.0 if inp.production else 0.0
    out["production_machines"] = np.full(nb, prod)
    net = inp.networked if inp.networked is not None and inp.has_device else np.zeros(nb)
    out["networked_machines"] = prod * net
    return es
