"""Machine state (step-hold) -> time per state per bucket, clipped to buckets and to the planned-busy calendar."""

from __future__ import annotations

import numpy as np
from numba import njit

STATES = ("running", "idle", "down", "setup", "planned_stop")
RUNNING, IDLE, DOWN, SETUP, PLANNED_STOP = 0, 1, 2, 3, 4
N_STATES = 5


@njit(cache=True, nogil=True, inline="always")
def hold_end(ts: np.ndarray, i: int, end_us: int, max_hold_us: int) -> int:
    """Until when sample i is in force (step-hold): the next sample, the window end, or the stale limit."""
    a = ts[i]
    b = ts[i + 1] if i + 1 < ts.shape[0] else end_us
    if b > end_us:
        b = end_us
    if max_hold_us > 0 and b > a + max_hold_us:
        b = a + max_hold_us
    return b


@njit(cache=True, nogil=True)
def calendar_time(bucket_starts: np.ndarray, bucket_ends: np.ndarray, cal_starts: np.ndarray,
                  cal_ends: np.ndarray) -> np.ndarray:
    """Seconds of each bucket that fall inside the calendar (planned operation time)."""
    nb = bucket_starts.shape[0]
    nc = cal_starts.shape[0]
    out = np.zeros(nb, dtype=np.float64)
    k = 0
    for j in range(nb):
        lo, hi = bucket_starts[j], bucket_ends[j]
        while k < nc and cal_ends[k] <= lo:
            k += 1
        m = k
        acc = 0
        while m < nc and cal_starts[m] < hi:
            a = max(lo, cal_starts[m])
            b = min(hi, cal_ends[m])
            if b > a:
                acc += b - a
            m += 1
        out[j] = acc / 1e6
    return out


@njit(cache=True, nogil=True)
def _durations_into(ts: np.ndarray, codes: np.ndarray, end_us: int, bucket_starts: np.ndarray,
                    bucket_ends: np.ndarray, cal_starts: np.ndarray, cal_ends: np.ndarray, max_hold_us: int,
                    us_in_cal: np.ndarray, us_known: np.ndarray, in_cal: np.ndarray, known: np.ndarray,
                    rows: np.ndarray) -> None:
    """state_durations of one machine (ts sorted) into in_cal [nb, 5] / known [nb] (seconds) and rows [nb].

    us_in_cal / us_known: int64 scratch of the same shapes (zeroed here). Sums are taken in integer microseconds
    (as before: float accumulation is slower and would change the last bits) and divided by 1e6 at the end.
    Fast path: a hold inside one bucket, the common case; a hold crossing buckets takes the general loop.
    """
    nb = bucket_starts.shape[0]
    nc = cal_starts.shape[0]
    n = ts.shape[0]
    us_in_cal[:] = 0
    us_known[:] = 0
    bi = 0
    ci = 0
    rc = 0  # samples of bucket bi so far (kept in a register, stored when the samples leave the bucket)
    for i in range(n):
        a = ts[i]
        if bi < nb and bucket_ends[bi] <= a:
            rows[bi] += rc
            rc = 0
            while bi < nb and bucket_ends[bi] <= a:
                bi += 1
        if bi < nb and bucket_starts[bi] <= a:
            rc += 1
        s = codes[i]
        if s < 0 or s >= N_STATES:
            continue
        b = hold_end(ts, i, end_us, max_hold_us)
        if b <= a:
            continue
        if bi < nb and bucket_starts[bi] <= a and b <= bucket_ends[bi]:  # inside one bucket
            us_known[bi] += b - a
            while ci < nc and cal_ends[ci] <= a:
                ci += 1
            if ci < nc and cal_starts[ci] <= a and b <= cal_ends[ci]:  # and inside one calendar interval
                us_in_cal[bi, s] += b - a
                continue
            k = ci
            while k < nc and cal_starts[k] < b:
                x = max(a, cal_starts[k])
                y = min(b, cal_ends[k])
                if y > x:
                    us_in_cal[bi, s] += y - x
                k += 1
            continue
        j = bi
        while j < nb and bucket_starts[j] < b:
            lo = max(a, bucket_starts[j])
            hi = min(b, bucket_ends[j])
            if hi > lo:
                us_known[j] += hi - lo
                while ci < nc and cal_ends[ci] <= lo:
                    ci += 1
                k = ci
                while k < nc and cal_starts[k] < hi:
                    x = max(lo, cal_starts[k])
                    y = min(hi, cal_ends[k])
                    if y > x:
                        us_in_cal[j, s] += y - x
                    k += 1
            j += 1
    if bi < nb:
        rows[bi] += rc
    for j in range(nb):
        known[j] = us_known[j] / 1e6
        for q in range(N_STATES):
            in_cal[j, q] = us_in_cal[j, q] / 1e6


