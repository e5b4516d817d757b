"""Roll-ups (line, area, site, plant): sum the machines' stored element rows, then the same formulas.

Reading the machines' rows back from kpi_values (rather than in-memory sums) lets several workers compute
machines side by side; every ratio of a roll-up is a ratio of sums over its machines.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import numpy as np
import psycopg

from core.plant import PlantConfig
from kpi import kernels as K
from kpi.buckets import BucketSet, to_us
from kpi.catalog import ELEMENTS
from kpi.rows import bucket_rows, provenance
from kpi.store import try_lock, unlock, write_rows

COLS = (*ELEMENTS, "_coverage", "_rows")


def groups(cfg: PlantConfig) -> dict[str, list[str]]:
    """Every non-machine asset and the plant -> the ids of the machines below it."""
    out: dict[str, list[str]] = defaultdict(list)
    for asset, ancestors in cfg.iter_assets():
        if asset.kind == "machine":
            for g in {*ancestors, cfg.plant.id}:
                out[g].append(asset.id)
    for asset, _ in cfg.iter_assets():
        if asset.kind != "machine":
            out.setdefault(asset.id, [])
    out.setdefault(cfg.plant.id, [])
    return dict(out)


def _read(conn: psycopg.Connection[Any], machines: list[str], start: datetime,
          end: datetime) -> list[tuple[Any, ...]]:
    return conn.execute(
        """SELECT asset_id, bucket, bucket_start, bucket_end, shift_name, kpi, value, null_reason, coverage,
                  input_rows, quality_flags FROM kpi_values
           WHERE asset_id = ANY(%s) AND kpi = ANY(%s) AND bucket_start >= %s AND bucket_start < %s""",
        (machines, list(ELEMENTS), start, end)).fetchall()


def rollup(conn: psycopg.Connection[Any], cfg: PlantConfig, start: datetime, end: datetime,
           until: datetime) -> tuple[int, int, list[str]]:
    """Recompute roll-up rows for buckets starting in [start, end); returns (rows, revisions, skipped groups)."""
    grp = groups(cfg)
    machines = sorted({m for ms in grp.values() for m in ms})
    m_index = {m: i for i, m in enumerate(machines)}
    keys: dict[tuple[str, datetime, str | None], int] = {}
    meta: list[tuple[str, int, int, str | None]] = []
    cells: dict[tuple[int, int], dict[str, float]] = defaultdict(dict)
    reasons: dict[str, str] = {}
    flagged: dict[tuple[int, str], set[str]] = defaultdict(set)  # (bucket, flag) -> machines
    for asset, bucket, bs, be, shift, kpi, value, reason, cov, nrows, flags in _read(conn, machines, start, end):
        k = keys.setdefault((bucket, bs, shift), len(keys))  # two shifts may start at the same instant
        if k == len(meta):
            meta.append((bucket, to_us(bs), to_us(be), shift))
        cell = cells[(k, m_index[asset])]
        cell[kpi] = np.nan if value is None else value
        cell["_coverage"] = np.nan if cov is None else cov
        cell["_rows"] = nrows or 0
        if reason:
            reasons.setdefault(kpi, reason)
        for f in flags or ():
            flagged[(k, f)].add(asset)
    nk, nm, names = len(meta), len(machines), list(grp)
    values = np.full((nk * nm, len(COLS)), np.nan)
    for (k, m), cell in cells.items():
        values[k * nm + m] = [cell.get(c, np.nan) for c in COLS]
    pm = [k * nm + m_index[m] for k in range(nk) for gi, g in enumerate(names) for m in grp[g]]
    pg = [k * len(names) + gi for k in range(nk) for gi, g in enumerate(names) for _ in grp[g]]
    sums, counts = K.group_sums(values, np.array(pm, dtype=np.int64), np.array(pg, dtype=np.int64),
                                nk * len(names))
    written = revisions = 0
    skipped: list[str] = []
    until_us, prov = to_us(until), provenance(cfg)
    members = {g: set(ms) for g, ms in grp.items()}
    for gi, g in enumerate(names):
        if not try_lock(conn, g):
            skipped.append(g)
            continue
        try:
            rows: list[tuple[Any, ...]] = []
            for k, (bucket, bs_us, be_us, shift) in enumerate(meta):
                r = k * len(names) + gi
                el = {c: np.array([sums[r, ci] if counts[r, ci] else np.nan]) for ci, c in enumerate(ELEMENTS)}
                why = {c: reasons.get(c, "no machine in scope has this input") for c in ELEMENTS}
                cov_i = COLS.index("_coverage")
                cov = sums[r, cov_i] / counts[r, cov_i] if counts[r, cov_i] else np.nan
                b = BucketSet(bucket, np.array([bs_us]), np.array([be_us]), shift)
                inherited = {f: "in machine(s) " + ", ".join(sorted(ms & members[g]))
                             for (kk, f), ms in flagged.items() if kk == k and ms & members[g]}
                rows += bucket_rows(cfg, g, False, b, el, why, np.array([sums[r, COLS.index("_rows")]]),
                                    np.array([cov]), until_us, prov, inherited_flags=[inherited])
            w, rv = write_rows(conn, rows)
            written, revisions = written + w, revisions + rv
        finally:
            unlock(conn, g)
    return written, revisions, skipped
