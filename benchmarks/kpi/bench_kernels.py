"""KPI kernels vs pandas vs Polars on the same synthetic plant (hourly buckets, shift calendar 08-20).

Default: 10M state events + 10M counter samples over 1,000 machines and 30 days (--scale 0.1 for a quick run).
Checks that all three give the same state durations and counter increments, prints times and ratios, and the
kernels' bytes read / time against a NumPy sum over the same bytes (memory-bandwidth fraction).

    python benchmarks/kpi/bench_kernels.py [--scale 1.0] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from kpi import kernels as K
from kpi.kernels.counters import DEFAULT_RESET_RATIO as RESET_RATIO
from kpi.kernels.counters import DEFAULT_WRAP_FRACTION as WRAP

HOUR = 3_600_000_000
DAYS = 30
T0 = 1_704_067_200_000_000  # 2024-01-01T00:00Z
M32 = 2.0**32
ALL_TIME = (np.array([0], dtype=np.int64), np.array([2**62], dtype=np.int64))  # counters: no calendar clipping
RULE = (M32, WRAP, RESET_RATIO, 0.0)  # uint32 counters: modulus, wrap fraction, reset ratio, reset below


def generate(n_machines: int, per_machine: int, seed: int = 7) -> dict[str, np.ndarray]:
    """Sorted per machine, concatenated: ts, state codes (-1 rare), cumulative counters with wraps and resets."""
    rng = np.random.default_rng(seed)
    span = DAYS * 24 * HOUR
    n = n_machines * per_machine
    machine = np.repeat(np.arange(n_machines), per_machine)

    def times() -> np.ndarray:
        t = rng.integers(0, span, size=n, dtype=np.int64)
        t = t.reshape(n_machines, per_machine)
        t.sort(axis=1)
        return (T0 + t).ravel()

    state_ts = times()
    codes = rng.integers(0, 5, size=n, dtype=np.int64)
    codes[rng.random(n) < 0.01] = -1
    counter_ts = times()
    inc = rng.poisson(3.0, size=n).astype(np.float64).reshape(n_machines, per_machine)
    cum = np.cumsum(inc, axis=1)
    counter = cum + 2**32 - 1e5 * (1 + np.arange(n_machines) % 3)[:, None]
    counter = np.where(counter >= 2**32, counter - 2**32, counter).ravel()  # uint32 counters that wrap
    resets = rng.random(n) < 1e-4
    counter[resets] = 0.0  # PLC restarts
    return {"machine": machine, "state_ts": state_ts, "codes": codes, "counter_ts": counter_ts,
            "counter": counter}


def calendar_arrays() -> tuple[np.ndarray, np.ndarray]:
    days = np.arange(DAYS + 1, dtype=np.int64)
    return T0 + days * 24 * HOUR + 8 * HOUR, T0 + days * 24 * HOUR + 20 * HOUR


def run_kernels(d: dict[str, np.ndarray], n_machines: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """All machines in one kernel call each (flat arrays + per-machine offsets); with threads > 1, one call per
    thread over a contiguous machine range, writing into its slice of the shared output."""
    per = d["state_ts"].shape[0] // n_machines
    nb = DAYS * 24
    bs = T0 + np.arange(nb, dtype=np.int64) * HOUR
    be = bs + HOUR
    cs, ce = calendar_arrays()
    end = T0 + nb * HOUR
    offsets = np.arange(n_machines + 1, dtype=np.int64) * per
    if threads <= 1:
        dur = K.state_durations_many(d["state_ts"], d["codes"], offsets, end, bs, be, cs, ce, 0)[0]
        cnt = K.counter_bucket_sums_many(d["counter_ts"], d["counter"], offsets, bs, be, *ALL_TIME, *RULE)[:, 0]
        return dur, cnt
    dur = np.empty((n_machines, nb, 5))
    known = np.empty((n_machines, nb))
    rows = np.zeros((n_machines, nb), dtype=np.int64)
    cnt_all = np.zeros((n_machines, 7, nb))
    cuts = np.linspace(0, n_machines, threads + 1).astype(np.int64)

    def part(g: int) -> None:
        m0, m1 = int(cuts[g]), int(cuts[g + 1])
        K.state_durations_many_into(d["state_ts"], d["codes"], offsets[m0:m1 + 1], end, bs, be, cs, ce, 0,
                                    dur[m0:m1], known[m0:m1], rows[m0:m1])
        K.counter_bucket_sums_many_into(d["counter_ts"], d["counter"], offsets[m0:m1 + 1], bs, be, *ALL_TIME,
                                        *RULE, cnt_all[m0:m1])

    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(part, range(threads)))
    return dur, cnt_all[:, 0]


def run_kernels_per_machine(d: dict[str, np.ndarray], n_machines: int) -> tuple[np.ndarray, np.ndarray]:
    """The former way, for comparison: one state_durations + one counter_bucket_sums call per machine."""
    per = d["state_ts"].shape[0] // n_machines
    nb = DAYS * 24
    bs = T0 + np.arange(nb, dtype=np.int64) * HOUR
    be = bs + HOUR
    cs, ce = calendar_arrays()
    end = T0 + nb * HOUR
    dur = np.zeros((n_machines, nb, 5))
    cnt = np.zeros((n_machines, nb))
    for m in range(n_machines):
        sl = slice(m * per, (m + 1) * per)
        dur[m] = K.state_durations(d["state_ts"][sl], d["codes"][sl], end, bs, be, cs, ce, 0)[0]
        cnt[m] = K.counter_bucket_sums(d["counter_ts"][sl], d["counter"][sl], bs, be, *ALL_TIME, *RULE)[0]
    return dur, cnt


def _counter_delta_np(prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
    w32 = M32 - prev + cur
    return np.select([cur >= prev, (prev < M32) & (w32 <= M32 * WRAP), cur <= RESET_RATIO * prev],
                     [cur - prev, w32, cur], 0.0)


def _edges() -> np.ndarray:
    cs, ce = calendar_arrays()
    return np.unique(np.concatenate([T0 + np.arange(DAYS * 24 + 1, dtype=np.int64) * HOUR, cs, ce]))


def _in_calendar(ts: np.ndarray) -> np.ndarray:
    tod = (ts - T0) % (24 * HOUR)
    return (tod >= 8 * HOUR) & (tod < 20 * HOUR)


def run_pandas(d: dict[str, np.ndarray], n_machines: int) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    nb, end = DAYS * 24, T0 + DAYS * 24 * HOUR
    edges = _edges()
    ev = pd.DataFrame({"m": d["machine"], "ts": d["state_ts"], "code": d["codes"].astype("float64")})
    br = pd.DataFrame({"m": np.repeat(np.arange(n_machines), edges.size), "ts": np.tile(edges, n_machines),
                       "code": np.nan})
    df = pd.concat([br, ev], ignore_index=True).sort_values(["m", "ts"], kind="stable", ignore_index=True)
    df["code"] = df.groupby("m")["code"].ffill()
    df["dur"] = (df.groupby("m")["ts"].shift(-1).fillna(end) - df["ts"]).clip(lower=0)
    df = df[(df["code"] >= 0) & (df["ts"] < end) & _in_calendar(df["ts"].to_numpy())]
    df["h"] = (df["ts"] - T0) // HOUR
    g = df.groupby(["m", "h", "code"])["dur"].sum()
    dur = np.zeros((n_machines, nb, 5))
    idx = g.index
    dur[idx.get_level_values(0), idx.get_level_values(1), idx.get_level_values(2).astype(int)] = g.to_numpy() / 1e6
    c = pd.DataFrame({"m": d["machine"], "ts": d["counter_ts"], "v": d["counter"]})
    c["prev"] = c.groupby("m")["v"].shift(1)
    c = c.dropna(subset=["prev"])
    c["delta"] = _counter_delta_np(c["prev"].to_numpy(), c["v"].to_numpy())
    c["h"] = (c["ts"] - T0) // HOUR
    gc = c.groupby(["m", "h"])["delta"].sum()
    cnt = np.zeros((n_machines, nb))
    cnt[gc.index.get_level_values(0), gc.index.get_level_values(1)] = gc.to_numpy()
    return dur, cnt


def run_polars(d: dict[str, np.ndarray], n_machines: int) -> tuple[np.ndarray, np.ndarray]:
    import polars as pl

    nb, end = DAYS * 24, T0 + DAYS * 24 * HOUR
    edges = _edges()
    ev = pl.DataFrame({"m": d["machine"], "ts": d["state_ts"], "code": d["codes"].astype("float64"),
                       "o": np.ones(d["machine"].size, dtype=np.int8)})
    br = pl.DataFrame({"m": np.repeat(np.arange(n_machines), edges.size), "ts": np.tile(edges, n_machines),
                       "code": np.full(edges.size * n_machines, None, dtype=object).astype("float64"),
                       "o": np.zeros(edges.size * n_machines, dtype=np.int8)})
    day = 24 * HOUR
    g = (pl.concat([br.with_columns(pl.lit(None, dtype=pl.Float64).alias("code")), ev])
         .sort(["m", "ts", "o"])
         .with_columns(pl.col("code").forward_fill().over("m"),
                       (pl.col("ts").shift(-1).over("m").fill_null(end) - pl.col("ts")).clip(0).alias("dur"))
         .filter((pl.col("code") >= 0) & (pl.col("ts") < end)
                 & (((pl.col("ts") - T0) % day) >= 8 * HOUR) & (((pl.col("ts") - T0) % day) < 20 * HOUR))
         .with_columns(((pl.col("ts") - T0) // HOUR).alias("h"))
         .group_by(["m", "h", "code"]).agg(pl.col("dur").sum()))
    dur = np.zeros((n_machines, nb, 5))
    dur[g["m"].to_numpy(), g["h"].to_numpy(), g["code"].to_numpy().astype(int)] = g["dur"].to_numpy() / 1e6
    c = (pl.DataFrame({"m": d["machine"], "ts": d["counter_ts"], "v": d["counter"]})
         .with_columns(pl.col("v").shift(1).over("m").alias("prev")).drop_nulls("prev"))
    delta = _counter_delta_np(c["prev"].to_numpy(), c["v"].to_numpy())
    gc = (c.with_columns(pl.Series("delta", delta), ((pl.col("ts") - T0) // HOUR).alias("h"))
          .group_by(["m", "h"]).agg(pl.col("delta").sum()))
    cnt = np.zeros((n_machines, nb))
    cnt[gc["m"].to_numpy(), gc["h"].to_numpy()] = gc["delta"].to_numpy()
    return dur, cnt


def timed(fn, *args):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="1.0 = 10M state events + 10M counter samples")
    ap.add_argument("--machines", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-pandas", action="store_true")
    a = ap.parse_args()
    per = max(1, int(10_000 * a.scale))
    d, t_gen = timed(generate, a.machines, per)
    n = a.machines * per
    print(f"data: {n:,} state events + {n:,} counter samples, {a.machines} machines, {DAYS * 24} hourly buckets "
          f"(generated in {t_gen:.1f} s)")
    small = {k: v[: 2 * per] for k, v in d.items()}
    for threads in (1, 2):
        timed(run_kernels, small, 2, threads)  # compile / load the cache
    timed(run_kernels_per_machine, small, 2)
    (kd, kc), t_k1 = min((timed(run_kernels, d, a.machines, 1) for _ in range(3)), key=lambda r: r[1])
    t_kn = min(timed(run_kernels, d, a.machines, a.threads)[1] for _ in range(3))
    (pd_, pc_), t_pm = min((timed(run_kernels_per_machine, d, a.machines) for _ in range(3)), key=lambda r: r[1])
    if not (np.array_equal(pd_, kd) and np.array_equal(pc_, kc)):
        raise SystemExit("one kernel call over all machines differs from one call per machine")
    print(f"numba kernels (all machines in one call, best of 3): {t_k1:.3f} s on 1 thread, {t_kn:.3f} s on "
          f"{a.threads} threads; one call per machine: {t_pm:.3f} s (identical results)")
    results = {}
    if not a.skip_pandas:
        (pd_d, pd_c), t_pd = timed(run_pandas, d, a.machines)
        results["pandas"] = (pd_d, pd_c, t_pd)
    (pl_d, pl_c), t_pl = timed(run_polars, d, a.machines)
    results["polars"] = (pl_d, pl_c, t_pl)
    for name, (rd, rc, t) in results.items():
        same = np.allclose(rd, kd, atol=1e-6) and np.allclose(rc, kc)
        print(f"{name}: {t:.2f} s, same results: {same}, kernels faster by x{t / t_k1:.1f} (1 thread), "
              f"x{t / t_kn:.1f} ({a.threads} threads)")
        if not same:
            raise SystemExit(f"{name} disagrees with the kernels")
    nbytes = sum(d[k].nbytes for k in ("state_ts", "codes", "counter_ts", "counter"))
    arrays = [d["state_ts"], d["codes"], d["counter_ts"], d["counter"]]
    best = min(timed(lambda: [x.sum() for x in arrays])[1] for _ in range(3))
    print(f"bytes read: {nbytes / 1e6:.0f} MB; kernels {nbytes / t_k1 / 1e9:.2f} GB/s (1 thread), NumPy sum "
          f"{nbytes / best / 1e9:.2f} GB/s -> {100 * best / t_k1:.0f}% of memory bandwidth (1 thread), "
          f"{100 * best / t_kn:.0f}% ({a.threads} threads)")


if __name__ == "__main__":
    main()
