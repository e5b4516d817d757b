"""The KPI core's inputs from files: raw sample and connectivity rows (an export) instead of the database.

One input interface (`MachineSource`), two readers: `DbSource` (kpi.sources over a connection) and `RowsSource`
(rows held in memory, e.g. read from a `shopfloor export`). `machine_rows` and `recompute` run the same bucket,
kernel and row code as kpi.job, so a KPI recomputed from an export equals the stored one exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from core.plant import Asset, PlantConfig
from core.times import from_us, to_us
from kpi.buckets import BucketSet, calendar, window_start
from kpi.compute import COUNTERS, MachineInputs, machine_elements
from kpi.job import _buckets_starting_in, _day_chunks
from kpi.rollups import groups
from kpi.rows import bucket_rows, provenance
from kpi.sources import state_codes
from kpi.statemodel import REDUCED_SPEED_WINDOW_S, micro_stop_s, reduced_speed_ratio, state_max_hold_s


class MachineSource(Protocol):
    """Where a machine's signals come from."""

    def read_machine(self, machine: Asset, start: datetime, end: datetime, cfg: PlantConfig) -> MachineInputs: ...

    def read_networked(self, device: str, b: BucketSet) -> np.ndarray: ...


class DbSource:
    """kpi.sources over a psycopg connection."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def read_machine(self, machine: Asset, start: datetime, end: datetime, cfg: PlantConfig) -> MachineInputs:
        from kpi.sources import read_machine

        return read_machine(self.conn, machine, start, end, cfg)

    def read_networked(self, device: str, b: BucketSet) -> np.ndarray:
        from kpi.sources import read_networked

        return read_networked(self.conn, device, b)


@dataclass
class _Tag:
    ts: np.ndarray  # int64 us, sorted
    value: np.ndarray  # float64, NaN for NULL
    text: list[str | None]
    bad: np.ndarray  # bool: quality == bad


@dataclass
class RowsSource:
    """Samples and device_status rows in memory, answering the same questions as kpi.sources."""

    tags: dict[tuple[str, str], _Tag] = field(default_factory=dict)
    good_ts: dict[str, np.ndarray] = field(default_factory=dict)  # device -> sorted us of good samples
    disconnects: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, samples: Iterable[tuple[datetime, str, str, float | None, str | None, str]],
                  status: Iterable[tuple[datetime, str, str]]) -> RowsSource:
        """samples: (ts, device_id, tag, value, value_text, quality); status: (ts, device_id, state)."""
        by: dict[tuple[str, str], list[tuple[int, float, str | None, bool]]] = defaultdict(list)
        good: dict[str, list[int]] = defaultdict(list)
        for ts, dev, tag, value, text, quality in samples:
            us = to_us(ts)
            by[(dev, tag)].append((us, np.nan if value is None else float(value), text, quality == "bad"))
            if quality == "good":
                good[dev].append(us)
        src = cls()
        for key, rows in by.items():
            rows.sort(key=lambda r: r[0])
            src.tags[key] = _Tag(np.array([r[0] for r in rows], dtype=np.int64),
                                 np.array([r[1] for r in rows], dtype=np.float64), [r[2] for r in rows],
                                 np.array([r[3] for r in rows], dtype=bool))
        src.good_ts = {d: np.array(sorted(v), dtype=np.int64) for d, v in good.items()}
        downs: dict[str, list[int]] = defaultdict(list)
        for ts, dev, state in status:
            if state == "disconnected":
                downs[dev].append(to_us(ts))
        src.disconnects = {d: np.array(sorted(v), dtype=np.int64) for d, v in downs.items()}
        return src

    def _window(self, dev: str, tag: str, start: datetime, end: datetime) -> tuple[_Tag, np.ndarray]:
        """Indexes of the last sample before start, then the samples in [start, end) (as the SQL reads them)."""
        t = self.tags.get((dev, tag))
        if t is None:
            return _Tag(np.zeros(0, np.int64), np.zeros(0), [], np.zeros(0, bool)), np.zeros(0, np.int64)
        lo, hi = np.searchsorted(t.ts, [to_us(start), to_us(end)], side="left")
        first = [lo - 1] if lo > 0 else []
        return t, np.array([*first, *range(lo, hi)], dtype=np.int64)

    def numbers(self, dev: str, tag: str, start: datetime, end: datetime) -> tuple[np.ndarray, np.ndarray]:
        """Like kpi.sources.read_numbers: bad quality or NULL as NaN."""
        t, idx = self._window(dev, tag, start, end)
        values = np.where(t.bad[idx], np.nan, t.value[idx]) if idx.shape[0] else np.zeros(0)
        return t.ts[idx], values.astype(np.float64)

    def series(self, dev: str, tag: str, start: datetime,
               end: datetime) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
        ts, values = self.numbers(dev, tag, start, end)
        t, idx = self._window(dev, tag, start, end)
        return ts, values, [t.text[int(i)] for i in idx]

    def read_machine(self, machine: Asset, start: datetime, end: datetime, cfg: PlantConfig) -> MachineInputs:
        """Mirror of kpi.sources.read_machine over the rows held here."""
        from datetime import timedelta

        from kpi.sources import _numeric, counter_rules

        inp = MachineInputs(ideal_cycle_time_s=machine.ideal_cycle_time_s, production=machine.production,
                            has_device=machine.device is not None)
        sig, dev = machine.signals, machine.device
        if sig is None or dev is None:
            return inp
        inp.micro_stop_us = int(micro_stop_s(cfg, machine) * 1e6)
        inp.max_hold_us = int(state_max_hold_s(cfg, machine) * 1e6)
        inp.reduced_speed_ratio = reduced_speed_ratio(cfg, machine)
        back = timedelta(seconds=REDUCED_SPEED_WINDOW_S if inp.reduced_speed_ratio > 0 else 0)
        if sig.state is not None:
            pad = timedelta(microseconds=inp.micro_stop_us)
            if all(_numeric(k) for k in (sig.state.map or {})):
                ts, values = self.numbers(dev, sig.state.tag, start - pad - back, end + pad)
                texts: list[str | None] = []
            else:
                ts, values, texts = self.series(dev, sig.state.tag, start - pad - back, end + pad)
            inp.state = (ts, state_codes(values, texts, sig.state.map or {}))
            since = from_us(int(ts[0])) if ts.shape[0] and int(ts[0]) < to_us(start) else start
            d = self.disconnects.get(dev, np.zeros(0, np.int64))
            inp.disconnects = d[(d >= to_us(since)) & (d < to_us(end))]
        for name in COUNTERS:
            ref = getattr(sig, name)
            if ref is not None:
                inp.counters[name] = self.numbers(dev, ref.tag, start - back, end)
        inp.counter_rules = counter_rules(cfg, machine)
        for name in ("energy_kwh", "power_kw"):
            ref = getattr(sig, name)
            if ref is not None:
                setattr(inp, name, self.numbers(dev, ref.tag, start, end))
        return inp

    def read_networked(self, device: str, b: BucketSet) -> np.ndarray:
        """1.0 per bucket with >= 1 good-quality sample of the device (kpi.networking.reporting_matrix)."""
        g = self.good_ts.get(device, np.zeros(0, np.int64))
        lo = np.searchsorted(g, b.starts, side="left")
        hi = np.searchsorted(g, b.ends, side="left")
        return (hi > lo).astype(np.float64)


def machine_rows(src: MachineSource, cfg: PlantConfig, machine: Asset, start: datetime, end: datetime,
                 until: datetime) -> list[tuple[Any, ...]]:
    """kpi_values rows (kpi.store.COLUMNS order) of `machine` for buckets starting in [start, end), as kpi.job
    computes them (same bucket sets, data window, kernels and formulas)."""
    sets, data_end = _buckets_starting_in(cfg, start, end)
    data_end = min(data_end, until)
    if not sets or data_end <= start:
        return []
    cal = calendar(cfg, start, data_end)
    until_us, prov = to_us(until), provenance(cfg, machine)
    inp = src.read_machine(machine, start, data_end, cfg)
    rows: list[tuple[Any, ...]] = []
    for b in sets:
        if machine.device is not None:
            inp.networked = src.read_networked(machine.device, b)
        es = machine_elements(inp, b, to_us(data_end), cal)
        rows += bucket_rows(cfg, machine.id, True, b, es.values, es.why, es.input_rows, es.coverage, until_us, prov,
                            es.events, es.why_at)
    return rows


def recompute(src: MachineSource, cfg: PlantConfig, machine_ids: Iterable[str], start: datetime, end: datetime,
              until: datetime) -> list[tuple[Any, ...]]:
    """Machine rows for buckets starting in [window_start(start), end), chunked per local day like a backfill."""
    s = window_start(cfg, start)
    wanted = set(machine_ids)
    rows: list[tuple[Any, ...]] = []
    for m in cfg.machines():
        if m.id in wanted:
            for cs, ce in _day_chunks(cfg, s, max(end, s)):
                rows += machine_rows(src, cfg, m, cs, ce, until)
    return rows


def rollup_rows(cfg: PlantConfig, machine_rows_: list[tuple[Any, ...]], group: str,
                until: datetime) -> list[tuple[Any, ...]]:
    """Roll-up rows of `group` from its machines' element rows: sums in kpi.rollups' order, then the formulas."""
    from kpi.catalog import ELEMENTS

    members = groups(cfg)[group]
    # keyed like kpi.rollups: bucket kind, start and shift (two shifts may start at the same instant)
    cells: dict[tuple[str, datetime, str], dict[str, dict[str, Any]]] = defaultdict(lambda: defaultdict(dict))
    meta: dict[tuple[str, datetime, str], tuple[datetime, str | None]] = {}
    for bs, bucket, asset, kpi, value, _reason, _u, shift, _d, _c, nrows, cov, be, *_ in machine_rows_:
        if asset in members and kpi in ELEMENTS:
            cell = cells[(bucket, bs, shift or "")][asset]
            cell[kpi] = np.nan if value is None else value
            cell["_coverage"], cell["_rows"] = (np.nan if cov is None else cov), nrows or 0
            meta[(bucket, bs, shift or "")] = (be, shift)
    out: list[tuple[Any, ...]] = []
    for (bucket, bs, sk), per in sorted(cells.items(), key=lambda kv: kv[0]):
        sums: dict[str, float] = {}
        for col in (*ELEMENTS, "_coverage", "_rows"):
            total, n = 0.0, 0
            for m in members:
                v = per.get(m, {}).get(col, np.nan)
                if not np.isnan(v):
                    total, n = total + v, n + 1
            sums[col] = total if n else np.nan
            if col == "_coverage":
                sums[col] = total / n if n else np.nan
        be, shift = meta[(bucket, bs, sk)]
        b = BucketSet(bucket, np.array([to_us(bs)]), np.array([to_us(be)]), shift)
        el = {c: np.array([sums[c]]) for c in ELEMENTS}
        why = dict.fromkeys(ELEMENTS, "no machine in scope has this input")
        rows = sums["_rows"] if not np.isnan(sums["_rows"]) else 0.0
        out += bucket_rows(cfg, group, False, b, el, why, np.array([rows]), np.array([sums["_coverage"]]),
                           to_us(until), provenance(cfg))
    return out
