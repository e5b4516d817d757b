"""Time as integer microseconds since the Unix epoch (UTC): the one representation every stage exchanges."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now_us() -> int:
    """The wall clock in epoch microseconds."""
    return time.time_ns() // 1000


def to_us(dt: datetime) -> int:
    """Aware datetime -> epoch microseconds (exact: no float rounding)."""
    delta = dt - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    """Epoch microseconds -> aware UTC datetime (exact)."""
    return EPOCH + timedelta(microseconds=int(us))
