"""A small JSONPath subset for MQTT payload mapping: $, .key, ['key'], [index]."""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r"\.([A-Za-z_][\w-]*)|\[(-?\d+)\]|\[['\"]([^'\"]+)['\"]\]")

Path = tuple[str | int, ...]


def compile_path(path: str) -> Path:
    """'$.axes[0].load' -> ('axes', 0, 'load'); ValueError names the position of a bad part."""
    if not path.startswith("$"):
        raise ValueError(f"json_path must start with '$', got {path!r}")
    out: list[str | int] = []
    pos = 1
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            raise ValueError(f"bad json_path {path!r} at character {pos + 1}: expected .name, [index] or ['name']")
        if m.group(1) is not None:
            out.append(m.group(1))
        elif m.group(2) is not None:
            out.append(int(m.group(2)))
        else:
            out.append(m.group(3))
        pos = m.end()
    return tuple(out)


_MISSING = object()


def extract(doc: Any, path: Path) -> Any:
    """Follow a compiled path; raise KeyError naming the missing step."""
    cur = doc
    for step in path:
        try:
            if isinstance(step, int):
                if not isinstance(cur, list):
                    raise KeyError(step)
                cur = cur[step]
            else:
                if not isinstance(cur, dict):
                    raise KeyError(step)
                cur = cur[step]
        except (IndexError, KeyError):
            raise KeyError(f"payload has no {step!r}") from None
    return cur
