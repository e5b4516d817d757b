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
def _bucket_sums_into(ts: np.ndarray, values: np.ndarray, bucket_starts: np.ndarray, bucket_ends: np.ndarray,
                      wrap_fraction: float, sums: np.ndarray, rows: np.ndarray) -> None:
    """counter_bucket_sums of one counter into zeroed sums / rows.

    A bucket's increments are summed in a local in sample order and stored once when the samples leave the
    bucket: the same additions as `sums[j] += delta` per sample (0.0 + acc == acc), without a round trip
    through memory per sample.
    """
    nb = bucket_starts.shape[0]
    prev = np.nan
    j = 0
    acc = 0.0
    cnt = 0
    for i in range(ts.shape[0]):
        v = values[i]
        if np.isnan(v):
            continue
        t = ts[i]
        if j < nb and bucket_ends[j] <= t:
            sums[j] += acc
            rows[j] += cnt
            acc = 0.0
            cnt = 0
            while j < nb and bucket_ends[j] <= t:
                j += 1
        if j < nb and bucket_starts[j] <= t:
            cnt += 1
            if not np.isnan(prev):
                acc += counter_delta(prev, v, wrap_fraction)
        prev = v
    if j < nb:
        sums[j] += acc
        rows[j] += cnt


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
    _bucket_sums_into(ts, values, bucket_starts, bucket_ends, wrap_fraction, sums, rows)
    return sums, rows


@njit(cache=True, nogil=True)
def counter_bucket_sums_many_into(ts: np.ndarray, values: np.ndarray, offsets: np.ndarray, bucket_starts: np.ndarray,
                                  bucket_ends: np.ndarray, wrap_fraction: float, sums: np.ndarray,
                                  rows: np.ndarray) -> None:
    """counter_bucket_sums for many counters in one call: counter m is ts[offsets[m]:offsets[m + 1]]; writes
    sums[m], rows[m] (zeroed by the caller; pass offsets[m0:m1 + 1] and out[m0:m1] to split work over threads)."""
    for m in range(offsets.shape[0] - 1):
        lo, hi = offsets[m], offsets[m + 1]
        _bucket_sums_into(ts[lo:hi], values[lo:hi], bucket_starts, bucket_ends, wrap_fraction, sums[m], rows[m])


@njit(cache=True, nogil=True)
def counter_bucket_sums_many(ts: np.ndarray, values: np.ndarray, offsets: np.ndarray, bucket_starts: np.ndarray,
                             bucket_ends: np.ndarray, wrap_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """counter_bucket_sums of every counter (flat arrays + offsets): [nm, nb] each, identical to one call each."""
    nm = offsets.shape[0] - 1
    nb = bucket_starts.shape[0]
    sums = np.zeros((nm, nb), dtype=np.float64)
    rows = np.zeros((nm, nb), dtype=np.int64)
    counter_bucket_sums_many_into(ts, values, offsets, bucket_starts, bucket_ends, wrap_fraction, sums, rows)
    return sums, rows


@njit(cache=True, nogil=True)
def counter_increments(ts: np.ndarray, values: np.ndarray, wrap_fraction: float) -> np.ndarray:
    """Increment of each sample over the previous non-NaN one (0 for the first and for NaN samples).

    The same increments as counter_bucket_sums, per sample instead of per bucket (an increment belongs to the
    instant of the later sample).
    """
    inc = np.zeros(ts.shape[0], dtype=np.float64)
    prev = np.nan
    for i in range(ts.shape[0]):
        v = values[i]
        if np.isnan(v):
            continue
        if not np.isnan(prev):
            inc[i] = counter_delta(prev, v, wrap_fraction)
        prev = v
    return inc
