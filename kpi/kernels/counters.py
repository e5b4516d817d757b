"""Cumulative PLC counters (parts, energy meters) -> per-bucket increments, with rollover, reset and correction.

The rule (kpi/README.md "Counters"): an increment is never negative. For a drop from `prev` to `cur`:
- rollover: the counter has a declared modulus M (tag type or the signal's `rollover` key), prev < M and the
  increase across the wrap, M - prev + cur, is at most wrap_fraction x M: that increase counts;
- reset: cur <= reset_ratio x prev, or cur < reset_below: the counter restarted from 0, cur counts;
- otherwise a correction (an operator corrected it, a meter jittered back): nothing counts, cur is the new
  baseline, and the drop is counted as a data-quality event.
A negative reading is bad data: ignored (not a baseline) and counted.
"""

from __future__ import annotations

import numpy as np
from numba import njit

DEFAULT_WRAP_FRACTION = 1.0 / 16.0
DEFAULT_RESET_RATIO = 0.1
# what a step of a counter was (index into the event rows of counter_bucket_sums' output)
INCREASE, ROLLOVER, RESET, CORRECTION, NEGATIVE = 0, 1, 2, 3, 4
# rows of counter_bucket_sums' output
IN_CAL, OFF_CAL, SAMPLES, ROLLOVERS, RESETS, CORRECTIONS, NEGATIVES = 0, 1, 2, 3, 4, 5, 6
N_OUT = 7


@njit(cache=True, nogil=True)
def counter_step(prev: float, cur: float, modulus: float, wrap_fraction: float, reset_ratio: float,
                 reset_below: float) -> tuple[float, int]:
    """(increment, kind) of a step from `prev` to `cur`; kind is INCREASE, ROLLOVER, RESET, CORRECTION or NEGATIVE.

    modulus <= 0: the counter has no declared width and never rolls over.
    """
    if cur < 0.0:
        return 0.0, NEGATIVE
    if cur >= prev:
        return cur - prev, INCREASE
    if modulus > 0.0 and prev < modulus:
        wrapped = modulus - prev + cur
        if wrapped <= modulus * wrap_fraction:
            return wrapped, ROLLOVER
    if cur <= reset_ratio * prev or cur < reset_below:
        return cur, RESET
    return 0.0, CORRECTION


@njit(cache=True, nogil=True)
def counter_delta(prev: float, cur: float, modulus: float, wrap_fraction: float, reset_ratio: float,
                  reset_below: float) -> float:
    """Increment from `prev` to `cur` (counter_step without the kind)."""
    return counter_step(prev, cur, modulus, wrap_fraction, reset_ratio, reset_below)[0]


@njit(cache=True, nogil=True)
def _bucket_sums_into(ts: np.ndarray, values: np.ndarray, bucket_starts: np.ndarray, bucket_ends: np.ndarray,
                      cal_starts: np.ndarray, cal_ends: np.ndarray, modulus: float, wrap_fraction: float,
                      reset_ratio: float, reset_below: float, out: np.ndarray) -> None:
    """counter_bucket_sums of one counter into a zeroed out[N_OUT, nb]."""
    nb = bucket_starts.shape[0]
    nc = cal_starts.shape[0]
    prev = np.nan
    j = 0
    c = 0
    for i in range(ts.shape[0]):
        v = values[i]
        if np.isnan(v):
            continue
        t = ts[i]
        while j < nb and bucket_ends[j] <= t:
            j += 1
        inside = j < nb and bucket_starts[j] <= t
        if v < 0.0:
            if inside:
                out[SAMPLES, j] += 1.0
                out[NEGATIVES, j] += 1.0
            continue
        if inside:
            out[SAMPLES, j] += 1.0
            if not np.isnan(prev):
                d, kind = counter_step(prev, v, modulus, wrap_fraction, reset_ratio, reset_below)
                while c < nc and cal_ends[c] <= t:
                    c += 1
                if c < nc and cal_starts[c] <= t:
                    out[IN_CAL, j] += d
                else:
                    out[OFF_CAL, j] += d
                if kind != INCREASE:
                    out[ROLLOVERS + kind - ROLLOVER, j] += 1.0
        prev = v


