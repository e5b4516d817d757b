"""Time-weighted step-hold integrals per bucket (instantaneous power in kW -> energy in kWh)."""

from __future__ import annotations

import numpy as np
from numba import njit

from kpi.kernels.states import hold_end

US_PER_HOUR = 3.6e9


@njit(cache=True, nogil=True)
def step_integral(ts: np.ndarray, values: np.ndarray, end_us: int, bucket_starts: np.ndarray,
                  bucket_ends: np.ndarray, max_hold_us: int) -> tuple[np.ndarray, np.ndarray]:
    """Integral of a step-held signal over each bucket, in value x hours (kW -> kWh).

    Sample i holds from ts[i] to ts[i+1] (the last to end_us), at most max_hold_us when > 0; NaN is a gap.
    Returns (integral per bucket, seconds covered by a value per bucket).
    """
    nb = bucket_starts.shape[0]
    n = ts.shape[0]
    acc = np.zeros(nb, dtype=np.float64)
    covered = np.zeros(nb, dtype=np.int64)
    bi = 0
    for i in range(n):
        v = values[i]
        if np.isnan(v):
            continue
        a = ts[i]
        b = hold_end(ts, i, end_us, max_hold_us)
        if b <= a:
            continue
        while bi < nb and bucket_ends[bi] <= a:
            bi += 1
        j = bi
        while j < nb and bucket_starts[j] < b:
            lo = max(a, bucket_starts[j])
            hi = min(b, bucket_ends[j])
            if hi > lo:
                acc[j] += v * (hi - lo)
                covered[j] += hi - lo
            j += 1
    return acc / US_PER_HOUR, covered / 1e6
