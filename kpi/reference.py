"""Plain-Python reference of every kernel and KPI, written from the formulas (loops over events, no numpy).

Slow on purpose and obvious to read: the property tests check the numba kernels against these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Interval = tuple[int, int]
STATE_NAMES = ("running", "idle", "down", "setup", "planned_stop")


def overlap(a: Interval, b: Interval) -> int:
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


@dataclass(frozen=True)
class CounterRule:
    """How a counter's drops are read (kpi/README.md "Counters"); modulus None: no declared width."""

    modulus: float | None = None
    wrap_fraction: float = 1 / 16
    reset_ratio: float = 0.1
    reset_below: float = 0.0


def counter_step(prev: float, cur: float, rule: CounterRule) -> tuple[float, str]:
    """(increase, what happened) for one step, straight from the documented rule."""
    if cur < 0:
        return 0.0, "negative"  # bad data: ignored, not a baseline
    drop = prev - cur
    if drop <= 0:
        return -drop, "increase"
    m = rule.modulus
    if m is not None and m > 0 and prev < m:
        across = (m - prev) + cur  # counted up to the wrap, then from 0 to cur
        if across <= rule.wrap_fraction * m:
            return across, "rollover"
    looks_restarted = cur <= prev * rule.reset_ratio or cur < rule.reset_below
    return (cur, "reset") if looks_restarted else (0.0, "correction")


def counter_delta(prev: float, cur: float, rule: CounterRule = CounterRule()) -> float:
    return counter_step(prev, cur, rule)[0]


def counter_bucket_sums(events: list[tuple[int, float]], buckets: list[Interval], rule: CounterRule = CounterRule(),
                        cal: list[Interval] | None = None) -> dict[str, list[float]]:
    """Per bucket: increase in / outside the calendar, samples, and how many steps of each kind."""
    kinds = ("rollover", "reset", "correction", "negative")
    out: dict[str, list[float]] = {k: [0.0] * len(buckets) for k in ("in_cal", "off_cal", "samples", *kinds)}
    prev: float | None = None
    for t, v in events:
        if math.isnan(v):
            continue
        j = next((j for j, (s, e) in enumerate(buckets) if s <= t < e), None)
        if v < 0:
            if j is not None:
                out["samples"][j] += 1
                out["negative"][j] += 1
            continue
        if j is not None:
            out["samples"][j] += 1
            if prev is not None:
                inc, kind = counter_step(prev, v, rule)
                planned = cal is None or any(a <= t < b for a, b in cal)
                out["in_cal" if planned else "off_cal"][j] += inc
                if kind in kinds:
                    out[kind][j] += 1
        prev = v
    return out


def _holds(events: list[tuple[int, float]], end: int) -> list[tuple[int, int, float]]:
    """Step-hold: each sample holds until the next one (the last until end)."""
    out = []
    for i, (t, v) in enumerate(events):
        nxt = events[i + 1][0] if i + 1 < len(events) else end
        out.append((t, min(nxt, end), v))
    return out


def state_durations(events: list[tuple[int, int]], end: int, buckets: list[Interval],
                    cal: list[Interval]) -> list[list[float]]:
    """Seconds per bucket and state, counting only time inside the calendar."""
    out = [[0.0] * 5 for _ in buckets]
    for a, b, s in _holds([(t, float(c)) for t, c in events], end):
        if not 0 <= s < 5:
            continue
        for j, bk in enumerate(buckets):
            seg = (max(a, bk[0]), min(b, bk[1]))
            if seg[1] > seg[0]:
                out[j][int(s)] += sum(overlap(seg, c) for c in cal) / 1e6
    return out


def known_time(events: list[tuple[int, int]], end: int, buckets: list[Interval]) -> list[float]:
    return [sum(overlap((a, b), bk) for a, b, s in _holds([(t, float(c)) for t, c in events], end)
                if b > a and 0 <= s < 5) / 1e6 for bk in buckets]


def failure_events(events: list[tuple[int, int]], buckets: list[Interval], cal: list[Interval]) -> list[int]:
    """Transitions into down (state 2) from another known state, counted where the down state starts."""
    out = [0] * len(buckets)
    last = None
    for t, s in events:
        if not 0 <= s < 5:
            continue
        if s == 2 and last is not None and last != 2 and any(c[0] <= t < c[1] for c in cal):
            for j, (bs, be) in enumerate(buckets):
                if bs <= t < be:
                    out[j] += 1
        last = s
    return out


def step_integral(events: list[tuple[int, float]], end: int, buckets: list[Interval]) -> list[float]:
    """Sum of value x held duration (hours) per bucket; NaN samples are gaps."""
    out = [0.0] * len(buckets)
    for a, b, v in _holds(events, end):
        if math.isnan(v):
            continue
        for j, bk in enumerate(buckets):
            out[j] += v * overlap((a, b), bk) / 3.6e9
    return out


