"""Reduced speed (six big losses, loss 4): running time in fixed windows that produced below a ratio of the ideal rate.

The running time is cut into fixed windows of `window_us`, aligned to the Unix epoch (UTC; with whole-minute
bucket and shift edges a one-minute window never straddles a bucket). A window is *slow* when it has running
time inside the calendar and the parts counted in it (increments whose sample lies in the window) fall short
of ratio x the ideal rate over that running time: parts x ideal_cycle_us < ratio x running_us. Its running
time is reduced-speed time. A reduced-speed *period* is a maximal run of consecutive slow windows; it is
counted in the bucket that holds its first reduced-speed instant. The window just before the first bucket is
evaluated too (the caller supplies its data), so a period that crosses a chunk boundary is counted once.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kpi.kernels.states import RUNNING, hold_end


@njit(cache=True, nogil=True)
def _running_pieces(ts: np.ndarray, codes: np.ndarray, end_us: int, max_hold_us: int, lo: int, hi: int,
                    cal_starts: np.ndarray, cal_ends: np.ndarray, out_a: np.ndarray, out_b: np.ndarray) -> int:
    """Running time (step-hold, hold limit) inside [lo, hi) and the calendar, as ascending pieces [a, b).

    Writes into out_a / out_b when they are large enough; returns the number of pieces either way.
    """
    n = ts.shape[0]
    nc = cal_starts.shape[0]
    cap = out_a.shape[0]
    m = 0
    ci = 0
    for i in range(n):
        if codes[i] != RUNNING:
            continue
        a = ts[i]
        b = hold_end(ts, i, end_us, max_hold_us)
        if a < lo:
            a = lo
        if b > hi:
            b = hi
        if b <= a:
            continue
        while ci < nc and cal_ends[ci] <= a:
            ci += 1
        k = ci
        while k < nc and cal_starts[k] < b:
            x = max(a, cal_starts[k])
            y = min(b, cal_ends[k])
            if y > x:
                if m < cap:
                    out_a[m] = x
                    out_b[m] = y
                m += 1
            k += 1
    return m


@njit(cache=True, nogil=True)
def reduced_speed(ts: np.ndarray, codes: np.ndarray, end_us: int, max_hold_us: int, part_ts: np.ndarray,
                  part_inc: np.ndarray, ideal_cycle_us: float, ratio: float, window_us: int,
                  bucket_starts: np.ndarray, bucket_ends: np.ndarray, cal_starts: np.ndarray,
                  cal_ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reduced-speed seconds and periods per bucket.

    ts / codes: state samples (step-hold to the next, the last to end_us, at most max_hold_us when > 0); only
    `running` counts (pass the codes before micro-stop reclassification: a micro-stop is its own loss).
    part_ts / part_inc: produced-part increments at their (later) sample instants, any order.
    Returns (reduced-speed seconds per bucket [nb], periods starting per bucket [nb]).
    """
    nb = bucket_starts.shape[0]
    red = np.zeros(nb, dtype=np.int64)
    cnt = np.zeros(nb, dtype=np.int64)
    if nb == 0 or ratio <= 0.0 or window_us <= 0:
        return red / 1e6, cnt
    wlo = bucket_starts[0] // window_us - 1  # the window before the first bucket: predecessor only
    whi = -(-bucket_ends[nb - 1] // window_us)
    nw = whi - wlo
    if nw <= 0:
        return red / 1e6, cnt
    lo, hi = wlo * window_us, whi * window_us
    empty = np.zeros(0, dtype=np.int64)
    npieces = _running_pieces(ts, codes, end_us, max_hold_us, lo, hi, cal_starts, cal_ends, empty, empty)
    pa = np.empty(npieces, dtype=np.int64)
    pb = np.empty(npieces, dtype=np.int64)
    _running_pieces(ts, codes, end_us, max_hold_us, lo, hi, cal_starts, cal_ends, pa, pb)
    run = np.zeros(nw, dtype=np.int64)
    first = np.full(nw, -1, dtype=np.int64)  # first running instant of the window (-1: none)
    for p in range(npieces):
        x, y = pa[p], pb[p]
        k = x // window_us
        while x < y:
            e = min(y, (k + 1) * window_us)
            w = k - wlo
            run[w] += e - x
            if first[w] < 0:
                first[w] = x
            x = e
            k += 1
    parts = np.zeros(nw, dtype=np.float64)
    for i in range(part_ts.shape[0]):
        t = part_ts[i]
        if lo <= t < hi:
            parts[t // window_us - wlo] += part_inc[i]
    slow = np.zeros(nw, dtype=np.bool_)
    for w in range(nw):
        slow[w] = run[w] > 0 and parts[w] * ideal_cycle_us < ratio * run[w]
    j = 0
    for p in range(npieces):  # slow windows' running time, clipped to buckets
        x, y = pa[p], pb[p]
        k = x // window_us
        while x < y:
            e = min(y, (k + 1) * window_us)
            if slow[k - wlo]:
                while j < nb and bucket_ends[j] <= x:
                    j += 1
                q = j
                while q < nb and bucket_starts[q] < e:
                    a = max(x, bucket_starts[q])
                    b = min(e, bucket_ends[q])
                    if b > a:
                        red[q] += b - a
                    q += 1
            x = e
            k += 1
    for w in range(1, nw):
        if slow[w] and not slow[w - 1]:
            t = first[w]
            q = np.searchsorted(bucket_starts, t, side="right") - 1
            if q >= 0 and t < bucket_ends[q]:
                cnt[q] += 1
    return red / 1e6, cnt