@njit(cache=True, nogil=True)
def state_durations(ts: np.ndarray, codes: np.ndarray, end_us: int, bucket_starts: np.ndarray,
                    bucket_ends: np.ndarray, cal_starts: np.ndarray, cal_ends: np.ndarray,
                    max_hold_us: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step-hold state durations (ts sorted).

    Sample i holds its state from ts[i] to ts[i+1] (the last one to end_us), at most max_hold_us when > 0.
    Returns (seconds per bucket and state inside the calendar [nb, 5], seconds per bucket with a known
    state anywhere in the bucket [nb], samples per bucket [nb]).
    """
    nb = bucket_starts.shape[0]
    in_cal = np.empty((nb, N_STATES), dtype=np.float64)
    known = np.empty(nb, dtype=np.float64)
    rows = np.zeros(nb, dtype=np.int64)
    _durations_into(ts, codes, end_us, bucket_starts, bucket_ends, cal_starts, cal_ends, max_hold_us,
                    np.empty((nb, N_STATES), dtype=np.int64), np.empty(nb, dtype=np.int64), in_cal, known, rows)
    return in_cal, known, rows


@njit(cache=True, nogil=True)
def state_durations_many_into(ts: np.ndarray, codes: np.ndarray, offsets: np.ndarray, end_us: int,
                              bucket_starts: np.ndarray, bucket_ends: np.ndarray, cal_starts: np.ndarray,
                              cal_ends: np.ndarray, max_hold_us: int, in_cal: np.ndarray, known: np.ndarray,
                              rows: np.ndarray) -> None:
    """state_durations for many machines in one call: machine m is ts[offsets[m]:offsets[m + 1]] (each sorted).

    Writes machine m's result into in_cal[m] [nb, 5], known[m] and rows[m] (rows zeroed by the caller), so that
    threads can fill disjoint machine ranges of one output (pass offsets[m0:m1 + 1] and out[m0:m1]).
    """
    nb = bucket_starts.shape[0]
    us_in_cal = np.empty((nb, N_STATES), dtype=np.int64)  # one scratch for all machines (stays in cache)
    us_known = np.empty(nb, dtype=np.int64)
    for m in range(offsets.shape[0] - 1):
        lo, hi = offsets[m], offsets[m + 1]
        _durations_into(ts[lo:hi], codes[lo:hi], end_us, bucket_starts, bucket_ends, cal_starts, cal_ends,
                        max_hold_us, us_in_cal, us_known, in_cal[m], known[m], rows[m])


@njit(cache=True, nogil=True)
def state_durations_many(ts: np.ndarray, codes: np.ndarray, offsets: np.ndarray, end_us: int,
                         bucket_starts: np.ndarray, bucket_ends: np.ndarray, cal_starts: np.ndarray,
                         cal_ends: np.ndarray, max_hold_us: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """state_durations of every machine (flat arrays + offsets, see state_durations_many_into): [nm, nb, 5],
    [nm, nb], [nm, nb], identical to one state_durations call per machine."""
    nm = offsets.shape[0] - 1
    nb = bucket_starts.shape[0]
    in_cal = np.empty((nm, nb, N_STATES), dtype=np.float64)
    known = np.empty((nm, nb), dtype=np.float64)
    rows = np.zeros((nm, nb), dtype=np.int64)
    state_durations_many_into(ts, codes, offsets, end_us, bucket_starts, bucket_ends, cal_starts, cal_ends,
                              max_hold_us, in_cal, known, rows)
    return in_cal, known, rows


@njit(cache=True, nogil=True)
def failure_events(ts: np.ndarray, codes: np.ndarray, bucket_starts: np.ndarray, bucket_ends: np.ndarray,
                   cal_starts: np.ndarray, cal_ends: np.ndarray) -> np.ndarray:
    """Failure events (FE) per bucket: transitions into `down` from another known state, inside the calendar.

    The event belongs to the bucket in which the down state starts; unknown codes neither start nor end one.
    """
    nb = bucket_starts.shape[0]
    nc = cal_starts.shape[0]
    fe = np.zeros(nb, dtype=np.int64)
    last = -1
    j = 0
    k = 0
    for i in range(ts.shape[0]):
        s = codes[i]
        if s < 0 or s >= N_STATES:
            continue
        if s == DOWN and last >= 0 and last != DOWN:
            t = ts[i]
            while j < nb and bucket_ends[j] <= t:
                j += 1
            while k < nc and cal_ends[k] <= t:
                k += 1
            if j < nb and bucket_starts[j] <= t and k < nc and cal_starts[k] <= t:
                fe[j] += 1
        last = s
    return fe


@njit(cache=True, nogil=True)
def micro_stops(ts: np.ndarray, codes: np.ndarray, end_us: int, threshold_us: int,
                max_hold_us: int) -> tuple[np.ndarray, np.ndarray]:
    """Reclassify micro-stops as running (a performance loss, six big losses "idling and minor stops").

    A stop is a maximal run of consecutive samples in `idle` or `down`; it is a micro-stop when the sample before
    it is `running`, the sample after it is `running`, and the stop lasts (first stop sample to that next running
    sample) less than threshold_us (and no longer than max_hold_us when > 0, so a stale sample never qualifies).
    A stop still open at the end of the data (no next sample before end_us) is left as is.
    Returns (codes with micro-stop samples set to RUNNING, 1 where a sample was reclassified else 0).
    """
    n = ts.shape[0]
    out = codes.copy()
    flag = np.zeros(n, dtype=np.int64)
    if threshold_us <= 0:
        return out, flag
    i = 0
    while i < n:
        s = codes[i]
        if (s == IDLE or s == DOWN) and i > 0 and codes[i - 1] == RUNNING:
            k = i
            while k < n and (codes[k] == IDLE or codes[k] == DOWN):
                k += 1
            if k < n and codes[k] == RUNNING and ts[k] <= end_us:
                length = ts[k] - ts[i]
                ok = length < threshold_us
                if max_hold_us > 0:
                    for q in range(i, k):
                        if ts[q + 1] - ts[q] > max_hold_us:
                            ok = False
                if ok:
                    for q in range(i, k):
                        out[q] = RUNNING
                        flag[q] = 1
            i = k if k > i else i + 1
        else:
            i += 1
    return out, flag


@njit(cache=True, nogil=True)
def event_counts(event_ts: np.ndarray, bucket_starts: np.ndarray, bucket_ends: np.ndarray, cal_starts: np.ndarray,
                 cal_ends: np.ndarray) -> np.ndarray:
    """Instants (sorted) per bucket that lie inside the calendar."""
    nb = bucket_starts.shape[0]
    nc = cal_starts.shape[0]
    out = np.zeros(nb, dtype=np.int64)
    j = 0
    k = 0
    for i in range(event_ts.shape[0]):
        t = event_ts[i]
        while j < nb and bucket_ends[j] <= t:
            j += 1
        while k < nc and cal_ends[k] <= t:
            k += 1
        if j < nb and bucket_starts[j] <= t and k < nc and cal_starts[k] <= t:
            out[j] += 1
    return out