@njit(cache=True, nogil=True)
def counter_bucket_sums(ts: np.ndarray, values: np.ndarray, bucket_starts: np.ndarray, bucket_ends: np.ndarray,
                        cal_starts: np.ndarray, cal_ends: np.ndarray, modulus: float, wrap_fraction: float,
                        reset_ratio: float, reset_below: float) -> np.ndarray:
    """Per bucket: increments inside / outside the calendar, samples, rollovers, resets, corrections, negatives.

    Returns out[N_OUT, nb] (rows IN_CAL ... NEGATIVES). An increment belongs to the bucket, and to the calendar
    or not, by the instant of the later sample. `ts` sorted ascending; a sample before the first bucket only
    sets the baseline. NaN values are skipped.
    """
    out = np.zeros((N_OUT, bucket_starts.shape[0]), dtype=np.float64)
    _bucket_sums_into(ts, values, bucket_starts, bucket_ends, cal_starts, cal_ends, modulus, wrap_fraction,
                      reset_ratio, reset_below, out)
    return out


@njit(cache=True, nogil=True)
def counter_bucket_sums_many_into(ts: np.ndarray, values: np.ndarray, offsets: np.ndarray, bucket_starts: np.ndarray,
                                  bucket_ends: np.ndarray, cal_starts: np.ndarray, cal_ends: np.ndarray,
                                  modulus: float, wrap_fraction: float, reset_ratio: float, reset_below: float,
                                  out: np.ndarray) -> None:
    """counter_bucket_sums for many counters of one rule in one call: counter m is ts[offsets[m]:offsets[m + 1]];
    writes out[m] (zeroed by the caller; pass offsets[m0:m1 + 1] and out[m0:m1] to split work over threads)."""
    for m in range(offsets.shape[0] - 1):
        lo, hi = offsets[m], offsets[m + 1]
        _bucket_sums_into(ts[lo:hi], values[lo:hi], bucket_starts, bucket_ends, cal_starts, cal_ends, modulus,
                          wrap_fraction, reset_ratio, reset_below, out[m])


@njit(cache=True, nogil=True)
def counter_bucket_sums_many(ts: np.ndarray, values: np.ndarray, offsets: np.ndarray, bucket_starts: np.ndarray,
                             bucket_ends: np.ndarray, cal_starts: np.ndarray, cal_ends: np.ndarray, modulus: float,
                             wrap_fraction: float, reset_ratio: float, reset_below: float) -> np.ndarray:
    """counter_bucket_sums of every counter (flat arrays + offsets): [nm, N_OUT, nb], identical to one call each."""
    out = np.zeros((offsets.shape[0] - 1, N_OUT, bucket_starts.shape[0]), dtype=np.float64)
    counter_bucket_sums_many_into(ts, values, offsets, bucket_starts, bucket_ends, cal_starts, cal_ends, modulus,
                                  wrap_fraction, reset_ratio, reset_below, out)
    return out


@njit(cache=True, nogil=True)
def counter_increments(ts: np.ndarray, values: np.ndarray, modulus: float, wrap_fraction: float,
                       reset_ratio: float, reset_below: float) -> np.ndarray:
    """Increment of each sample over the previous valid one (0 for the first, NaN and negative samples).

    The same increments as counter_bucket_sums, per sample instead of per bucket.
    """
    inc = np.zeros(ts.shape[0], dtype=np.float64)
    prev = np.nan
    for i in range(ts.shape[0]):
        v = values[i]
        if np.isnan(v) or v < 0.0:
            continue
        if not np.isnan(prev):
            inc[i] = counter_step(prev, v, modulus, wrap_fraction, reset_ratio, reset_below)[0]
        prev = v
    return inc
