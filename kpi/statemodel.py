"""The machine-state model's knobs, per machine, from the plant file (read here, never changed).

- micro_stop_s: the machine's `micro_stop_s`, else `kpi.micro_stop_s`. 0 (the default) keeps ISO 22400-2's
  reading: every stop is ADET (down) or ADOT (idle), so minor stops lower availability. > 0 applies the classic
  six-big-losses reading: an idle/down stop between two running samples that lasts less than the threshold is
  a micro-stop, counted inside APT (so it lowers effectiveness, not availability) and reported as the elements
  micro_stop_time_s / micro_stop_count; it is not a failure event.
- state_max_hold_s: how long a state sample stays in force without a newer one. A polled tag (as its device
  model declares: PlantConfig.signal(...).polled) is re-read every poll, so a sample older than STALE_POLLS polls (at least STALE_MIN_S) means the data stopped: the time after
  it is unknown (no_data_time_s). Tags reported by exception (OPC UA subscriptions, MQTT, Sparkplug) may
  legitimately hold a state for hours: no limit there; their outages come from `device_status`.
- reduced_speed_ratio: `kpi.reduced_speed_ratio` (plant-wide). 0 (the default) turns the reduced-speed loss off.
  > 0: running time (not micro-stops) in a fixed REDUCED_SPEED_WINDOW_S window that produced fewer than
  ratio x (running seconds / ideal_cycle_time_s) parts is reduced-speed time (kpi/kernels/speed.py); it stays in
  APT (a performance loss) and is reported as reduced_speed_time_s / reduced_speed_count.
- device_status: from a `disconnected` event the state is unknown until the next state sample (which follows
  the next `connected`), however long the last sample would otherwise hold.
"""

from __future__ import annotations

import numpy as np

from core.plant import Asset, PlantConfig

STALE_POLLS = 10
STALE_MIN_S = 30.0
REDUCED_SPEED_WINDOW_S = 60  # epoch-aligned windows (UTC minutes; local minutes in every whole-minute zone)


def micro_stop_s(cfg: PlantConfig, machine: Asset) -> float:
    return float(machine.micro_stop_s if machine.micro_stop_s is not None else cfg.kpi.micro_stop_s)


def reduced_speed_ratio(cfg: PlantConfig, machine: Asset) -> float:
    """Share of the ideal rate below which a window's running time is reduced speed (0: off)."""
    return float(cfg.kpi.reduced_speed_ratio)


def state_max_hold_s(cfg: PlantConfig, machine: Asset) -> float:
    """Seconds a state sample holds at most (0 = until the next sample or disconnect)."""
    sig = cfg.signal(machine.id, "state")
    if sig is None or not sig.polled:
        return 0.0
    return max(STALE_POLLS * sig.poll_interval_s, STALE_MIN_S)


def with_disconnects(ts: np.ndarray, codes: np.ndarray, disconnects: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Insert an unknown (-1) state at each disconnect instant; a sample at the same instant comes first."""
    if disconnects.shape[0] == 0:
        return ts, codes
    all_ts = np.concatenate([ts, disconnects])
    all_codes = np.concatenate([codes, np.full(disconnects.shape[0], -1, dtype=np.int64)])
    order = np.argsort(all_ts, kind="stable")
    return all_ts[order], all_codes[order]
