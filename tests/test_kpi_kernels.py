"""numba kernels vs hand-worked examples and vs the plain-Python reference (both `kernel` and `kernel.py_func`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpi import kernels as K
from kpi import reference as R
from kpi.catalog import BY_ID, CATALOG, catalog_json, to_kpiml
from kpi.formulas import kpis_from_elements

S = 1_000_000  # microseconds per second
WRAP = 1 / 16
M16, M32 = 2.0**16, 2.0**32
RULE16 = (M16, WRAP, 0.1, 0.0)  # modulus, wrap fraction, reset ratio, reset below
EVERYTHING = (np.array([-(10**12)], dtype=np.int64), np.array([10**12], dtype=np.int64))


def both(kernel: Any) -> list[Callable[..., Any]]:
    return [kernel, kernel.py_func]


def arr(*xs: int) -> np.ndarray:
    return np.array(xs, dtype=np.int64)


@pytest.mark.parametrize("variant", ["jit", "py"])
class TestHandWorked:
    def pick(self, kernel: Any, variant: str) -> Callable[..., Any]:
        return kernel if variant == "jit" else kernel.py_func

    def test_counter_rollover_at_2_16_and_2_32_and_reset(self, variant: str) -> None:
        delta = self.pick(K.counter_delta, variant)
        assert delta(65530.0, 5.0, M16, WRAP, 0.1, 0.0) == 11.0  # uint16 wrap
        assert delta(4294967290.0, 10.0, M32, WRAP, 0.1, 0.0) == 16.0  # uint32 wrap
        assert delta(1000.0, 7.0, M16, WRAP, 0.1, 0.0) == 7.0  # PLC restart: counts from 0
        assert delta(3_000_000_000.0, 7.0, M32, WRAP, 0.1, 0.0) == 7.0  # far from 2**32: a reset, not a wrap
        assert delta(10.0, 10.0, M16, WRAP, 0.1, 0.0) == 0.0

    def test_counter_drop_is_reset_only_when_it_looks_like_one(self, variant: str) -> None:
        step = self.pick(K.counter_step, variant)
        assert step(100_000.0, 99_999.0, 0.0, WRAP, 0.1, 0.0) == (0.0, K.counters.CORRECTION)  # corrected by 1
        assert step(70_000.1, 70_000.0, 0.0, WRAP, 0.1, 0.0) == (0.0, K.counters.CORRECTION)  # meter jitter
        assert step(5000.0, -3.0, 0.0, WRAP, 0.1, 0.0) == (0.0, K.counters.NEGATIVE)
        assert step(5000.0, 0.0, 0.0, WRAP, 0.1, 0.0) == (0.0, K.counters.RESET)
        assert step(5000.0, 400.0, 0.0, WRAP, 0.1, 0.0) == (400.0, K.counters.RESET)  # <= 10 % of before
        assert step(5000.0, 600.0, 0.0, WRAP, 0.1, 0.0) == (0.0, K.counters.CORRECTION)
        assert step(5000.0, 600.0, 0.0, WRAP, 0.1, 1000.0) == (600.0, K.counters.RESET)  # reset_below
        # 32-bit counter reset from 65,000 to 0: a reset, not a 16-bit wrap; undeclared width never wraps
        assert step(65_000.0, 0.0, M32, WRAP, 0.1, 0.0) == (0.0, K.counters.RESET)
        assert step(65_530.0, 5.0, 0.0, WRAP, 0.1, 0.0) == (5.0, K.counters.RESET)
        assert step(65_530.0, 5.0, M16, WRAP, 0.1, 0.0) == (11.0, K.counters.ROLLOVER)
        # the boundaries as documented: wrap <= 1/16 of the modulus, new <= ratio x old, new < reset_below
        assert step(15.0, 0.0, 16.0, WRAP, 0.0, 0.0) == (1.0, K.counters.ROLLOVER)
        assert step(14.0, 0.0, 16.0, WRAP, 0.0, 0.0) == (0.0, K.counters.RESET)
        assert step(100.0, 10.0, 0.0, WRAP, 0.1, 0.0) == (10.0, K.counters.RESET)
        assert step(1001.0, 1000.0, 0.0, WRAP, 0.1, 1000.0) == (0.0, K.counters.CORRECTION)
        assert step(1001.0, 999.0, 0.0, WRAP, 0.1, 1000.0) == (999.0, K.counters.RESET)

    def test_counter_bucket_sums_with_nan_and_baseline_before_window(self, variant: str) -> None:
        sums = self.pick(K.counter_bucket_sums, variant)
        ts = arr(-5, 0, 5, 12, 15, 25) * S
        v = np.array([100.0, 110.0, np.nan, 65535.0, 4.0, 2.0])
        res = sums(ts, v, arr(0, 10) * S, arr(10, 20) * S, *EVERYTHING, *RULE16)
        # 100->110 (10) in bucket 0; 110->65535 (65425) and 65535->4 (wrap, 5) in bucket 1; 2 after the window
        assert res[K.counters.IN_CAL].tolist() == [10.0, 65430.0]
        assert res[K.counters.SAMPLES].tolist() == [1, 2]  # NaN rows not counted
        assert res[K.counters.ROLLOVERS].tolist() == [0, 1]
        # calendar [0, 13): the 15 s increment falls outside it
        res = sums(ts, v, arr(0, 10) * S, arr(10, 20) * S, arr(0) * S, arr(13) * S, *RULE16)
        assert res[K.counters.IN_CAL].tolist() == [10.0, 65425.0] and res[K.counters.OFF_CAL].tolist() == [0, 5.0]

    def test_counter_correction_and_negative_reading_add_nothing(self, variant: str) -> None:
        sums = self.pick(K.counter_bucket_sums, variant)
        ts = arr(0, 1, 2, 3, 4, 5) * S
        v = np.array([1000.0, 1010.0, 1009.0, -5.0, 1020.0, 3.0])  # correction by 1, negative, +11, reset to 3
        res = sums(ts, v, arr(0) * S, arr(10) * S, *EVERYTHING, 0.0, WRAP, 0.1, 0.0)
        assert res[:, 0].tolist() == [10.0 + 11.0 + 3.0, 0.0, 6.0, 0.0, 1.0, 1.0, 1.0]

    def test_empty_window(self, variant: str) -> None:
        e = np.zeros(0, dtype=np.int64)
        res = self.pick(K.counter_bucket_sums, variant)(e, np.zeros(0), arr(0), arr(10), *EVERYTHING, *RULE16)
        assert res.tolist() == [[0.0]] * K.counters.N_OUT
        d, known, _ = self.pick(K.state_durations, variant)(e, e, 10 * S, arr(0), arr(10 * S), arr(0), arr(10 * S), 0)
        assert d.sum() == 0 and known.tolist() == [0.0]
        assert self.pick(K.failure_events, variant)(e, e, arr(0), arr(1), arr(0), arr(1)).tolist() == [0]

    def test_state_durations_clip_to_bucket_and_shift(self, variant: str) -> None:
        # running 0-30 s, down 30-40, planned stop 40-60, unknown 60-70, idle 70-100; shift 10-90; buckets 0-50, 50-100
        ts = arr(0, 30, 40, 60, 70) * S
        codes = arr(K.RUNNING, K.DOWN, K.PLANNED_STOP, -1, K.IDLE)
        d, known, rows = self.pick(K.state_durations, variant)(ts, codes, 100 * S, arr(0, 50) * S, arr(50, 100) * S,
                                                               arr(10) * S, arr(90) * S, 0)
        assert d[0].tolist() == [20.0, 0.0, 10.0, 0.0, 10.0]
        assert d[1].tolist() == [0.0, 20.0, 0.0, 0.0, 10.0]
        assert known.tolist() == [50.0, 40.0] and rows.tolist() == [3, 2]
        pot = self.pick(K.calendar_time, variant)(arr(0, 50) * S, arr(50, 100) * S, arr(10) * S, arr(90) * S)
        assert pot.tolist() == [40.0, 40.0]

    def test_zero_planned_time(self, variant: str) -> None:
        d, _, _ = self.pick(K.state_durations, variant)(arr(0), arr(K.RUNNING), 10 * S, arr(0), arr(10 * S),
                                                        np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 0)
        assert d.sum() == 0.0
        out = kpis_from_elements({"actual_production_time_s": 0.0, "planned_busy_time_s": 0.0}, {}, None, True)
        assert out["availability"] == (None, "planned busy time is zero")

    def test_failure_events_and_max_hold(self, variant: str) -> None:
        ts = arr(0, 10, 20, 30, 40) * S
        codes = arr(K.DOWN, K.RUNNING, K.DOWN, -1, K.DOWN)  # first down has no known predecessor; unknown is skipped
        fe = self.pick(K.failure_events, variant)(ts, codes, arr(0) * S, arr(50) * S, arr(0) * S, arr(50) * S)
        assert fe.tolist() == [1]
        d, _, _ = self.pick(K.state_durations, variant)(arr(0), arr(K.RUNNING), 100 * S, arr(0), arr(100 * S),
                                                        arr(0), arr(100 * S), 30 * S)
        assert d[0, K.RUNNING] == 30.0

    def test_power_integral_nan_is_gap(self, variant: str) -> None:
        ts = arr(0, 1800, 3600, 5400) * S
        kw = np.array([10.0, np.nan, 4.0, 2.0])
        e, cov = self.pick(K.step_integral, variant)(ts, kw, 7200 * S, arr(0, 3600) * S, arr(3600, 7200) * S, 0)
        assert e.tolist() == [5.0, 3.0] and cov.tolist() == [1800.0, 3600.0]

    def test_group_sums_and_safe_ratio(self, variant: str) -> None:
        values = np.array([[1.0, 2.0], [3.0, np.nan], [5.0, 6.0]])
        sums, counts = self.pick(K.group_sums, variant)(values, arr(0, 1, 2, 2), arr(0, 0, 0, 1), 2)
        assert sums.tolist() == [[9.0, 8.0], [5.0, 6.0]] and counts.tolist() == [[3, 2], [1, 1]]
        r = self.pick(K.safe_ratio, variant)(np.array([1.0, 1.0, np.nan]), np.array([4.0, 0.0, 1.0]))
        assert r[0] == 0.25 and math.isnan(r[1]) and math.isnan(r[2])


# ------------------------------------------------------------------ property tests: kernel == reference

times = st.lists(st.integers(0, 400), min_size=0, max_size=40, unique=True).map(sorted)
edges = st.lists(st.integers(-20, 420), min_size=2, max_size=8, unique=True).map(sorted)


def buckets_of(e: list[int]) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    s, t = np.array(e[:-1], dtype=np.int64) * S, np.array(e[1:], dtype=np.int64) * S
    return s, t, [(int(a), int(b)) for a, b in zip(s, t, strict=True)]


@settings(max_examples=60, deadline=None)
@given(ts=times, data=st.data(), e=edges, cal=edges, end=st.integers(0, 450))
def test_state_kernels_equal_reference(ts: list[int], data: st.DataObject, e: list[int], cal: list[int],
                                       end: int) -> None:
    codes = data.draw(st.lists(st.integers(-1, 4), min_size=len(ts), max_size=len(ts)))
    bs, be, bl = buckets_of(e)
    cs, ce, cl = buckets_of(cal[:2])
    t = np.array(ts, dtype=np.int64) * S
    c = np.array(codes, dtype=np.int64)
    ev = [(x * S, y) for x, y in zip(ts, codes, strict=True)]
    want = R.state_durations(ev, end * S, bl, cl)
    want_known = R.known_time(ev, end * S, bl)
    want_fe = R.failure_events(ev, bl, cl)
    for fn, fe_fn in zip(both(K.state_durations), both(K.failure_events), strict=True):
        got, known, _ = fn(t, c, end * S, bs, be, cs, ce, 0)
        assert np.allclose(got, np.array(want).reshape(got.shape))
        assert np.allclose(known, want_known)
        assert fe_fn(t, c, bs, be, cs, ce).tolist() == want_fe


rules = st.builds(R.CounterRule, modulus=st.sampled_from([None, M16, M32]), wrap_fraction=st.just(WRAP),
                  reset_ratio=st.sampled_from([0.0, 0.1, 0.5]), reset_below=st.sampled_from([0.0, 10.0, 1000.0]))


def rule_args(rule: R.CounterRule) -> tuple[float, float, float, float]:
    return rule.modulus or 0.0, rule.wrap_fraction, rule.reset_ratio, rule.reset_below


@settings(max_examples=150, deadline=None)
@given(ts=times, data=st.data(), e=edges, cal=edges, rule=rules)
def test_counter_kernel_equals_reference(ts: list[int], data: st.DataObject, e: list[int], cal: list[int],
                                         rule: R.CounterRule) -> None:
    edges_of_rule = st.sampled_from([0, 1, 5, 10, 50, 100, 500, 1000, 1001, 65535, 2**32 - 1])  # rule boundaries
    big = st.one_of(st.integers(0, 2**16 - 1), st.integers(2**32 - 5000, 2**32 - 1), st.integers(0, 10_000),
                    st.integers(-50, -1), edges_of_rule, edges_of_rule)
    values = data.draw(st.lists(st.one_of(big.map(float), st.just(math.nan)), min_size=len(ts), max_size=len(ts)))
    bs, be, bl = buckets_of(e)
    cs, ce, cl = buckets_of(cal[:2])
    want = R.counter_bucket_sums([(x * S, v) for x, v in zip(ts, values, strict=True)], bl, rule, cl)
    for fn in both(K.counter_bucket_sums):
        got = fn(np.array(ts, dtype=np.int64) * S, np.array(values, dtype=np.float64), bs, be, cs, ce,
                 *rule_args(rule))
        for row, name in enumerate(("in_cal", "off_cal", "samples", "rollover", "reset", "correction", "negative")):
            assert np.allclose(got[row], want[name]), name
        assert (got[:2] >= 0).all()  # an increment is never negative


@settings(max_examples=40, deadline=None)
@given(ts=times, data=st.data(), e=edges, end=st.integers(0, 450))
def test_integral_kernel_equals_reference(ts: list[int], data: st.DataObject, e: list[int], end: int) -> None:
    values = data.draw(st.lists(st.one_of(st.floats(0, 500), st.just(math.nan)), min_size=len(ts), max_size=len(ts)))
    bs, be, bl = buckets_of(e)
    want = R.step_integral([(x * S, v) for x, v in zip(ts, values, strict=True)], end * S, bl)
    for fn in both(K.step_integral):
        got, _ = fn(np.array(ts, dtype=np.int64) * S, np.array(values, dtype=np.float64), end * S, bs, be, 0)
        assert np.allclose(got, want)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.one_of(st.floats(0, 1e6), st.just(math.nan)), min_size=3, max_size=3), min_size=1,
                max_size=6), st.data())
def test_rollup_equals_reference(values: list[list[float]], data: st.DataObject) -> None:
    n = len(values)
    pairs = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 2)), max_size=12))
    want = R.group_sums(values, pairs, 3)
    pm = np.array([p[0] for p in pairs], dtype=np.int64)
    pg = np.array([p[1] for p in pairs], dtype=np.int64)
    for fn in both(K.group_sums):
        got, _ = fn(np.array(values, dtype=np.float64), pm, pg, 3)
        assert np.allclose(got, want)


@settings(max_examples=60, deadline=None)
# PBT and APT are 0 or >= 1 ms: a subnormal denominator makes inf x 0 = NaN on both sides, which approx rejects
@given(st.one_of(st.just(0.0), st.floats(1e-3, 1e5)), st.one_of(st.just(0.0), st.floats(1e-3, 1e5)),
       st.floats(0, 1e4), st.floats(0, 1e4), st.integers(0, 10**6),
       st.integers(0, 10**4), st.floats(0.01, 100), st.integers(0, 20), st.floats(0, 1e5))
def test_formulas_equal_reference(pbt: float, apt: float, setup: float, down: float, pq: int, sq: int, pru: float,
                                  fe: int, energy: float) -> None:
    sq = min(sq, pq)
    e = {"planned_busy_time_s": pbt, "actual_production_time_s": apt, "setup_time_s": setup, "down_time_s": down,
         "produced_quantity": float(pq), "good_quantity": float(pq - sq), "scrap_quantity": float(sq),
         "rework_quantity": 0.0, "ideal_production_time_s": pru * pq, "performance_time_s": apt,
         "failure_events": float(fe), "energy_kwh": energy}
    got = kpis_from_elements(e, {}, 0.5, True)
    want = R.kpis(pbt, apt, setup, down, pq, pq - sq, sq, pru, fe, energy, 0.5)
    for kpi, w in want.items():
        v, reason = got[kpi]
        if w is None:
            assert v is None and reason
        else:
            assert v == pytest.approx(w, rel=1e-12)


def test_oee_equals_pru_times_good_over_pbt() -> None:
    e = {"planned_busy_time_s": 39600.0, "actual_production_time_s": 34200.0, "produced_quantity": 14000.0,
         "good_quantity": 13720.0, "ideal_production_time_s": 28000.0, "performance_time_s": 34200.0}
    oee, _ = kpis_from_elements(e, {}, None, True)["oee"]
    assert oee == pytest.approx(2.0 * 13720 / 39600, rel=1e-12)


def test_nan_element_gives_null_with_its_reason() -> None:
    e = {"planned_busy_time_s": math.nan, "actual_production_time_s": 10.0}
    out = kpis_from_elements(e, {"planned_busy_time_s": "no shift calendar"}, None, True)
    assert out["availability"] == (None, "no shift calendar") and out["oee"][0] is None


def test_catalog_has_required_kpis_with_status_marks() -> None:
    need = {"oee", "availability", "performance", "quality", "scrap_ratio", "rework_ratio", "first_pass_yield",
            "mtbf_s", "mttr_s", "energy_kwh", "energy_per_good_unit_kwh", "co2_per_good_unit_kg", "networking_rate",
            "produced_quantity", "good_quantity", "scrap_quantity", "planned_busy_time_s",
            "actual_production_time_s", "down_time_s", "setup_time_s"}
    assert need <= set(BY_ID)
    assert all(k.status in ("verified", "secondary", "unverified", "proposed") for k in CATALOG)
    assert BY_ID["mtbf_s"].status == "secondary" and BY_ID["networking_rate"].status == "proposed"
    assert '"status": "verified"' in catalog_json()
    xml = to_kpiml()
    assert xml.count("<KPIDefinition>") == len(CATALOG) and "<Value>secondary</Value>" in xml


@pytest.mark.parametrize("variant", ["jit", "py"])
def test_micro_stops_hand_worked(variant: str) -> None:
    fn = K.micro_stops if variant == "jit" else K.micro_stops.py_func
    r, i, d = K.RUNNING, K.IDLE, K.DOWN
    ts = arr(0, 10, 15, 20, 30, 100, 110, 130, 140) * S
    codes = arr(r, d, i, r, i, r, d, -1, r)  # 10-20: down+idle 10 s (micro); 30-100: 70 s (not); 110: unknown ends it
    out, flag = fn(ts, codes, 200 * S, 60 * S, 0)
    assert out.tolist() == [r, r, r, r, i, r, d, -1, r] and flag.tolist() == [0, 1, 1, 0, 0, 0, 0, 0, 0]
    out, _ = fn(ts, codes, 200 * S, 0, 0)
    assert out.tolist() == codes.tolist()  # threshold 0: the ISO reading, nothing changes
    _, flag = fn(ts, codes, 200 * S, 60 * S, 4 * S)  # a 5 s hold is stale at max hold 4 s: never a micro-stop
    assert flag.sum() == 0
    n = K.event_counts if variant == "jit" else K.event_counts.py_func
    assert n(arr(5, 15, 25) * S, arr(0, 10) * S, arr(10, 20) * S, arr(0) * S, arr(18) * S).tolist() == [1, 1]


@settings(max_examples=60, deadline=None)
@given(ts=times, data=st.data(), thr=st.integers(0, 80), hold=st.integers(0, 60), end=st.integers(0, 450))
def test_micro_stop_kernel_equals_reference(ts: list[int], data: st.DataObject, thr: int, hold: int,
                                            end: int) -> None:
    codes = data.draw(st.lists(st.sampled_from([-1, 0, 0, 1, 2, 3]), min_size=len(ts), max_size=len(ts)))
    want = R.micro_stops([(x * S, c) for x, c in zip(ts, codes, strict=True)], end * S, thr * S, hold * S)
    for fn in both(K.micro_stops):
        got, _ = fn(np.array(ts, dtype=np.int64) * S, np.array(codes, dtype=np.int64), end * S, thr * S, hold * S)
        assert got.tolist() == want


@pytest.mark.parametrize("variant", ["jit", "py"])
def test_reduced_speed_hand_worked(variant: str) -> None:
    fn = K.reduced_speed if variant == "jit" else K.reduced_speed.py_func
    r, i = K.RUNNING, K.IDLE
    # running 0-100 s, idle 100-200, running 200-300 (a 5 s hold limit never bites: samples every 10 s)
    ts = arr(*range(0, 300, 10)) * S
    codes = arr(*[i if 100 <= t < 200 else r for t in range(0, 300, 10)])
    # 60 s windows, PRU 1 s, ratio 0.8: a full window needs 48 parts. Parts per window (sample every 10 s):
    # [0,60) 60 -> ok; [60,120) 30 over 40 s running (< 32) -> slow; [120,180) none running;
    # [180,240) 30 over 40 s -> slow; [240,300) 40 over 60 s (< 48) -> slow
    per_sample = {0: 10, 60: 5, 180: 5, 240: 40 / 6}
    pt = arr(*range(0, 300, 10)) * S
    pi = np.array([per_sample[max(k for k in per_sample if k <= t)] if not 120 <= t < 180 else 0.0
                   for t in range(0, 300, 10)])
    cal = (arr(-100) * S, arr(400) * S)
    secs, n = fn(ts, codes, 300 * S, 0, pt, pi, 1.0 * S, 0.8, 60 * S, arr(0, 120) * S, arr(120, 300) * S, *cal)
    assert secs.tolist() == [40.0, 100.0] and n.tolist() == [1, 1]  # 180-300 is one period of two windows
    secs, n = fn(ts, codes, 300 * S, 0, pt, pi, 1.0 * S, 0.0, 60 * S, arr(0, 120) * S, arr(120, 300) * S, *cal)
    assert secs.tolist() == [0.0, 0.0] and n.tolist() == [0, 0]  # ratio 0: off
    # a bucket starting inside a slow period (window [180,240) slow before it): time counted, no new period
    secs, n = fn(ts, codes, 300 * S, 0, pt, pi, 1.0 * S, 0.8, 60 * S, arr(240) * S, arr(300) * S, *cal)
    assert secs.tolist() == [60.0] and n.tolist() == [0]
    # shift 0-90 s only: [60,120) has 30 s running in POT for 30 parts -> not slow (30 >= 24)
    secs, n = fn(ts, codes, 300 * S, 0, pt, pi, 1.0 * S, 0.8, 60 * S, arr(0) * S, arr(300) * S, arr(0) * S,
                 arr(90) * S)
    assert secs.tolist() == [0.0] and n.tolist() == [0]
    inc = (K.counter_increments if variant == "jit" else K.counter_increments.py_func)(
        arr(0, 1, 2, 3, 4, 5) * S, np.array([65530.0, np.nan, 5.0, 70.0, 3.0, 2.0]), *RULE16)
    # wrap at 2**16, NaN skipped, reset (3 <= 10 % of 70) counts from 0, a correction (3 -> 2) adds nothing
    assert inc.tolist() == [0.0, 0.0, 11.0, 65.0, 3.0, 0.0]


@settings(max_examples=80, deadline=None)
@given(ts=times, data=st.data(), e=edges, cal=edges, end=st.integers(0, 450), hold=st.integers(0, 40),
       window=st.sampled_from([7, 30, 60]), ratio=st.sampled_from([0.0, 0.25, 0.5, 0.8, 1.0]),
       pru=st.sampled_from([0.5, 1.0, 2.0, 3.0]))
def test_reduced_speed_kernel_equals_reference(ts: list[int], data: st.DataObject, e: list[int], cal: list[int],
                                               end: int, hold: int, window: int, ratio: float, pru: float) -> None:
    codes = data.draw(st.lists(st.sampled_from([-1, 0, 0, 0, 1, 2]), min_size=len(ts), max_size=len(ts)))
    pts = data.draw(st.lists(st.integers(-80, 460), max_size=60))
    counts = data.draw(st.lists(st.one_of(st.integers(0, 2**16 - 1).map(float), st.just(math.nan)),
                                min_size=len(pts), max_size=len(pts)))
    pts.sort()
    bs, be, bl = buckets_of(e)
    cs, ce, cl = buckets_of(cal[:2])
    ev = [(x * S, c) for x, c in zip(ts, codes, strict=True)]
    samples = [(x * S, v) for x, v in zip(pts, counts, strict=True)]
    inc = R.counter_increments(samples, R.CounterRule(M16))
    want = R.reduced_speed(ev, end * S, hold * S, [(t, v) for (t, _), v in zip(samples, inc, strict=True)],
                           pru * S, ratio, window * S, bl, cl)
    p_ts = np.array(pts, dtype=np.int64) * S
    for fn, inc_fn in zip(both(K.reduced_speed), both(K.counter_increments), strict=True):
        got_inc = inc_fn(p_ts, np.array(counts, dtype=np.float64), *RULE16)
        assert got_inc.tolist() == inc
        secs, n = fn(np.array(ts, dtype=np.int64) * S, np.array(codes, dtype=np.int64), end * S, hold * S, p_ts,
                     got_inc, pru * S, ratio, window * S, bs, be, cs, ce)
        assert np.allclose(secs, want[0]) and n.tolist() == want[1]


@settings(max_examples=40, deadline=None)
@given(machines=st.lists(st.tuples(times, st.data()), min_size=1, max_size=4), e=edges, cal=edges,
       end=st.integers(0, 450), hold=st.integers(0, 40))
def test_many_machine_kernels_equal_one_call_per_machine(machines: list[tuple[list[int], st.DataObject]],
                                                         e: list[int], cal: list[int], end: int, hold: int) -> None:
    bs, be, _ = buckets_of(e)
    cs, ce, _ = buckets_of(cal[:2])
    ts, codes, vals = [], [], []
    for m_ts, data in machines:
        ts.append(np.array(m_ts, dtype=np.int64) * S)
        codes.append(np.array(data.draw(st.lists(st.integers(-1, 4), min_size=len(m_ts), max_size=len(m_ts))),
                              dtype=np.int64))
        vals.append(np.array(data.draw(st.lists(st.one_of(st.integers(0, 2**16 - 1).map(float), st.just(math.nan)),
                                                min_size=len(m_ts), max_size=len(m_ts))), dtype=np.float64))
    offsets = np.concatenate([[0], np.cumsum([t.shape[0] for t in ts])]).astype(np.int64)
    flat_ts, flat_codes, flat_vals = np.concatenate(ts), np.concatenate(codes), np.concatenate(vals)
    many = [K.state_durations_many, K.state_durations_many.py_func]
    for fn in many:
        in_cal, known, rows = fn(flat_ts, flat_codes, offsets, end * S, bs, be, cs, ce, hold * S)
        for m in range(len(ts)):
            one = K.state_durations(ts[m], codes[m], end * S, bs, be, cs, ce, hold * S)
            assert np.array_equal(in_cal[m], one[0]) and np.array_equal(known[m], one[1])
            assert np.array_equal(rows[m], one[2])
    for fn in [K.counter_bucket_sums_many, K.counter_bucket_sums_many.py_func]:
        many_out = fn(flat_ts, flat_vals, offsets, bs, be, cs, ce, *RULE16)
        for m in range(len(ts)):
            assert np.array_equal(many_out[m], K.counter_bucket_sums(ts[m], vals[m], bs, be, cs, ce, *RULE16))
