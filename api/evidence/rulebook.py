"""Tier rulebooks: YAML files (one scheme each), validated with errors that name file, line and field."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.config import _compose_lines, _field_name, _line_for, _LineLoader
from core.errors import ConfigError

BUILTIN_DIR = Path(__file__).parent / "rulebooks"
Status = Literal["verified", "secondary", "unverified", "proposed"]
Kind = Literal["threshold", "improvement", "reported", "attested", "weighted_review"]
STATUS_MARK = {"verified": "V", "secondary": "S", "unverified": "U", "proposed": "P"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(_Model):
    en: str
    zh: str


class Source(_Model):
    title: str
    url: str | None = None
    note: str | None = None


class Tier(_Model):
    id: str
    name: Text


class Criterion(_Model):
    """One check of a tier: measured from KPIs (threshold, improvement, reported) or attested by the plant."""

    id: str
    tier: str
    title: Text
    kind: Kind
    metric: str | None = None  # a kpi id of the catalog (measured kinds), or the attested quantity's name
    op: Literal[">=", "<=", ">", "<"] | None = None
    threshold: float | None = None
    unit: str | None = None
    weights: dict[str, float] | None = None  # weighted_review: domain -> weight
    gate: bool = True  # False: shown as reference or context, never decides readiness
    source: list[str] = Field(min_length=1)
    status: Status
    attachment: str | None = None  # attested: what the plant attaches
    note: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> Criterion:
        measured = self.kind in ("threshold", "improvement", "reported")
        if measured and not self.metric:
            raise ValueError(f"kind {self.kind} needs 'metric' (a KPI id)")
        if self.kind == "threshold" and (self.op is None or self.threshold is None):
            raise ValueError("kind threshold needs 'op' and 'threshold'")
        if self.kind == "attested" and not self.attachment:
            raise ValueError("kind attested needs 'attachment' (what the plant attaches)")
        if self.kind == "weighted_review" and not self.weights:
            raise ValueError("kind weighted_review needs 'weights'")
        return self


class Rulebook(_Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")
    version: str
    title: Text
    jurisdiction: str
    status_legend: dict[str, str] = Field(default_factory=lambda: dict(STATUS_MARK))
    sources: dict[str, Source]
    tiers: list[Tier] = Field(min_length=1)
    criteria: list[Criterion] = Field(min_length=1)

    @model_validator(mode="after")
    def _refs(self) -> Rulebook:
        tiers = {t.id for t in self.tiers}
        seen: set[str] = set()
        for i, c in enumerate(self.criteria):
            if c.tier not in tiers:
                raise ValueError(f"criteria[{i}] ({c.id}): tier {c.tier!r} is not one of {sorted(tiers)}")
            for s in c.source:
                if s not in self.sources:
                    raise ValueError(f"criteria[{i}] ({c.id}): source {s!r} is not listed under 'sources'")
            if c.id in seen:
                raise ValueError(f"criteria[{i}]: duplicate criterion id {c.id!r}")
            seen.add(c.id)
        return self

    def tier_index(self, tier: str) -> int:
        return [t.id for t in self.tiers].index(tier)


@dataclass(frozen=True)
class Loaded:
    rulebook: Rulebook
    path: Path
    text: str  # the file as read (goes into the evidence pack unchanged)


def parse_rulebook(text: str, filename: str) -> Rulebook:
    """Validate one rulebook's YAML text; errors read 'FILE:LINE: FIELD: what is wrong'."""
    fast = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(text, Loader=fast)  # noqa: S506 - a safe loader (libyaml when present)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"{filename}:{mark.line + 1 if mark else 1}: YAML syntax error: "
                          f"{getattr(exc, 'problem', None) or exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("rulebook"), dict):
        raise ConfigError(f"{filename}:1: rulebook: the file must hold one mapping under the key 'rulebook'")
    try:
        return Rulebook.model_validate(data["rulebook"])
    except ValidationError as exc:
        lines: dict[tuple[Any, ...], int] = {}  # line numbers only when there is something to point at
        node = yaml.compose(text, Loader=_LineLoader)
        if node is not None:
            _compose_lines(node, (), lines)
        msgs = []
        for err in exc.errors():
            loc = ("rulebook", *(p for p in err["loc"] if not (isinstance(p, str) and "[" in p)))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check spelling; see api/evidence/README.md)"
            msgs.append(f"{filename}:{_line_for(lines, loc)}: {_field_name(loc)}: {msg}")
        raise ConfigError("\n".join(msgs)) from exc


def _check_metrics(book: Rulebook, text: str, filename: str) -> None:
    """Measured criteria must name a KPI of the catalog (the engine computes nothing else)."""
    from kpi.catalog import BY_ID

    for i, c in enumerate(book.criteria):
        if c.kind in ("threshold", "improvement", "reported") and c.metric not in BY_ID:
            line = next((n + 1 for n, t in enumerate(text.splitlines()) if f"id: {c.id}" in t), 1)
            raise ConfigError(f"{filename}:{line}: rulebook.criteria[{i}].metric: {c.metric!r} is not a KPI of the "
                              "catalog (`GET /api/v1/kpis/catalog` lists them); use kind attested for other evidence")


def load_file(path: Path) -> Loaded:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read rulebook: {exc.strerror or exc}") from exc
    book = parse_rulebook(text, str(path))
    _check_metrics(book, text, str(path))
    return Loaded(book, path, text)


def rulebook_dirs(extra: list[Path] | None = None) -> list[Path]:
    """The shipped rulebooks, then SHOPFLOOR_RULEBOOKS (os.pathsep-separated), then `extra`."""
    dirs = [BUILTIN_DIR]
    env = os.environ.get("SHOPFLOOR_RULEBOOKS")
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    return dirs + list(extra or [])


def load_all(extra: list[Path] | None = None) -> dict[str, Loaded]:
    """Every rulebook by id; a user rulebook with the id of a shipped one is an error (ids are unique)."""
    out: dict[str, Loaded] = {}
    for d in rulebook_dirs(extra):
        if not d.is_dir():
            raise ConfigError(f"{d}: rulebook directory does not exist")
        for p in sorted(d.glob("*.yaml")):
            lb = load_file(p)
            if lb.rulebook.id in out:
                raise ConfigError(f"{p}:1: rulebook.id: {lb.rulebook.id!r} is already defined in "
                                  f"{out[lb.rulebook.id].path}")
            out[lb.rulebook.id] = lb
    return out


def get(rulebook_id: str, extra: list[Path] | None = None) -> Loaded:
    books = load_all(extra)
    if rulebook_id not in books:
        raise ConfigError(f"unknown rulebook {rulebook_id!r} (known: {', '.join(sorted(books))}; "
                          "`shopfloor evidence rulebooks` lists them)")
    return books[rulebook_id]
