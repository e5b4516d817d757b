"""Plant configuration: pydantic models for the one YAML file, and a loader whose errors name file, line and field.

The shape is the public contract in DESIGN.md ("Plant config"); keys may be added, never renamed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge.errors import ConfigError

STATES = ("running", "idle", "down", "setup", "planned_stop")
State = Literal["running", "idle", "down", "setup", "planned_stop"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALL_DAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- plant, shifts, assets


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


class Signals(Model):
    state: SignalRef | None = None
    total_count: SignalRef | None = None
    good_count: SignalRef | None = None
    scrap_count: SignalRef | None = None
    rework_count: SignalRef | None = None
    energy_kwh: SignalRef | None = None
    power_kw: SignalRef | None = None


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


# --------------------------------------------------------------------------- devices and tags


class Deadband(Model):
    type: Literal["absolute", "percent"]
    value: float = Field(ge=0)


ModbusTable = Literal["holding", "input", "coil", "discrete"]
_MODICON = {0: "coil", 1: "discrete", 3: "input", 4: "holding"}


class ModbusAddress(Model):
    table: ModbusTable
    offset: int = Field(ge=0, le=65535)


def parse_modicon(v: int) -> ModbusAddress:
    """40001 -> holding 0, 30001 -> input 0, 1 -> coil 0, 10001 -> discrete 0; six-digit 400001 too."""
    if v <= 0:
        raise ValueError(f"Modicon address must be positive, got {v}")
    if v < 100000:
        prefix, number = divmod(v, 10000)
    else:
        prefix, number = divmod(v, 100000)
    if prefix not in _MODICON or number < 1:
        raise ValueError(
            f"{v} is not a Modicon address (use 00001-09999 coils, 10001 discrete inputs, "
            "30001 input registers, 40001 holding registers, or {table: holding, offset: 0})"
        )
    return ModbusAddress(table=_MODICON[prefix], offset=number - 1)  # type: ignore[arg-type]


ModbusType = Literal["bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"]
REGISTER_COUNT = {"bool": 1, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2,
                  "int64": 4, "uint64": 4, "float64": 4}


class TagBase(Model):
    name: str = Field(min_length=1)


class ModbusTag(TagBase):
    address: ModbusAddress
    type: ModbusType = "uint16"
    word_order: Literal["big", "little"] = "big"
    byte_order: Literal["big", "little"] = "big"
    bit: int | None = Field(default=None, ge=0, le=15)
    length: int | None = Field(default=None, ge=1, le=125)
    scale: float = 1.0
    offset: float = 0.0

    @field_validator("address", mode="before")
    @classmethod
    def _address(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("address must be a Modicon number or {table, offset}")
        if isinstance(v, int):
            return parse_modicon(v)
        if isinstance(v, str) and v.isdigit():
            return parse_modicon(int(v))
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ModbusTag:
        bit_table = self.address.table in ("coil", "discrete")
        if bit_table and self.type != "bool":
            raise ValueError(f"{self.address.table} addresses hold single bits: type must be bool, not {self.type}")
        if self.bit is not None and (bit_table or self.type not in ("bool", "uint16", "int16")):
            raise ValueError("'bit' selects a bit in one register: use it with type bool on a holding/input register")
        if self.type == "string" and self.length is None:
            raise ValueError("type string needs 'length' (in registers, 2 characters each)")
        return self

    @property
    def register_count(self) -> int:
        if self.type == "string":
            return self.length or 1
        return REGISTER_COUNT[self.type]


class OpcUaTag(TagBase):
    node: str
    mode: Literal["subscribe", "poll"] = "subscribe"
    sampling_ms: float = Field(default=1000, gt=0)
    deadband: Deadband | None = None

    @field_validator("node")
    @classmethod
    def _node(cls, v: str) -> str:
        if not re.match(r"^(ns=\d+;|nsu=[^;]+;)?(i=\d+|s=.+|g=[0-9A-Fa-f-]{36}|b=.+)$", v):
            raise ValueError(f"not an OPC UA node id: {v!r} (e.g. ns=2;s=Line1.Count, ns=2;i=1001, nsu=URI;s=Name)")
        return v


class MqttTag(TagBase):
    topic: str = Field(min_length=1)
    json_path: str = "$"
    timestamp_path: str | None = None

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        parts = v.split("/")
        for i, p in enumerate(parts):
            if "#" in p and (p != "#" or i != len(parts) - 1):
                raise ValueError(f"'#' must be the last level of a topic filter: {v!r}")
            if "+" in p and p != "+":
                raise ValueError(f"'+' must fill a whole topic level: {v!r}")
        return v

    @field_validator("json_path", "timestamp_path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is not None:
            from edge.jsonpath import compile_path

            compile_path(v)  # raises ValueError with the position
        return v


class SparkplugTag(TagBase):
    metric: str = Field(min_length=1)


class Security(Model):
    policy: Literal["None", "Basic256Sha256", "Aes256_Sha256_RsaPss", "Aes128_Sha256_RsaOaep"] = "None"
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: str | None = None
    private_key: str | None = None
    trust_dir: str | None = None
    username: str | None = None
    password_env: str | None = None

    @model_validator(mode="after")
    def _pairs(self) -> Security:
        if (self.policy == "None") != (self.mode == "None"):
            raise ValueError("security policy and mode must both be None or both be set")
        if self.policy != "None" and not (self.certificate and self.private_key):
            raise ValueError(f"security policy {self.policy} needs 'certificate' and 'private_key'")
        return self


class DeviceBase(Model):
    id: str = Field(min_length=1)
    endpoint: str
    poll_interval_s: float = Field(default=1.0, gt=0, le=86400)
    timeout_s: float = Field(default=3.0, gt=0, le=600)


class ModbusDevice(DeviceBase):
    protocol: Literal["modbus"]
    unit_id: int = Field(default=1, ge=0, le=255)
    max_block_registers: int = Field(default=125, ge=1, le=125)
    max_gap_registers: int = Field(default=8, ge=0, le=125)
    tags: list[ModbusTag] = Field(min_length=1)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        u = urlparse(v)
        if u.scheme == "tcp":
            if not u.hostname:
                raise ValueError(f"modbus tcp endpoint needs a host: {v!r} (tcp://host:502)")
        elif u.scheme == "rtu":
            if not u.path:
                raise ValueError(f"modbus rtu endpoint needs a serial port: {v!r} (rtu:///dev/ttyUSB0?baudrate=19200)")
            q = parse_qs(u.query)
            for key in q:
                if key not in ("baudrate", "parity", "stopbits", "bytesize"):
                    raise ValueError(f"unknown rtu option {key!r} (baudrate, parity, stopbits, bytesize)")
        else:
            raise ValueError(f"modbus endpoint must start with tcp:// or rtu://, got {v!r}")
        return v


class OpcUaDevice(DeviceBase):
    protocol: Literal["opcua"]
    security: Security | None = None
    tags: list[OpcUaTag] = Field(min_length=1)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if not v.startswith("opc.tcp://"):
            raise ValueError(f"opcua endpoint must start with opc.tcp://, got {v!r}")
        return v


def _mqtt_endpoint(v: str) -> str:
    u = urlparse(v)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise ValueError(f"endpoint must be mqtt://host:1883 or mqtts://host:8883, got {v!r}")
    return v


class MqttDevice(DeviceBase):
    protocol: Literal["mqtt"]
    username: str | None = None
    password_env: str | None = None
    ca_file: str | None = None
    mqtt_version: Literal["3.1.1", "5"] = "5"
    tags: list[MqttTag] = Field(min_length=1)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        return _mqtt_endpoint(v)


class SparkplugDevice(DeviceBase):
    protocol: Literal["sparkplug"]
    username: str | None = None
    password_env: str | None = None
    ca_file: str | None = None
    group_id: str = Field(min_length=1)
    edge_node_id: str = Field(min_length=1)
    device_id: str | None = None
    primary_host_id: str | None = None
    mqtt_version: Literal["3.1.1", "5"] = "3.1.1"
    tags: list[SparkplugTag] = Field(min_length=1)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        return _mqtt_endpoint(v)


Device = Annotated[ModbusDevice | OpcUaDevice | MqttDevice | SparkplugDevice, Field(discriminator="protocol")]


# --------------------------------------------------------------------------- process sections


class EdgeSettings(Model):
    gateway_id: str | None = None
    buffer_path: str = "shopfloor-buffer.sqlite"
    buffer_max_mb: float = Field(default=512, gt=0)
    batch_max_samples: int = Field(default=5000, ge=1, le=100000)
    batch_max_delay_s: float = Field(default=0.2, gt=0, le=60)
    uplink_topic_prefix: str = "shopfloor/v1"


class CollectorSettings(Model):
    batch_max_rows: int = Field(default=20000, ge=1)
    ledger_grace_s: float = Field(default=300, ge=0)
    share_group: str = "shopfloor-collectors"


class KpiSettings(Model):
    micro_stop_s: float = Field(default=0, ge=0)
    reduced_speed_ratio: float = Field(default=0.0, ge=0, le=1)
    calendar: Literal["shifts", "always"] = "shifts"


class PlantConfig(Model):
    plant: Plant
    shifts: list[Shift] = Field(default_factory=list)
    assets: list[Asset] = Field(default_factory=list)
    devices: list[Device] = Field(default_factory=list)
    edge: EdgeSettings = Field(default_factory=EdgeSettings)
    collector: CollectorSettings = Field(default_factory=CollectorSettings)
    kpi: KpiSettings = Field(default_factory=KpiSettings)

    def iter_assets(self) -> Iterator[tuple[Asset, list[str]]]:
        """Every asset with the ids of its ancestors (outermost first)."""

        def walk(items: list[Asset], path: list[str]) -> Iterator[tuple[Asset, list[str]]]:
            for a in items:
                yield a, path
                yield from walk(a.children, [*path, a.id])

        yield from walk(self.assets, [])

    def machines(self) -> list[Asset]:
        return [a for a, _ in self.iter_assets() if a.kind == "machine"]

    def device(self, device_id: str) -> Any:
        for d in self.devices:
            if d.id == device_id:
                return d
        raise KeyError(device_id)


# --------------------------------------------------------------------------- cross-reference checks


@dataclass
class Problem:
    loc: tuple[str | int, ...]
    msg: str


def cross_check(cfg: PlantConfig) -> list[Problem]:
    """Checks pydantic cannot express field by field: unique ids, references between sections."""
    problems: list[Problem] = []
    dev_index: dict[str, int] = {}
    for i, d in enumerate(cfg.devices):
        if d.id in dev_index:
            problems.append(Problem(("devices", i, "id"), f"duplicate device id {d.id!r}"))
        dev_index[d.id] = i
        seen: set[str] = set()
        for j, t in enumerate(d.tags):
            if t.name in seen:
                problems.append(Problem(("devices", i, "tags", j, "name"), f"duplicate tag {t.name!r} on device {d.id!r}"))
            seen.add(t.name)
    asset_ids: set[str] = set()

    def walk(items: list[Asset], loc: tuple[str | int, ...]) -> None:
        for k, a in enumerate(items):
            here = (*loc, k)
            if a.id in asset_ids:
                problems.append(Problem((*here, "id"), f"duplicate asset id {a.id!r}"))
            asset_ids.add(a.id)
            if a.device is not None and a.device not in dev_index:
                problems.append(Problem((*here, "device"), f"machine {a.id!r} points to device {a.device!r}, which is not under 'devices'"))
            if a.signals is not None:
                if a.device is None:
                    problems.append(Problem((*here, "signals"), f"machine {a.id!r} has signals but no device"))
                elif a.device in dev_index:
                    tags = {t.name for t in cfg.devices[dev_index[a.device]].tags}
                    for sig, ref in a.signals:
                        if ref is not None and ref.tag not in tags:
                            problems.append(Problem((*here, "signals", sig, "tag"),
                                                    f"signal {sig!r} names tag {ref.tag!r}, which device {a.device!r} does not have"))
            walk(a.children, (*here, "children"))

    walk(cfg.assets, ("assets",))
    names = [s.name for s in cfg.shifts]
    for i, n in enumerate(names):
        if n in names[:i]:
            problems.append(Problem(("shifts", i, "name"), f"duplicate shift name {n!r}"))
    return problems


# --------------------------------------------------------------------------- loading with line numbers


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping key and sequence item."""


