"""numba kernels: pure array functions (no I/O), deterministic, each also callable as `kernel.py_func`.

Conventions: times are int64 microseconds since the Unix epoch (UTC); buckets are given as sorted,
non-overlapping half-open intervals [bucket_starts[j], bucket_ends[j]); the planned-busy calendar likewise
(merged, sorted). State codes are the indexes of `STATES`; anything else (e.g. -1) is unknown.
"""

from kpi.kernels.counters import (
    counter_bucket_sums,
    counter_bucket_sums_many,
    counter_bucket_sums_many_into,
    counter_delta,
    counter_increments,
    counter_step,
)
from kpi.kernels.integrals import step_integral
from kpi.kernels.rollup import group_sums, safe_ratio
from kpi.kernels.speed import reduced_speed
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
    state_durations_many,
    state_durations_many_into,
)

__all__ = [
    "DOWN", "IDLE", "N_STATES", "PLANNED_STOP", "RUNNING", "SETUP", "STATES",
    "calendar_time", "counter_bucket_sums", "counter_bucket_sums_many", "counter_bucket_sums_many_into",
    "counter_delta", "counter_increments", "counter_step", "event_counts", "failure_events", "group_sums", "micro_stops",
    "reduced_speed", "safe_ratio", "state_durations", "state_durations_many", "state_durations_many_into",
    "step_integral",
]
