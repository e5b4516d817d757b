"""Limits every uplink payload is held to before and while it is decoded.

A payload outside them is refused with a reason (the collector quarantines it), never handed to code that
could raise something unexpected: JSON nested deeper than a batch can be is refused before `json.loads`
(whose recursion would raise RecursionError), and every id, text, number and time is checked for length,
range and finiteness.
"""

from __future__ import annotations

import re

MAX_PAYLOAD_BYTES = 64 * 1024 * 1024  # four times the shipped broker's message_size_limit
_DEPTH_PASSES = 4  # each removes one or two innermost levels: a batch (3 levels) passes, 9 levels never do
MAX_ID_CHARS = 256  # device_id, tag, gateway_id (btree index rows stay far below PostgreSQL's ~2.7 kB limit)
MAX_TEXT_CHARS = 65536  # a text value or an event reason
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
TS_MIN_US = 631_152_000_000_000  # 1990-01-01T00:00:00Z: nothing older comes from a live gateway
MAX_FUTURE_US = 86_400_000_000  # a source clock up to one day ahead is stored; further ahead is refused
TS_ABS_MAX_US = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z, the end of PostgreSQL's timestamptz range
FLOAT_MAX = 1.7976931348623157e308

_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_TOPIC_UNSAFE = re.compile(r"[\x00-\x1f\x7f/+#$]")


def precheck(payload: bytes) -> None:
    """Size and nesting depth, checked without parsing; ValueError names the limit that was crossed."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the limit of {MAX_PAYLOAD_BYTES} bytes")
    if b"\\" in payload:  # escaped backslashes and quotes are string content
        payload = payload.replace(b"\\\\", b"").replace(b'\\"', b"")
    # brackets and quotes only; a string without brackets is then `""` and goes; the rest is split out
    marks = payload.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    brackets = b"".join(marks.split(b'"')[::2]) if b'"' in marks else marks
    for _ in range(_DEPTH_PASSES):  # a pass removes one or two innermost levels
        shorter = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if shorter == brackets:
            break
        brackets = shorter
    if brackets:
        if brackets.count(b"[") != brackets.count(b"]") or brackets.count(b"{") != brackets.count(b"}"):
            raise ValueError("not JSON: unbalanced brackets")
        raise ValueError("JSON nested deeper than a batch can be (at most 8 levels are read): not a batch")


def id_problem(value: object, what: str) -> str | None:
    """Why `value` cannot be a gateway id (topic level) or None: non-empty, short, no MQTT-special characters."""
    if type(value) is not str or not value:
        return f"{what} must be a non-empty string"
    if len(value) > MAX_ID_CHARS:
        return f"{what} is {len(value)} characters long (limit {MAX_ID_CHARS})"
    if _TOPIC_UNSAFE.search(value):
        return f"{what} {clip(value)!r} contains a character not allowed in an MQTT topic level (/ + # $ or control)"
    return None


def clip(text: str, limit: int = 80) -> str:
    """A value short enough to quote in a reason."""
    return text if len(text) <= limit else text[:limit] + f"...({len(text)} chars)"


def safe_text(text: str, limit: int = 4000) -> str:
    """Text PostgreSQL always accepts: NUL bytes and lone surrogates escaped, length capped."""
    text = clip(text, limit)
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
