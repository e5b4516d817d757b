"""One machine's chunk in one query: every signal's window as arrays (binary COPY, parsed with NumPy).

The plain path (kpi.sources.read_machine) asks once per signal and once per bucket set for the networking flag;
this reader returns the same MachineInputs from one round trip: the server aggregates each signal's samples
(the last one before its window, then the window, in time order) into three arrays, so the client receives a
few messages per chunk instead of one per sample. The networking flag comes from the good samples already
read, and only buckets without any ask the database about the device's other tags (`reporting`).
"""

from __future__ import annotations

import struct
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import psycopg

from core.plant import Asset, PlantConfig
from kpi.buckets import BucketSet, from_us, to_us
from kpi.compute import COUNTERS, MachineInputs
from kpi.sources import _numeric, counter_rules, read_disconnects, read_machine, state_codes
from kpi.statemodel import REDUCED_SPEED_WINDOW_S, micro_stop_s, reduced_speed_ratio, state_max_hold_s

_VALUE = "CASE WHEN quality = 'bad' OR value IS NULL THEN 'NaN'::float8 ELSE value END"
_SQL = f"""COPY (
SELECT t.i::int4, coalesce(w.ts, '{{}}'), coalesce(w.v, '{{}}'), coalesce(w.g, '{{}}')
FROM unnest(%(tags)s::text[], %(starts)s::timestamptz[], %(ends)s::timestamptz[]) WITH ORDINALITY AS t(tag, s, e, i)
CROSS JOIN LATERAL (SELECT array_agg(x.ts) AS ts, array_agg(x.v) AS v, array_agg(x.g) AS g FROM (
  (SELECT ts, {_VALUE} AS v, quality = 'good' AS g FROM samples
    WHERE device_id = %(dev)s AND tag = t.tag AND ts < t.s ORDER BY ts DESC LIMIT 1)
  UNION ALL
  (SELECT ts, {_VALUE}, quality = 'good' FROM samples
    WHERE device_id = %(dev)s AND tag = t.tag AND ts >= t.s AND ts < t.e ORDER BY ts)) x) w
) TO STDOUT (FORMAT binary)"""
_PG_EPOCH_US = 946_684_800_000_000
_HEADER = 19
_I2, _I4 = struct.Struct(">h"), struct.Struct(">i")


def _array(buf: memoryview, pos: int, elem: str, native: str) -> tuple[np.ndarray, int]:
    """One binary array field at pos (its length word first; no NULL elements) -> (elements, position after)."""
    (size,) = _I4.unpack_from(buf, pos)
    pos += 4
    if _I4.unpack_from(buf, pos)[0] == 0:  # no dimensions: empty
        return np.empty(0, dtype=native), pos + size
    n = _I4.unpack_from(buf, pos + 12)[0]  # ndim, has-null, element type, then the dimension's length
    body = np.frombuffer(buf, dtype=np.dtype([("len", ">i4"), ("x", elem)]), count=n, offset=pos + 20)
    return body["x"].astype(native), pos + size


