"""The plant model: plant, shifts, the ISA-95 asset tree with each machine's signals, devices, process sections.

The shape is the public contract in DESIGN.md ("Plant config"); keys may be added, never renamed. Devices are
validated by their driver's own model (core/registry.py); later stages read what they need of a machine's
signals from `PlantConfig.signal()`, resolved when the file loads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, PrivateAttr, field_validator, model_validator

from core.devices import SAFE_ID, DeviceBase, Model, gateway_id_value, topic_safe_id
from core.registry import device_models

STATES = ("running", "idle", "down", "setup", "planned_stop")
State = Literal["running", "idle", "down", "setup", "planned_stop"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALL_DAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SIGNALS = ("state", "total_count", "good_count", "scrap_count", "rework_count", "energy_kwh", "power_kw")


class Plant(Model):
    id: str = Field(min_length=1)
    name: str = ""
    timezone: str = "UTC"
    emission_factor_kg_per_kwh: float | None = Field(default=None, ge=0)
    emission_factor_version: str | None = None
    retention_days: int | None = Field(default=None, ge=1)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {v!r} (e.g. Asia/Shanghai, Europe/Berlin, UTC)") from exc
        return v


_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class Shift(Model):
    name: str = Field(min_length=1)
    start: str
    end: str
    days: list[Weekday] = Field(default_factory=lambda: list(ALL_DAYS))

    @field_validator("start", "end", mode="before")
    @classmethod
    def _hhmm(cls, v: Any) -> str:
        if isinstance(v, int):  # YAML 1.1 reads unquoted 08:00 as a sexagesimal int
            v = f"{v // 60:02d}:{v % 60:02d}"
        if not isinstance(v, str) or not _HHMM.match(v):
            raise ValueError(f"time must be HH:MM (24 h), got {v!r}")
        return v

    @property
    def start_min(self) -> int:
        h, m = self.start.split(":")
        return int(h) * 60 + int(m)

    @property
    def end_min(self) -> int:
        h, m = self.end.split(":")
        return int(h) * 60 + int(m)


class SignalRef(Model):
    tag: str = Field(min_length=1)
    map: dict[int | str, State] | None = None
    # counters only (kpi/README.md "Counters"): the value at which the counter wraps to 0 (overrides the width
    # the tag type declares), and when a drop is a reset: new value <= reset_ratio x previous, or < reset_below
    rollover: float | None = Field(default=None, gt=0)
    reset_ratio: float | None = Field(default=None, ge=0, lt=1)
    reset_below: float | None = Field(default=None, ge=0)


class Signals(Model):
    state: SignalRef | None = None
    total_count: SignalRef | None = None
    good_count: SignalRef | None = None
    scrap_count: SignalRef | None = None
    rework_count: SignalRef | None = None
    energy_kwh: SignalRef | None = None
    power_kw: SignalRef | None = None

    @model_validator(mode="after")
    def _counter_keys(self) -> Signals:
        st = self.state
        if st is not None and (st.rollover, st.reset_ratio, st.reset_below) != (None, None, None):
            raise ValueError("state: rollover / reset_ratio / reset_below apply to counters, not to the state")
        return self


class Asset(Model):
    id: str = Field(min_length=1)
    kind: Literal["site", "area", "line", "cell", "machine"]
    name: str = ""
    children: list[Asset] = Field(default_factory=list)
    ideal_cycle_time_s: float | None = Field(default=None, gt=0)
    device: str | None = None
    signals: Signals | None = None
    production: bool = True  # counts in the equipment register for the networking rate
    micro_stop_s: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _machine_rules(self) -> Asset:
        if self.kind == "machine" and self.children:
            raise ValueError("a machine has no children")
        if self.kind != "machine" and (self.device or self.signals):
            raise ValueError(f"only machines take 'device' and 'signals' (this asset is a {self.kind})")
        return self


class Reason(Model):
    """A node of the downtime reason tree operators choose from (`downtime_reasons` in the plant file)."""

    code: str = Field(min_length=1, max_length=64)
    name: str = ""
    name_zh: str = ""
    children: list[Reason] = Field(default_factory=list)


def topic_prefix(v: str) -> str:
    """A topic prefix of one or more topic-safe levels separated by '/'."""
    levels = v.split("/")
    if len(v) > 200 or not all(SAFE_ID.match(level) for level in levels):
        raise ValueError(f"uplink_topic_prefix {v[:80]!r} is not a plain topic: use levels of letters, digits, "
                         "'.', '_' or '-' separated by '/' (no '+', '#', '$', empty levels), e.g. shopfloor/v1")
    return v


class EdgeSettings(Model):
    gateway_id: str | None = None
    buffer_path: str = "shopfloor-buffer.sqlite"
    buffer_max_mb: float = Field(default=512, gt=0)
    batch_max_samples: int = Field(default=5000, ge=1, le=100000)
    # encoded bytes of one uplink batch: well under the broker's message limit (and the collector's)
    batch_max_bytes: int = Field(default=1024 * 1024, ge=128 * 1024, le=256 * 1024 * 1024)
    batch_max_delay_s: float = Field(default=0.2, gt=0, le=60)
    # samples waiting in memory while the disk refuses writes; past it the oldest are dropped and reported
    memory_queue_max_mb: float = Field(default=16, gt=0, le=4096)
    uplink_topic_prefix: str = "shopfloor/v1"

    @field_validator("gateway_id")
    @classmethod
    def _gateway_id(cls, v: str | None) -> str | None:
        return None if v is None else topic_safe_id(v, "gateway_id")

    @field_validator("uplink_topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return topic_prefix(v)


class Gateway(Model):
    """One edge gateway of the plant and the devices it reads (`shopfloor edge --gateway-id ID` runs them)."""

    id: str
    devices: list[str] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return gateway_id_value(v) or v


class CollectorSettings(Model):
    batch_max_rows: int = Field(default=20000, ge=1)
    ledger_grace_s: float = Field(default=300, ge=0)
    share_group: str = "shopfloor-collectors"

    @field_validator("share_group")
    @classmethod
    def _share_group(cls, v: str) -> str:
        return topic_safe_id(v, "share_group")


class KpiSettings(Model):
    micro_stop_s: float = Field(default=0, ge=0)
    reduced_speed_ratio: float = Field(default=0.0, ge=0, le=1)
    calendar: Literal["shifts", "always"] = "shifts"


@dataclass(frozen=True)
class ResolvedSignal:
    """One machine signal as the KPI stage needs it: where it comes from and how its samples behave."""

    machine_id: str
    name: str  # state, total_count, ...
    device_id: str
    tag: str
    polled: bool  # re-read every poll_interval_s (a stale sample means the data stopped)
    poll_interval_s: float
    counter_modulus: float | None  # wrap value: the signal's `rollover`, else from the tag type; None: undeclared
    reset_ratio: float | None = None  # the signal's reset_ratio / reset_below keys (None: the KPI default)
    reset_below: float | None = None


def _device_union() -> Any:
    models = tuple(device_models().values())
    if len(models) == 1:
        return models[0]
    return Annotated[Union[models], Field(discriminator="protocol")]  # noqa: UP007 - built at run time


if TYPE_CHECKING:
    Device = DeviceBase
else:
    Device = _device_union()


class PlantConfig(Model):
    plant: Plant
    shifts: list[Shift] = Field(default_factory=list)
    assets: list[Asset] = Field(default_factory=list)
    devices: list[Device] = Field(default_factory=list)
    gateways: list[Gateway] = Field(default_factory=list)
    edge: EdgeSettings = Field(default_factory=EdgeSettings)
    collector: CollectorSettings = Field(default_factory=CollectorSettings)
    kpi: KpiSettings = Field(default_factory=KpiSettings)
    downtime_reasons: list[Reason] = Field(default_factory=list)  # empty: the dashboard's built-in tree

    _signals: dict[tuple[str, str], ResolvedSignal] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        by_id = {d.id: d for d in self.devices}
        for m in self.machines():
            dev = by_id.get(m.device or "")
            if dev is None or m.signals is None:
                continue
            for name in SIGNALS:
                ref: SignalRef | None = getattr(m.signals, name)
                if ref is None or ref.tag not in {t.name for t in dev.tags}:
                    continue
                self._signals[(m.id, name)] = ResolvedSignal(
                    m.id, name, dev.id, ref.tag, dev.polled(ref.tag), dev.poll_interval_s,
                    ref.rollover if ref.rollover is not None else dev.counter_modulus(ref.tag),
                    ref.reset_ratio, ref.reset_below)

    def iter_assets(self) -> Iterator[tuple[Asset, list[str]]]:
        """Every asset with the ids of its ancestors (outermost first)."""

        def walk(items: list[Asset], path: list[str]) -> Iterator[tuple[Asset, list[str]]]:
            for a in items:
                yield a, path
                yield from walk(a.children, [*path, a.id])

        yield from walk(self.assets, [])

    def machines(self) -> list[Asset]:
        return [a for a, _ in self.iter_assets() if a.kind == "machine"]

    def device(self, device_id: str) -> DeviceBase:
        for d in self.devices:
            if d.id == device_id:
                return d
        raise KeyError(device_id)

    def device_owners(self) -> dict[str, str]:
        """Device id -> gateway id, for devices the file assigns (a device's `gateway` key or `gateways:`)."""
        owners = {d: g.id for g in self.gateways for d in g.devices}
        owners.update({d.id: d.gateway for d in self.devices if d.gateway})
        return owners

    def gateway_devices(self, gateway_id: str) -> list[str] | None:
        """Ids of the devices `gateway_id` reads; None when the file assigns no device (one gateway reads all).

        Devices the file leaves unassigned belong to `edge.gateway_id`.
        """
        owners = self.device_owners()
        if not owners:
            return None
        return [d.id for d in self.devices if owners.get(d.id, self.edge.gateway_id) == gateway_id]

    def signal(self, machine_id: str, name: str) -> ResolvedSignal | None:
        """The machine's signal `name` (state, total_count, ...), or None when it has none."""
        return self._signals.get((machine_id, name))
