"""numba kernels: pure array functions (no I/O), deterministic, each also callable as `kernel.py_func`.

Conventions: times are int64 microseconds since the Unix epoch (UTC); buckets are given as sorted,
non-overlapping half-open intervals [bucket_starts[j], bucket_ends[j]); the planned-busy calendar likewise
(merged, sorted). State codes are the indexes of `STATES`; anything else (e.g. -1) is unknown.
"""

from kpi.kernels.counters import counter_bucket_sums, counter_delta
from kpi.kernels.integrals import step_integral
from kpi.kernels.rollup import group_sums, safe_ratio
from kpi.kernels.states import (
    DOWN,
    IDLE,
    N_STATES,
    PLANNED_STOP,
    RUNNING,
    SETUP,
    STATES,
    calendar_time,
    event_counts,
    failure_events,
    micro_stops,
    state_durations,
)

__all__ = [
    "DOWN", "IDLE", "N_STATES", "PLANNED_STOP", "RUNNING", "SETUP", "STATES",
    "calendar_time", "counter_bucket_sums", "counter_delta", "event_counts", "failure_events", "group_sums",
    "micro_stops", "safe_ratio", "state_durations", "step_integral",
]