def _compose_lines(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            out[(*path, key)] = k.start_mark.line + 1
            _compose_lines(v, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out[(*path, i)] = v.start_mark.line + 1
            _compose_lines(v, (*path, i), out)


def _line_for(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int:
    loc = tuple(str(x) if not isinstance(x, int) else x for x in loc)
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return 1


def _field_name(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop pydantic's union-member and validator tags (e.g. 'modbus', 'function-after[...]')."""
    keep: list[Any] = []
    for i, part in enumerate(loc):
        if isinstance(part, str) and (part.startswith("function-") or "[" in part):
            continue
        if isinstance(part, str) and i > 0 and loc[i - 1] == "devices":
            continue
        if isinstance(part, str) and keep and isinstance(keep[-1], int) and len(keep) >= 2 and keep[-2] == "devices" \
                and part in ("modbus", "opcua", "mqtt", "sparkplug"):
            continue
        keep.append(part)
    return tuple(keep)


def load_config(path: str | os.PathLike[str]) -> PlantConfig:
    """Read and validate a plant file; raise ConfigError naming file, line and field on the first problems."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config: {exc.strerror or exc}") from exc
    return parse_config(text, str(p))


def parse_config(text: str, filename: str = "<config>") -> PlantConfig:
    """Validate YAML text; errors read 'FILE:LINE: FIELD: what is wrong'."""
    try:
        node = yaml.compose(text, Loader=_LineLoader)
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(exc, "problem", None) or str(exc)
        ctx, ctx_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if ctx and ctx_mark is not None and ctx_mark.line + 1 != line:
            problem += f" ({ctx.removeprefix('while parsing ')} that starts on line {ctx_mark.line + 1})"
        raise ConfigError(f"{filename}:{line}: YAML syntax error: {problem}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{filename}:1: the file must be a mapping with at least a 'plant' section")
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _compose_lines(node, (), lines)
    try:
        cfg = PlantConfig.model_validate(data)
    except ValidationError as exc:
        msgs = []
        for err in exc.errors():
            loc = _clean_loc(tuple(err["loc"]))
            if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
                loc = (*loc, "protocol")
            where = _line_for(lines, loc)
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check spelling; see README 'Configuration')"
            elif err["type"] == "union_tag_invalid":
                msg = f"unknown protocol {err.get('ctx', {}).get('tag')!r} (expected one of modbus, opcua, mqtt, sparkplug)"
            elif err["type"] == "union_tag_not_found":
                msg = "missing 'protocol' (one of modbus, opcua, mqtt, sparkplug)"
            msgs.append(f"{filename}:{where}: {_field_name(loc)}: {msg}")
        raise ConfigError("\n".join(msgs)) from exc
    problems = cross_check(cfg)
    if problems:
        raise ConfigError("\n".join(
            f"{filename}:{_line_for(lines, p.loc)}: {_field_name(p.loc)}: {p.msg}" for p in problems))
    return cfg
