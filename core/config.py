"""Loading the plant file: YAML with line numbers, pydantic validation, cross-reference checks.

Every problem reads `FILE:LINE: FIELD: what is wrong`, so a person can go straight to it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from core.errors import ConfigError
from core.plant import Asset, PlantConfig
from core.registry import protocols

__all__ = ["Problem", "cross_check", "load_config", "parse_config", "resolve_buffer_path"]

SECRET_KEYS = frozenset({"password", "passwd", "pwd", "secret", "token"})


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
    problems.extend(_gateway_problems(cfg, dev_index))
    names = [s.name for s in cfg.shifts]
    for i, n in enumerate(names):
        if n in names[:i]:
            problems.append(Problem(("shifts", i, "name"), f"duplicate shift name {n!r}"))
    return problems


def _gateway_problems(cfg: PlantConfig, dev_index: dict[str, int]) -> list[Problem]:
    """`gateways:` names known devices, each device once, never against the device's own `gateway` key."""
    problems: list[Problem] = []
    listed: dict[str, str] = {}
    seen: set[str] = set()
    for i, g in enumerate(cfg.gateways):
        if g.id in seen:
            problems.append(Problem(("gateways", i, "id"), f"duplicate gateway id {g.id!r}"))
        seen.add(g.id)
        for j, d in enumerate(g.devices):
            here = ("gateways", i, "devices", j)
            if d not in dev_index:
                problems.append(Problem(here, f"gateway {g.id!r} lists device {d!r}, which is not under 'devices'"))
            elif d in listed:
                problems.append(Problem(here, f"device {d!r} is listed under gateways {listed[d]!r} and {g.id!r}; "
                                              "a device is read by one gateway"))
            else:
                own = cfg.devices[dev_index[d]].gateway
                if own is not None and own != g.id:
                    problems.append(Problem(here, f"device {d!r} says gateway: {own!r} but is listed under "
                                                  f"gateway {g.id!r}"))
            listed.setdefault(d, g.id)
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
                and part in protocols():
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
    cfg = parse_config(text, str(p))
    resolved = resolve_buffer_path(cfg.edge.buffer_path, p, _key_line(text, "buffer_path"))
    return cfg.model_copy(update={"edge": cfg.edge.model_copy(update={"buffer_path": resolved})})


def _key_line(text: str, key: str) -> int:
    for i, line in enumerate(text.splitlines(), start=1):
        if line.strip().startswith(f"{key}:") or f" {key}:" in line or f"{{{key}:" in line:
            return i
    return 1


def resolve_buffer_path(buffer_path: str, plant_file: Path, line: int = 1) -> str:
    """edge.buffer_path as an absolute path: relative ones are read from the plant file's folder and must stay
    inside it; neither may be the plant file itself. ConfigError (one line) otherwise."""
    folder = plant_file.resolve().parent
    given = Path(buffer_path).expanduser()
    target = given if given.is_absolute() else folder / given
    target = target.resolve()
    where = f"{plant_file}:{line}: edge.buffer_path"
    if not given.is_absolute() and not target.is_relative_to(folder):
        raise ConfigError(f"{where}: {buffer_path!r} leads outside the plant file's folder {folder}; use a path "
                          "inside it, or an absolute path")
    if target == plant_file.resolve():
        raise ConfigError(f"{where}: {buffer_path!r} is the plant file itself; name a separate file such as "
                          "shopfloor-buffer.sqlite")
    if target.is_dir():
        raise ConfigError(f"{where}: {target} is a folder; name a file in it such as shopfloor-buffer.sqlite")
    return str(target)


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
            if err["type"] == "extra_forbidden" and loc and str(loc[-1]).lower() in SECRET_KEYS:
                msg = ("passwords never go in the plant file: put it in an environment variable and name that "
                       "variable with 'password_env'")
            elif err["type"] == "extra_forbidden":
                msg = "unknown key (check spelling; see README 'Configuration')"
            elif err["type"] == "union_tag_invalid":
                msg = f"unknown protocol {err.get('ctx', {}).get('tag')!r} (expected one of {', '.join(protocols())})"
            elif err["type"] == "union_tag_not_found":
                msg = f"missing 'protocol' (one of {', '.join(protocols())})"
            msgs.append(f"{filename}:{where}: {_field_name(loc)}: {msg}")
        raise ConfigError("\n".join(msgs)) from exc
    problems = cross_check(cfg)
    if problems:
        raise ConfigError("\n".join(
            f"{filename}:{_line_for(lines, p.loc)}: {_field_name(p.loc)}: {p.msg}" for p in problems))
    return cfg
