"""Roll-up machine -> line -> area -> plant as ratio of sums: sum numerators and denominators, never ratios."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def group_sums(values: np.ndarray, pair_member: np.ndarray, pair_group: np.ndarray,
               n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum member rows into groups; (pair_member[p], pair_group[p]) says member belongs to group.

    values: [members, columns]; NaN (input not available for that member) is left out and not counted.
    Returns (sums [groups, columns], contributing members [groups, columns]).
    """
    k = values.shape[1]
    sums = np.zeros((n_groups, k), dtype=np.float64)
    counts = np.zeros((n_groups, k), dtype=np.int64)
    for p in range(pair_member.shape[0]):
        m = pair_member[p]
        g = pair_group[p]
        for c in range(k):
            v = values[m, c]
            if not np.isnan(v):
                sums[g, c] += v
                counts[g, c] += 1
    return sums, counts


@njit(cache=True, nogil=True)
def safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den element-wise; NaN where den is 0 or either side is NaN (the caller stores NULL + reason)."""
    out = np.empty(num.shape[0], dtype=np.float64)
    for i in range(num.shape[0]):
        if np.isnan(num[i]) or np.isnan(den[i]) or den[i] == 0.0:
            out[i] = np.nan
        else:
            out[i] = num[i] / den[i]
    return out