def read_windows(conn: psycopg.Connection[Any], device: str, windows: list[tuple[str, datetime, datetime]]
                 ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per (tag, start, end): (ts us, value with bad or NULL as NaN, good-quality bool) of the last sample before
    start and of [start, end), in time order: the same arrays as sources.read_numbers, in one query."""
    params = {"dev": device, "tags": [w[0] for w in windows], "starts": [w[1] for w in windows],
              "ends": [w[2] for w in windows]}
    parts: list[bytes] = []
    with conn.cursor() as cur, cur.copy(_SQL, params) as cp:
        for block in cp:
            parts.append(bytes(block))
    buf = memoryview(b"".join(parts))
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [
        (np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, bool))] * len(windows)
    pos = _HEADER
    while _I2.unpack_from(buf, pos)[0] == 4:  # a tuple of 4 fields (the trailer is -1)
        i = _I4.unpack_from(buf, pos + 6)[0]
        ts, pos = _array(buf, pos + 10, ">i8", "i8")
        vs, pos = _array(buf, pos, ">f8", "f8")
        gs, pos = _array(buf, pos, "u1", "bool")
        out[i - 1] = (ts + _PG_EPOCH_US, vs, gs)
    return out


def read_chunk(conn: psycopg.Connection[Any], machine: Asset, start: datetime, end: datetime,
               cfg: PlantConfig | None = None) -> tuple[MachineInputs, list[np.ndarray]]:
    """kpi.sources.read_machine in one query, plus per signal the sorted instants (us) of the good samples read
    (for the networking flag). A state mapped by text codes is read the plain way (it needs value_text)."""
    sig, dev = machine.signals, machine.device
    if sig is None or dev is None or (sig.state is not None and not all(_numeric(k) for k in sig.state.map or {})):
        return read_machine(conn, machine, start, end, cfg), []
    inp = MachineInputs(ideal_cycle_time_s=machine.ideal_cycle_time_s, production=machine.production,
                        has_device=True)
    if cfg is not None:
        inp.micro_stop_us = int(micro_stop_s(cfg, machine) * 1e6)
        inp.max_hold_us = int(state_max_hold_s(cfg, machine) * 1e6)
        inp.reduced_speed_ratio = reduced_speed_ratio(cfg, machine)
    back = timedelta(seconds=REDUCED_SPEED_WINDOW_S if inp.reduced_speed_ratio > 0 else 0)
    pad = timedelta(microseconds=inp.micro_stop_us)
    wanted: list[tuple[str, str, datetime, datetime]] = []  # (signal, tag, start, end) as read_machine reads them
    if sig.state is not None:
        wanted.append(("state", sig.state.tag, start - pad - back, end + pad))
    for name in COUNTERS:
        ref = getattr(sig, name)
        if ref is not None:
            wanted.append((name, ref.tag, start - back, end))
    for name in ("energy_kwh", "power_kw"):
        ref = getattr(sig, name)
        if ref is not None:
            wanted.append((name, ref.tag, start, end))
    got = read_windows(conn, dev, [(t, s, e) for _, t, s, e in wanted])
    for (name, *_), (ts, values, _good) in zip(wanted, got, strict=True):
        if name == "state":
            inp.state = (ts, state_codes(values, [], sig.state.map or {}))  # type: ignore[union-attr]
            since = from_us(int(ts[0])) if ts.shape[0] and int(ts[0]) < to_us(start) else start
            inp.disconnects = read_disconnects(conn, dev, since, end)
        elif name in COUNTERS:
            inp.counters[name] = (ts, values)
        else:
            setattr(inp, name, (ts, values))
    if cfg is not None:
        inp.counter_rules = counter_rules(cfg, machine)
    return inp, [ts[g] for ts, _, g in got]


_REPORTING_SQL = """
WITH RECURSIVE tags(tag) AS (  -- the device's tags, one index probe each (a skip scan)
  (SELECT tag FROM samples WHERE device_id = %(dev)s ORDER BY tag LIMIT 1)
  UNION ALL
  SELECT (SELECT s.tag FROM samples s WHERE s.device_id = %(dev)s AND s.tag > tags.tag ORDER BY s.tag LIMIT 1)
  FROM tags WHERE tags.tag IS NOT NULL)
SELECT w.i FROM unnest(%(starts)s::timestamptz[], %(ends)s::timestamptz[]) WITH ORDINALITY AS w(s, e, i)
WHERE EXISTS (SELECT 1 FROM tags CROSS JOIN LATERAL (
                SELECT 1 FROM samples x WHERE x.device_id = %(dev)s AND x.tag = tags.tag AND x.ts >= w.s
                   AND x.ts < w.e AND x.quality = 'good' LIMIT 1) y
              WHERE tags.tag IS NOT NULL)"""


def reporting(conn: psycopg.Connection[Any], device: str, starts_us: np.ndarray, ends_us: np.ndarray) -> np.ndarray:
    """kpi.networking.reporting_matrix for one device, by index range scans per tag (a bucket without any
    sample costs a few index probes, not a scan of the device's history)."""
    out = np.zeros(starts_us.shape[0], dtype=bool)
    rows = conn.execute(_REPORTING_SQL, {"dev": device, "starts": [from_us(int(x)) for x in starts_us],
                                         "ends": [from_us(int(x)) for x in ends_us]}).fetchall()
    for (i,) in rows:
        out[int(i) - 1] = True
    return out


def networked(conn: psycopg.Connection[Any], device: str, b: BucketSet, good: list[np.ndarray]) -> np.ndarray:
    """1.0 per bucket with a good sample of the device (kpi.networking.reporting_matrix): from the samples read,
    asking the database only for buckets none of them fall in (another tag of the device may have reported)."""
    hit = np.zeros(len(b), dtype=bool)
    for ts in good:
        hit |= np.searchsorted(ts, b.starts, "left") < np.searchsorted(ts, b.ends, "left")
    miss = np.flatnonzero(~hit)
    if miss.shape[0]:
        hit[miss] = reporting(conn, device, b.starts[miss], b.ends[miss])
    return hit.astype(np.float64)
