"""Checks of the shift calendar that are not errors: overlapping shifts, starts moved by daylight saving."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from core.plant import ALL_DAYS, PlantConfig, Shift

WEEK_MIN = 7 * 1440


def _hhmm(minute: int) -> str:
    return f"{minute % 1440 // 60:02d}:{minute % 60:02d}"


def _week_intervals(shift: Shift) -> list[tuple[int, int, str]]:
    """(start, end, weekday) in minutes from Monday 00:00; a shift ending at or before its start ends next day."""
    length = (shift.end_min - shift.start_min) % 1440 or 1440
    return [(i * 1440 + shift.start_min, i * 1440 + shift.start_min + length, day)
            for i, day in enumerate(ALL_DAYS) if day in shift.days]


def _first_overlap(a: Shift, b: Shift) -> tuple[str, int, int] | None:
    """(weekday, from, to) of the first planned time two shifts share (or where they start together)."""
    for sa, ea, day in _week_intervals(a):
        for sb0, eb0, _ in _week_intervals(b):
            for shift_by in (-WEEK_MIN, 0, WEEK_MIN):  # a night shift of Sunday runs into Monday
                sb, eb = sb0 + shift_by, eb0 + shift_by
                lo, hi = max(sa, sb), min(ea, eb)
                if hi > lo or sa == sb:
                    return day, lo, hi
    return None


def overlaps(shifts: list[Shift]) -> list[str]:
    """One line per pair of shifts that share planned time (or start at the same time)."""
    out: list[str] = []
    for i, a in enumerate(shifts):
        for b in shifts[i + 1:]:
            hit = _first_overlap(a, b)
            if hit is not None:
                out.append(f"shifts {a.name!r} and {b.name!r} overlap on {hit[0]} from {_hhmm(hit[1])} to "
                           f"{_hhmm(hit[2])}: that time is planned once in the calendar, and each shift keeps "
                           "its own bucket")
    return out


def dst_moves(cfg: PlantConfig, year: int | None = None) -> list[str]:
    """One line per shift start or end that a daylight-saving change skips or repeats in the plant's zone."""
    tz = ZoneInfo(cfg.plant.timezone)
    year = year or datetime.now(UTC).year
    out: list[str] = []
    for shift in cfg.shifts:
        for label, minute in (("starts", shift.start_min), ("ends", shift.end_min)):
            t = time(minute // 60, minute % 60)
            d = date(year, 1, 1)
            while d.year == year:
                local = datetime.combine(d, t, tzinfo=tz)
                back = local.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
                if back != local.replace(tzinfo=None):
                    out.append(f"shift {shift.name!r} {label} at {_hhmm(minute)}, a time that does not exist on "
                               f"{d.isoformat()} in {cfg.plant.timezone} (daylight saving): that day it "
                               f"{label} at {back.strftime('%H:%M')}")
                    break
                if local.replace(fold=1).utcoffset() != local.utcoffset():
                    out.append(f"shift {shift.name!r} {label} at {_hhmm(minute)}, a time that occurs twice on "
                               f"{d.isoformat()} in {cfg.plant.timezone} (daylight saving): the first is used")
                    break
                d += timedelta(days=1)
    return out


def shift_warnings(cfg: PlantConfig) -> list[str]:
    """Everything `config check` should warn about in the shift calendar."""
    return overlaps(cfg.shifts) + dst_moves(cfg)