def group_sums(values: list[list[float]], membership: list[tuple[int, int]], n_groups: int) -> list[list[float]]:
    cols = len(values[0]) if values else 0
    out = [[0.0] * cols for _ in range(n_groups)]
    for m, g in membership:
        for c in range(cols):
            if not math.isnan(values[m][c]):
                out[g][c] += values[m][c]
    return out


def kpis(pbt: float, apt: float, setup: float, down: float, pq: float, gq: float, sq: float, pru: float,
         fe: float, energy: float, ef: float) -> dict[str, float | None]:
    """ISO 22400-2 KPIs from element sums; None where a denominator is zero."""

    def div(a: float, b: float) -> float | None:
        return None if b == 0 else a / b

    availability, performance, quality = div(apt, pbt), div(pru * pq, apt), div(gq, pq)
    oee = None if None in (availability, performance, quality) else availability * performance * quality  # type: ignore[operator]
    e_good = div(energy, gq)
    return {"availability": availability, "performance": performance, "quality": quality, "oee": oee,
            "scrap_ratio": div(sq, pq), "mtbf_s": div(apt + setup, fe), "mttr_s": div(down, fe),
            "energy_per_good_unit_kwh": e_good, "co2_per_good_unit_kg": None if e_good is None else e_good * ef,
            "setup_rate": div(setup, apt + setup), "technical_efficiency": div(apt, apt + down)}


def micro_stops(events: list[tuple[int, int]], end: int, threshold: int, max_hold: int = 0) -> list[int]:
    """States after reclassifying stops (idle 1 / down 2) between two running (0) samples shorter than threshold."""
    codes = [c for _, c in events]
    if threshold <= 0:
        return codes
    out = list(codes)
    i = 0
    while i < len(events):
        if codes[i] in (1, 2) and i > 0 and codes[i - 1] == 0:
            k = i
            while k < len(events) and codes[k] in (1, 2):
                k += 1
            if k < len(events) and codes[k] == 0 and events[k][0] <= end:
                holds = [events[q + 1][0] - events[q][0] for q in range(i, k)]
                if events[k][0] - events[i][0] < threshold and (max_hold <= 0 or max(holds) <= max_hold):
                    out[i:k] = [0] * (k - i)
            i = k
        else:
            i += 1
    return out


def counter_increments(events: list[tuple[int, float]], rule: CounterRule = CounterRule()) -> list[float]:
    """Per sample: increase over the previous valid sample (0 for the first valid one, NaN and negatives)."""
    out = []
    prev: float | None = None
    for _, v in events:
        if math.isnan(v) or v < 0:
            out.append(0.0)
            continue
        out.append(0.0 if prev is None else counter_step(prev, v, rule)[0])
        prev = v
    return out


def reduced_speed(events: list[tuple[int, int]], end: int, max_hold: int, parts: list[tuple[int, float]],
                  ideal_cycle_us: float, ratio: float, window: int, buckets: list[Interval],
                  cal: list[Interval]) -> tuple[list[float], list[int]]:
    """Reduced-speed seconds and periods per bucket, straight from the definition (kpi/README.md).

    Window k = [k*window, (k+1)*window). run(k) = running time (step-hold, at most max_hold) in the window and the
    calendar; parts(k) = increments whose instant is in the window. Slow: run > 0 and parts x PRU < ratio x run.
    A period is a run of consecutive slow windows, counted in the bucket holding its first running instant.
    """
    running: list[Interval] = []
    for i, (t, c) in enumerate(events):
        b = min(events[i + 1][0] if i + 1 < len(events) else end, end)
        if max_hold > 0:
            b = min(b, t + max_hold)
        if c == 0:
            running += [(max(t, cs), min(b, ce)) for cs, ce in cal if min(b, ce) > max(t, cs)]

    def win(k: int) -> Interval:
        return k * window, (k + 1) * window

    def slow(k: int) -> bool:
        run = sum(overlap(r, win(k)) for r in running)
        made = sum(inc for t, inc in parts if win(k)[0] <= t < win(k)[1])
        return run > 0 and made * ideal_cycle_us < ratio * run

    seconds = [0.0] * len(buckets)
    periods = [0] * len(buckets)
    if not buckets or ratio <= 0:
        return seconds, periods
    for k in range(buckets[0][0] // window, (buckets[-1][1] - 1) // window + 1):
        if not slow(k):
            continue
        w = win(k)
        for j, (bs, be) in enumerate(buckets):
            seconds[j] += sum(overlap(r, (max(w[0], bs), min(w[1], be))) for r in running) / 1e6
        if not slow(k - 1):
            start = min(max(r[0], w[0]) for r in running if overlap(r, w) > 0)
            for j, (bs, be) in enumerate(buckets):
                if bs <= start < be:
                    periods[j] += 1
    return seconds, periods
