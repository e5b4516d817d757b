"""Reads from the collector's tables: one machine's signals around a window, as numpy arrays."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import psycopg

from core.plant import Asset, PlantConfig
from kpi.buckets import BucketSet, from_us, to_us
from kpi.compute import COUNTERS, CounterRule, MachineInputs, Series
from kpi.kernels import STATES
from kpi.networking import reporting_matrix
from kpi.statemodel import REDUCED_SPEED_WINDOW_S, micro_stop_s, reduced_speed_ratio, state_max_hold_s

_US = "(extract(epoch FROM ts) * 1000000)::bigint"
_SERIES_SQL = f"""
(SELECT {_US}, value, value_text, quality FROM samples
  WHERE device_id = %(dev)s AND tag = %(tag)s AND ts < %(start)s ORDER BY ts DESC LIMIT 1)
UNION ALL
(SELECT {_US}, value, value_text, quality FROM samples
  WHERE device_id = %(dev)s AND tag = %(tag)s AND ts >= %(start)s AND ts < %(end)s ORDER BY ts)
"""


_VALUE = "CASE WHEN quality = 'bad' OR value IS NULL THEN 'NaN'::float8 ELSE value END"
_COPY_SQL = f"""COPY (
(SELECT ts, {_VALUE} FROM samples
  WHERE device_id = %(dev)s AND tag = %(tag)s AND ts < %(start)s ORDER BY ts DESC LIMIT 1)
UNION ALL
(SELECT ts, {_VALUE} FROM samples
  WHERE device_id = %(dev)s AND tag = %(tag)s AND ts >= %(start)s AND ts < %(end)s ORDER BY ts)
) TO STDOUT (FORMAT binary)"""
_PG_EPOCH_US = 946_684_800_000_000  # binary timestamptz counts microseconds from 2000-01-01 UTC
_ROW = np.dtype([("nf", ">i2"), ("l1", ">i4"), ("ts", ">i8"), ("l2", ">i4"), ("value", ">f8")])
_HEADER = 19  # PGCOPY signature, flags, header extension length (0)


def read_numbers(conn: psycopg.Connection[Any], device: str, tag: str, start: datetime,
                 end: datetime) -> tuple[np.ndarray, np.ndarray]:
    """(ts us, value; bad quality or NULL as NaN) like read_series, by binary COPY parsed with NumPy (no per-row
    Python objects: the read is most of a backfill's time)."""
    buf = bytearray()
    with conn.cursor() as cur, cur.copy(_COPY_SQL, {"dev": device, "tag": tag, "start": start, "end": end}) as cp:
        for block in cp:
            buf += block
    n = (len(buf) - _HEADER - 2) // _ROW.itemsize
    rows = np.frombuffer(bytes(buf), dtype=_ROW, count=n, offset=_HEADER)
    return rows["ts"].astype(np.int64) + _PG_EPOCH_US, rows["value"].astype(np.float64)


def read_series(conn: psycopg.Connection[Any], device: str, tag: str, start: datetime,
                end: datetime) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """(ts us, value with bad quality as NaN, value_text): the last sample before start, then the window."""
    rows = conn.execute(_SERIES_SQL, {"dev": device, "tag": tag, "start": start, "end": end}).fetchall()
    ts = np.array([r[0] for r in rows], dtype=np.int64)
    values = np.array([np.nan if r[1] is None or r[3] == "bad" else r[1] for r in rows], dtype=np.float64)
    return ts, values, [r[2] for r in rows]


def _numeric(key: int | str) -> bool:
    try:
        float(key)
    except ValueError:
        return False
    return True


def state_codes(values: np.ndarray, texts: list[str | None], mapping: Mapping[int | str, str]) -> np.ndarray:
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
    """1.0 for each bucket in which the device was reporting (kpi.networking.reporting_matrix), else 0.0."""
    return reporting_matrix(conn, [device], b.starts, b.ends)[device].astype(np.float64)


def read_disconnects(conn: psycopg.Connection[Any], device: str, start: datetime, end: datetime) -> np.ndarray:
    """Instants (us) of `disconnected` events of the device in [start, end)."""
    rows = conn.execute(f"SELECT {_US} FROM device_status WHERE device_id = %s AND state = 'disconnected' "
                        "AND ts >= %s AND ts < %s ORDER BY ts", (device, start, end)).fetchall()
    return np.array([r[0] for r in rows], dtype=np.int64)


def read_machine(conn: psycopg.Connection[Any], machine: Asset, start: datetime, end: datetime,
                 cfg: PlantConfig | None = None) -> MachineInputs:
    """All configured signals of one machine for [start, end) plus the sample just before start.

    With a micro-stop threshold, the state is read `micro_stop_s` further on both sides, so that a stop that
    straddles the window is classified the same way from either side. With a reduced-speed ratio, the state and
    the counters are also read one reduced-speed window earlier: that window decides whether a slow period
    crossing the window start was already counted.
    """
    inp = MachineInputs(ideal_cycle_time_s=machine.ideal_cycle_time_s, production=machine.production,
                        has_device=machine.device is not None)
    sig, dev = machine.signals, machine.device
    if sig is None or dev is None:
        return inp
    if cfg is not None:
        inp.micro_stop_us = int(micro_stop_s(cfg, machine) * 1e6)
        inp.max_hold_us = int(state_max_hold_s(cfg, machine) * 1e6)
        inp.reduced_speed_ratio = reduced_speed_ratio(cfg, machine)
    back = timedelta(seconds=REDUCED_SPEED_WINDOW_S if inp.reduced_speed_ratio > 0 else 0)
    if sig.state is not None:
        pad = timedelta(microseconds=inp.micro_stop_us)
        if all(_numeric(k) for k in (sig.state.map or {})):
            ts, values = read_numbers(conn, dev, sig.state.tag, start - pad - back, end + pad)
            texts: list[str | None] = []
        else:
            ts, values, texts = read_series(conn, dev, sig.state.tag, start - pad - back, end + pad)
        inp.state = (ts, state_codes(values, texts, sig.state.map or {}))
        since = from_us(int(ts[0])) if ts.shape[0] and int(ts[0]) < to_us(start) else start
        inp.disconnects = read_disconnects(conn, dev, since, end)
    for name in COUNTERS:
        ref = getattr(sig, name)
        if ref is not None:
            inp.counters[name] = read_numbers(conn, dev, ref.tag, start - back, end)
    if cfg is not None:
        inp.counter_rules = counter_rules(cfg, machine)
    for name in ("energy_kwh", "power_kw"):
        ref = getattr(sig, name)
        if ref is not None:
            series: Series = read_numbers(conn, dev, ref.tag, start, end)
            setattr(inp, name, series)
    return inp


def counter_rules(cfg: PlantConfig, machine: Asset) -> dict[str, CounterRule]:
    """Each counter signal's rule: wrap value from its `rollover` key or declared tag type (never guessed from
    the values), reset thresholds from its keys, and its poll interval if the device polls it."""
    out: dict[str, CounterRule] = {}
    for name in (*COUNTERS, "energy_kwh"):
        sig = cfg.signal(machine.id, name)
        ref = getattr(machine.signals, name, None) if machine.signals is not None else None
        if ref is None:
            continue
        modulus = sig.counter_modulus if sig is not None else ref.rollover
        ratio = ref.reset_ratio if ref.reset_ratio is not None else CounterRule.reset_ratio
        out[name] = CounterRule(modulus or 0.0, ratio, ref.reset_below or 0.0,
                                sig.poll_interval_s if sig is not None and sig.polled else 0.0)
    return out


def first_sample(conn: psycopg.Connection[Any], device: str) -> datetime | None:
    row = conn.execute("SELECT min(ts) FROM samples WHERE device_id = %s", (device,)).fetchone()
    return row[0] if row else None


def earliest_late_sample(conn: psycopg.Connection[Any], device: str, since: datetime,
                         before: datetime) -> datetime | None:
    """Earliest ts of a sample ingested after `since` (the last run) whose ts lies before `before`."""
    row = conn.execute("SELECT min(ts) FROM samples WHERE device_id = %s AND ingested_at > %s AND ts < %s",
                       (device, since, before)).fetchone()
    return row[0] if row else None
