"""Jinja2 environment, number and time formatting, and the vendored static files with their cache headers."""

from __future__ import annotations

import gzip
import hashlib
import json
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib.resources import files
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import jinja2

from kpi.networking import duration_text

STATIC_PREFIX = "/dashboard-static"


@cache
def env() -> jinja2.Environment:
    """The template environment (package data api/dashboard/templates), autoescaped."""
    e = jinja2.Environment(loader=jinja2.PackageLoader("api.dashboard", "templates"),
                           autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    e.filters.update(pct=pct, num=num, dur=duration, tojson_attr=lambda v: json.dumps(v, default=str))
    e.globals.update(static=static_url)
    return e


def render(template: str, **ctx: Any) -> str:
    return env().get_template(template).render(**ctx)


def pct(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{100 * v:.{digits}f} %"


def num(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "—"
    return f"{v:,.{digits}f}"


def duration(seconds: float | None) -> str:
    """Short human duration: 45 s, 12 min, 3.5 h, 2.1 d."""
    return "—" if seconds is None else duration_text(seconds)


def local_time(ts: datetime | None, tz: str, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return "—" if ts is None else ts.astimezone(ZoneInfo(tz)).strftime(fmt)


def url(path: str, params: Mapping[str, str | None], **overrides: str | None) -> str:
    """A dashboard URL keeping the view's state (scope, period, language ...) with some values replaced."""
    merged = {**params, **overrides}
    query = urlencode({k: v for k, v in merged.items() if v})
    return f"{path}?{query}" if query else path


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    gz: bytes
    media_type: str
    etag: str


@cache
def static_file(name: str) -> StaticFile | None:
    """A file of api/dashboard/static (vendor/ included), with its gzip form and ETag; None when absent."""
    if "/" in name.replace("vendor/", "", 1) or name.startswith(".") or ".." in name:
        return None
    res = files("api.dashboard").joinpath("static")
    for part in name.split("/"):
        res = res.joinpath(part)
    if not res.is_file():
        return None
    body = res.read_bytes()
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if media in ("application/javascript", "text/javascript", "text/css"):
        media += "; charset=utf-8"
    return StaticFile(body, gzip.compress(body, 6, mtime=0), media, hashlib.sha256(body).hexdigest()[:16])


def static_url(name: str) -> str:
    """URL of a static file with its content hash, so it can be cached for a year and still never be stale."""
    f = static_file(name)
    return f"{STATIC_PREFIX}/{name}" + (f"?v={f.etag}" if f else "")
