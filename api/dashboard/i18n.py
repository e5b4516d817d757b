"""Message catalogs (en, zh) and the request's language: ?lang=, then the cookie, then Accept-Language."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files

LANGS = ("zh", "en")
LANG_COOKIE = "shopfloor_lang"


@cache
def catalog(lang: str) -> dict[str, str]:
    """The messages of one language (package data api/dashboard/i18n/<lang>.json)."""
    data: dict[str, str] = json.loads(files("api.dashboard").joinpath("i18n").joinpath(f"{lang}.json").read_text("utf-8"))
    return data


def pick_lang(query: str | None, cookie: str | None, accept: str | None) -> str:
    """The language to render in: an explicit choice wins, then the remembered one, then the browser's."""
    for choice in (query, cookie):
        if choice in LANGS:
            return str(choice)
    for part in (accept or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh"
        if tag.startswith("en"):
            return "en"
    return "zh"


def kpi_name(kpi_id: str, lang: str) -> str:
    """A KPI's name from the KPI catalog in the given language (its id when the catalog lacks it)."""
    from kpi.catalog import BY_ID

    k = BY_ID.get(kpi_id)
    if k is None:
        return kpi_id
    return k.name_zh if lang == "zh" else k.name_en


def kpi_status(kpi_id: str) -> str:
    """The catalog's status mark (verified / secondary / unverified / proposed) of a KPI."""
    from kpi.catalog import BY_ID

    k = BY_ID.get(kpi_id)
    return k.status if k else "unverified"


_NETWORKING_REASONS = (("no device configured", "why_no_device"), ("disconnected since ", "why_disconnected_since"),
                       ("no good-quality samples in period", "why_no_good_samples"),
                       ("no samples in period", "why_no_samples_period"))


def networking_reason(reason: str, messages: dict[str, str]) -> str:
    """kpi.networking's reason for a machine not reporting, in the page's language (specifics kept as given)."""
    for prefix, key in _NETWORKING_REASONS:
        if reason.startswith(prefix):
            rest = reason[len(prefix):]
            return f"{messages[key]} {rest}".strip()
    return reason
