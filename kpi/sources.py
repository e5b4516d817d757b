"""Reads from the collector's tables: one machine's signals around a window, as numpy arrays."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import psycopg

from edge.config import Asset
from kpi.buckets import BucketSet, from_us
from kpi.compute import COUNTERS, MachineInputs, Series
from kpi.kernels import STATES

_US = "(extract(epoch FROM ts) * 1000000)::bigint"
_SERIES_SQL = f"""
(SELECT {_US}, value, value_text, quality FROM samples
  WHERE device_id = %(dev)s AND tag = %(tag)s AND ts < %(start)s ORDER BY ts DESC LIMIT 1)
UNION ALL
(SELECT {_US}, value, value_text, quality FROM samples
  WHERE device_id = %(dev)s AND tag = %(tag)s AND ts >= %(start)s AND ts < %(end)s ORDER BY ts)
"""


def read_series(conn: psycopg.Connection[Any], device: str, tag: str, start: datetime,
                end: datetime) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """(ts us, value with bad quality as NaN, value_text): the last sample before start, then the window."""
    rows = conn.execute(_SERIES_SQL, {"dev": device, "tag": tag, "start": start, "end": end}).fetchall()
    ts = np.array([r[0] for r in rows], dtype=np.int64)
    values = np.array([np.nan if r[1] is None or r[3] == "bad" else r[1] for r in rows], dtype=np.float64)
    return ts, values, [r[2] for r in rows]


def state_codes(values: np.ndarray, texts: list[str | None], mapping: dict[int | str, str]) -> np.ndarray:
    """Numeric (or text) state values -> indexes of STATES; unmapped -> -1 (unknown)."""
    codes = np.full(values.shape[0], -1, dtype=np.int64)
    for key, state in mapping.items():
        idx = STATES.index(state)
        try:
            codes[values == float(key)] = idx
        except ValueError:  # a non-numeric key matches value_text
            for i, t in enumerate(texts):
                if t == key:
                    codes[i] = idx
    return codes


def read_networked(conn: psycopg.Connection[Any], device: str, b: BucketSet) -> np.ndarray:
    """1.0 for each bucket in which the device delivered at least one good sample, else 0.0."""
    if not len(b):
        return np.zeros(0)
    rows = conn.execute(
        """SELECT i FROM unnest(%s::timestamptz[], %s::timestamptz[]) WITH ORDINALITY AS w(s, e, i)
           WHERE EXISTS (SELECT 1 FROM samples WHERE device_id = %s AND quality = 'good'
                          AND ts >= w.s AND ts < w.e)""",
        ([from_us(x) for x in b.starts], [from_us(x) for x in b.ends], device)).fetchall()
    out = np.zeros(len(b))
    for (i,) in rows:
        out[int(i) - 1] = 1.0
    return out


def read_machine(conn: psycopg.Connection[Any], machine: Asset, start: datetime, end: datetime) -> MachineInputs:
    """All configured signals of one machine for [start, end) plus the sample just before start."""
    inp = MachineInputs(ideal_cycle_time_s=machine.ideal_cycle_time_s, production=machine.production,
                        has_device=machine.device is not None)
    sig, dev = machine.signals, machine.device
    if sig is None or dev is None:
        return inp
    if sig.state is not None:
        ts, values, texts = read_series(conn, dev, sig.state.tag, start, end)
        inp.state = (ts, state_codes(values, texts, sig.state.map or {}))
    for name in COUNTERS:
        ref = getattr(sig, name)
        if ref is not None:
            ts, values, _ = read_series(conn, dev, ref.tag, start, end)
            inp.counters[name] = (ts, values)
    for name in ("energy_kwh", "power_kw"):
        ref = getattr(sig, name)
        if ref is not None:
            ts, values, _ = read_series(conn, dev, ref.tag, start, end)
            series: Series = (ts, values)
            setattr(inp, name, series)
    return inp


def first_sample(conn: psycopg.Connection[Any], device: str) -> datetime | None:
    row = conn.execute("SELECT min(ts) FROM samples WHERE device_id = %s", (device,)).fetchone()
    return row[0] if row else None


def earliest_late_sample(conn: psycopg.Connection[Any], device: str, since: datetime,
                         before: datetime) -> datetime | None:
    """Earliest ts of a sample ingested after `since` (the last run) whose ts lies before `before`."""
    row = conn.execute("SELECT min(ts) FROM samples WHERE device_id = %s AND ingested_at > %s AND ts < %s",
                       (device, since, before)).fetchone()
    return row[0] if row else None
