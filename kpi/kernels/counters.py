"""Cumulative PLC counters (parts, energy meters) -> per-bucket increments, with reset and rollover handling."""

from __future__ import annotations

import numpy as np
from numba import njit

WRAP_16 = 65536.0
WRAP_32 = 4294967296.0
DEFAULT_WRAP_FRACTION = 1.0 / 16.0


@njit(cache=True, nogil=True)
def counter_delta(prev: float, cur: float, wrap_fraction: float) -> float:
    """Increment from `prev` to `cur` of a cumulative counter.

    A drop is a rollover when the increment assuming a wrap at 2**16 (then 2**32) is small
    (<= wrap_fraction * modulus), else a reset, after which the counter counts from 0 (increment = cur).
    """
    if cur >= prev:
        return cur - prev
    if prev < WRAP_16:
        wrapped = WRAP_16 - prev + cur
        if wrapped <= WRAP_16 * wrap_fraction:
            return wrapped
    if prev < WRAP_32:
        wrapped = WRAP_32 - prev + cur
        if wrapped <= WRAP_32 * wrap_fraction:
            return wrapped
    return cur if cur > 0.0 else 0.0


@njit(cache=True, nogil=True)
def counter_bucket_sums(ts: np.ndarray, values: np.ndarray, bucket_starts: np.ndarray, bucket_ends: np.ndarray,
                        wrap_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Sum counter increments per bucket; an increment belongs to the bucket of the later sample.

    `ts` sorted ascending; a sample before the first bucket only sets the baseline. NaN values are skipped.
    Returns (increments per bucket, samples per bucket).
    """
    nb = bucket_starts.shape[0]
    sums = np.zeros(nb, dtype=np.float64)
    rows = np.zeros(nb, dtype=np.int64)
    prev = np.nan
    j = 0
    for i in range(ts.shape[0]):
        v = values[i]
        if np.isnan(v):
            continue
        t = ts[i]
        while j < nb and bucket_ends[j] <= t:
            j += 1
        inside = j < nb and bucket_starts[j] <= t
        if inside:
            rows[j] += 1
            if not np.isnan(prev):
                sums[j] += counter_delta(prev, v, wrap_fraction)
        prev = v
    return sums, rows
