"""The stages in flow order, and the schema directories of those installed (applied by `db migrate` in this order)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

STAGES = ("collector", "kpi", "api")


def schema_dirs(upto: str = "api") -> list[Path]:
    """`<stage>/schema/` of every installed stage up to and including `upto`, without importing the stages."""
    out: list[Path] = []
    for stage in STAGES[: STAGES.index(upto) + 1]:
        spec = importlib.util.find_spec(stage)
        if spec is None or spec.origin is None:
            continue
        d = Path(spec.origin).parent / "schema"
        if d.is_dir() and any(d.glob("*.sql")):
            out.append(d)
    return out
