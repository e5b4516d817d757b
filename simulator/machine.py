"""A simulated production machine: states with realistic durations, cycle counts, scrap, an energy meter.

Everything follows from the seed and the start time, so the exact ground truth (state intervals and the
instant of every count) is known and can be written to a file. No I/O here: protocol servers read
`values()` after `advance_to(now)`.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import IO, Any

# State codes on the wire, as in the example plant file's `map`.
STATE_CODES = {"running": 1, "idle": 2, "down": 3, "setup": 4, "planned_stop": 5}
# Mean durations in seconds (exponential), and power draw per state in kW.
MEAN_DURATION_S = {"running": 240.0, "idle": 40.0, "down": 60.0, "setup": 90.0, "planned_stop": 120.0}
POWER_KW = {"running": 11.0, "idle": 2.5, "down": 0.8, "setup": 3.0, "planned_stop": 0.5}
# Next-state weights after each state.
TRANSITIONS = {
    "running": {"idle": 0.55, "down": 0.25, "setup": 0.12, "planned_stop": 0.08},
    "idle": {"running": 0.9, "setup": 0.1},
    "down": {"running": 0.7, "idle": 0.3},
    "setup": {"running": 1.0},
    "planned_stop": {"running": 0.8, "setup": 0.2},
}


@dataclass
class MachineSpec:
    id: str
    seed: int
    ideal_cycle_time_s: float = 2.0
    scrap_rate: float = 0.03
    speed: float = 1.0  # time scale: 10 plays ten simulated seconds per wall second
    counter_bits: int = 32  # parts_total rolls over at 2**counter_bits
    duration_scale: float = 1.0  # multiply state durations (tests use short states)


@dataclass
class Machine:
    spec: MachineSpec
    start_us: int
    state: str = "running"
    parts_total: int = 0  # unwrapped count; the wire value is modulo 2**counter_bits
    parts_scrap: int = 0
    energy_kwh: float = 0.0
    t_us: int = 0
    intervals: list[tuple[int, int, str]] = field(default_factory=list)
    counts: list[tuple[int, int, int]] = field(default_factory=list)  # (ts_us, total, scrap) at each change
    _rng: random.Random = field(init=False)
    _state_start_us: int = 0
    _state_end_us: int = 0
    _next_cycle_us: int = 0

    def __post_init__(self) -> None:
        self.reset(self.start_us)

    def reset(self, start_us: int) -> None:
        """Start the machine's story at start_us (same seed, same story): used once the servers are up."""
        self.start_us = start_us
        self.state = "running"
        self.parts_total = self.parts_scrap = 0
        self.energy_kwh = 0.0
        self.intervals, self.counts = [], []
        self._rng = random.Random(self.spec.seed)
        self.t_us = self.start_us
        self._state_start_us = self.start_us
        self._state_end_us = self.start_us + self._duration_us(self.state)
        self._next_cycle_us = self.start_us + self._cycle_us()

    # ------------------------------------------------------------------ model
    def _wall_us(self, sim_s: float) -> int:
        return max(1, int(sim_s * 1e6 / self.spec.speed))

    def _duration_us(self, state: str) -> int:
        mean = MEAN_DURATION_S[state] * self.spec.duration_scale
        return self._wall_us(max(mean * 0.1, self._rng.expovariate(1.0 / mean)))

    def _cycle_us(self) -> int:
        return self._wall_us(self.spec.ideal_cycle_time_s * (1.0 + abs(self._rng.gauss(0.0, 0.08))))

    def advance_to(self, t_us: int) -> None:
        """Play every event up to wall time t_us, in order, so results do not depend on the call rate."""
        while True:
            nxt = min(self._state_end_us, self._next_cycle_us if self.state == "running" else 1 << 62)
            if nxt > t_us:
                break
            self._integrate(nxt)
            if self.state == "running" and self._next_cycle_us <= self._state_end_us and nxt == self._next_cycle_us:
                self.parts_total += 1
                if self._rng.random() < self.spec.scrap_rate:
                    self.parts_scrap += 1
                self.counts.append((nxt, self.parts_total, self.parts_scrap))
                self._next_cycle_us = nxt + self._cycle_us()
            else:
                self.intervals.append((self._state_start_us, nxt, self.state))
                weights = TRANSITIONS[self.state]
                self.state = self._rng.choices(list(weights), list(weights.values()))[0]
                self._state_start_us = nxt
                self._state_end_us = nxt + self._duration_us(self.state)
                if self.state == "running":
                    self._next_cycle_us = nxt + self._cycle_us()
        self._integrate(t_us)

    def _integrate(self, t_us: int) -> None:
        if t_us > self.t_us:
            sim_h = (t_us - self.t_us) / 1e6 * self.spec.speed / 3600.0
            self.energy_kwh += POWER_KW[self.state] * sim_h
            self.t_us = t_us

    # ------------------------------------------------------------------ what the PLC shows
    def values(self) -> dict[str, Any]:
        """Tag values a PLC of this machine shows now (counters already wrapped)."""
        mod = 1 << self.spec.counter_bits
        return {
            "status": STATE_CODES[self.state],
            "parts_total": self.parts_total % mod,
            "parts_scrap": self.parts_scrap % mod,
            "energy_total": self.energy_kwh,
            "power_kw": POWER_KW[self.state],
        }

    # ------------------------------------------------------------------ ground truth
    def ground_truth(self, until_us: int | None = None) -> dict[str, Any]:
        """Exact state intervals (the current one closed at until_us) and count changes."""
        end = self.t_us if until_us is None else until_us
        intervals = list(self.intervals)
        if end > self._state_start_us:
            intervals.append((self._state_start_us, end, self.state))
        return {"machine": self.spec.id, "seed": self.spec.seed, "start_us": self.start_us, "end_us": end,
                "ideal_cycle_time_s": self.spec.ideal_cycle_time_s, "counter_bits": self.spec.counter_bits,
                "intervals": [list(i) for i in intervals], "counts": [list(c) for c in self.counts],
                "parts_total": self.parts_total, "parts_scrap": self.parts_scrap, "energy_kwh": self.energy_kwh}


def write_ground_truth(machines: list[Machine], fp: IO[str], until_us: int | None = None) -> None:
    """One JSON document per line, one line per machine."""
    for m in machines:
        fp.write(json.dumps(m.ground_truth(until_us)) + "\n")
