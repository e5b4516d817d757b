"""Buckets and the planned-busy calendar on the plant's clock (zoneinfo), as UTC instants / int64 microseconds.

hour: starts on the local hour; day: at local midnight; shift: at the shift's start (a shift crossing midnight
belongs to the day it starts). The calendar is the union of shift intervals, or all time when
KpiSettings.calendar == "always" (an explicit choice, never a silent default).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from core.plant import PlantConfig
from core.times import from_us, to_us

__all__ = ["BUCKETS", "BucketSet", "bucket_sets", "calendar", "day_buckets", "from_us", "hour_buckets",
           "shift_buckets", "shift_intervals", "to_us", "window_start"]

BUCKETS = ("hour", "shift", "day")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class BucketSet:
    """Sorted, non-overlapping buckets of one kind (for shifts: of one shift name)."""

    kind: str
    starts: np.ndarray  # int64 us
    ends: np.ndarray
    shift_name: str | None = None

    def __len__(self) -> int:
        return int(self.starts.shape[0])


def _local(d: date, t: time, tz: ZoneInfo, fold: int = 0) -> datetime:
    return datetime.combine(d, t, tzinfo=tz).replace(fold=fold).astimezone(UTC)


def _dates(start: datetime, end: datetime, tz: ZoneInfo, pad_days: int = 1) -> list[date]:
    d0 = start.astimezone(tz).date() - timedelta(days=pad_days)
    d1 = end.astimezone(tz).date() + timedelta(days=pad_days)
    return [d0 + timedelta(days=i) for i in range((d1 - d0).days + 1)]


def _clip(starts: list[datetime], ends: list[datetime], start: datetime, end: datetime) -> tuple[np.ndarray, np.ndarray]:
    keep = [(s, e) for s, e in zip(starts, ends, strict=True) if e > start and s < end]
    return (np.array([to_us(s) for s, _ in keep], dtype=np.int64),
            np.array([to_us(e) for _, e in keep], dtype=np.int64))


def hour_buckets(tz: ZoneInfo, start: datetime, end: datetime) -> BucketSet:
    """Local hours overlapping [start, end); DST gaps and repeats are handled by zoneinfo's fold."""
    instants = sorted({_local(d, time(h), tz, f) for d in _dates(start, end, tz) for h in range(24) for f in (0, 1)})
    return BucketSet("hour", *_clip(instants[:-1], instants[1:], start, end))


def day_buckets(tz: ZoneInfo, start: datetime, end: datetime) -> BucketSet:
    instants = [_local(d, time(0), tz) for d in _dates(start, end, tz)]
    return BucketSet("day", *_clip(instants[:-1], instants[1:], start, end))


def shift_intervals(cfg: PlantConfig, start: datetime, end: datetime) -> dict[str, tuple[list[datetime], list[datetime]]]:
    """Per shift name, its occurrences (UTC start, end) around [start, end)."""
    tz = ZoneInfo(cfg.plant.timezone)
    out: dict[str, tuple[list[datetime], list[datetime]]] = {}
    for shift in cfg.shifts:
        st, en = time(shift.start_min // 60, shift.start_min % 60), time(shift.end_min // 60, shift.end_min % 60)
        starts, ends = [], []
        for d in _dates(start, end, tz):
            if _WEEKDAYS[d.weekday()] not in shift.days:
                continue
            end_day = d + timedelta(days=1) if shift.end_min <= shift.start_min else d
            s, e = _local(d, st, tz), _local(end_day, en, tz)
            if e > s:  # a shift inside the hour a daylight-saving change skips does not take place that day
                starts.append(s)
                ends.append(e)
        out[shift.name] = (starts, ends)
    return out


def shift_buckets(cfg: PlantConfig, start: datetime, end: datetime) -> list[BucketSet]:
    return [BucketSet("shift", *_clip(s, e, start, end), shift_name=name)
            for name, (s, e) in shift_intervals(cfg, start, end).items()]


def bucket_sets(cfg: PlantConfig, start: datetime, end: datetime) -> list[BucketSet]:
    """Every bucket set (hour, each shift, day) overlapping [start, end)."""
    tz = ZoneInfo(cfg.plant.timezone)
    return [hour_buckets(tz, start, end), *shift_buckets(cfg, start, end), day_buckets(tz, start, end)]


def calendar(cfg: PlantConfig, start: datetime, end: datetime) -> tuple[np.ndarray, np.ndarray] | None:
    """Merged planned-operation intervals around [start, end); None when PBT is unknown (no shift calendar)."""
    if cfg.kpi.calendar == "always":
        pad = timedelta(days=2)
        return np.array([to_us(start - pad)], dtype=np.int64), np.array([to_us(end + pad)], dtype=np.int64)
    if not cfg.shifts:
        return None
    pairs = sorted((to_us(s), to_us(e)) for ss, ee in shift_intervals(cfg, start, end).values()
                   for s, e in zip(ss, ee, strict=True))
    merged: list[list[int]] = []
    for s, e in pairs:
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return (np.array([m[0] for m in merged], dtype=np.int64), np.array([m[1] for m in merged], dtype=np.int64))


def window_start(cfg: PlantConfig, t: datetime) -> datetime:
    """Earliest start of any bucket (hour, shift, day) that contains t: recomputing from here closes them all."""
    earliest = t
    for bs in bucket_sets(cfg, t, t + timedelta(microseconds=1)):
        if len(bs):
            earliest = min(earliest, from_us(int(bs.starts.min())))
    return earliest
