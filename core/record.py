"""Sample and connection events: the only things a driver emits, and the uplink wire format.

A sample's identity is (device_id, tag, ts_us). Times are integer microseconds since the Unix epoch, UTC,
stamped once (source time where the device gives one, else the edge's clock) and never re-stamped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from core import wire_limits as lim
from core.times import now_us

__all__ = ["SAMPLE_COLUMNS", "SAMPLE_TYPES", "WIRE_FIELDS", "Batch", "Gap", "Quality", "Sample", "StatusEvent",
           "check_row", "decode_batch", "decode_gaps", "encode_batch", "now_us"]


Reject = tuple[str, Any]  # (reason, the raw row as received)


class Quality(StrEnum):
    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


@dataclass(slots=True)
class Sample:
    device_id: str
    tag: str
    ts_us: int
    value: float | None = None
    text: str | None = None
    quality: Quality = Quality.GOOD
    status: int = 0  # raw protocol status (OPC UA StatusCode, Modbus exception code, ...)
    server_ts_us: int | None = None
    historical: bool = False  # Sparkplug is_historical, or replayed from a device buffer
    # stamped by the edge runtime, once
    gateway_id: str = ""
    boot_epoch: int = 0
    seq: int = 0

    def to_row(self) -> list[Any]:
        """The wire form: a JSON array in WIRE_FIELDS order."""
        return [self.device_id, self.tag, self.ts_us, self.value, self.text, self.quality.value, self.status,
                self.server_ts_us, self.historical, self.gateway_id, self.boot_epoch, self.seq]

    @classmethod
    def from_row(cls, r: Any) -> Sample:
        dev, tag, ts, val, text, q, st, sts, hist, gw, boot, seq = check_row(r)
        return cls(dev, tag, ts, val, text, Quality(q), st, sts, hist, gw, boot, seq)


# The one field list: wire field, `samples` column, PostgreSQL type. A wire row, a checked row and the
# collector's COPY all use this order.
FIELDS = (
    ("device_id", "device_id", "text"),
    ("tag", "tag", "text"),
    ("ts_us", "ts", "timestamptz"),
    ("value", "value", "float8"),
    ("text", "value_text", "text"),
    ("quality", "quality", "text"),
    ("status", "status_code", "int8"),
    ("server_ts_us", "server_ts", "timestamptz"),
    ("historical", "historical", "bool"),
    ("gateway_id", "gateway_id", "text"),
    ("boot_epoch", "boot_epoch", "int8"),
    ("seq", "seq", "int8"),
)
WIRE_FIELDS = tuple(f[0] for f in FIELDS)
SAMPLE_COLUMNS = tuple(f[1] for f in FIELDS)
SAMPLE_TYPES = tuple(f[2] for f in FIELDS)
_QUALITIES = frozenset(q.value for q in Quality)
_NUMBER = (int, float)


def check_row(r: Any, ts_max: int = lim.TS_ABS_MAX_US, gateway_id: str | None = None,
              ts_min: int = 0) -> tuple[Any, ...]:
    """Validate one wire row; return it as a tuple in FIELDS order.

    The one validator for uplink rows, kept cheap: the collector runs it on every sample it receives. Ids and
    texts are length-limited, integers fit int64, times lie in [ts_min, ts_max] (the collector: 1990 to its clock
    + 1 day). A NaN or infinite value is
    kept as a bad-quality sample (value NULL) with the reason in its text. `gateway_id` replaces the row's own.
    """
    if type(r) is not list or len(r) != 12:
        raise ValueError("sample row must be a list of 12 fields " + str(WIRE_FIELDS))
    dev, tag, ts, val, text, q, st, sts, hist, gw, boot, seq = r
    if type(dev) is not str or not dev or type(tag) is not str or not tag:
        raise ValueError("device_id and tag must be non-empty strings")
    if len(dev) > lim.MAX_ID_CHARS or len(tag) > lim.MAX_ID_CHARS:
        raise ValueError(f"device_id or tag longer than {lim.MAX_ID_CHARS} characters "
                         f"({lim.clip(dev, 40)!r}, {lim.clip(tag, 40)!r})")
    if type(ts) is not int or not ts_min <= ts <= ts_max:
        raise ValueError(_bad_time(ts, ts_min, ts_max))
    if text is not None and (type(text) is not str or len(text) > lim.MAX_TEXT_CHARS):
        raise ValueError(f"text must be a string of at most {lim.MAX_TEXT_CHARS} characters or null")
    if q not in _QUALITIES:
        raise ValueError(f"quality must be one of {sorted(_QUALITIES)}")
    if val is not None:
        if type(val) not in _NUMBER:
            raise ValueError("value must be a number or null")
        if type(val) is int and not -lim.FLOAT_MAX <= val <= lim.FLOAT_MAX:
            raise ValueError(f"value {lim.clip(str(val), 40)} is outside the double precision range")
        val = float(val)
        if not -lim.FLOAT_MAX <= val <= lim.FLOAT_MAX:  # NaN or +-Infinity: a bad reading, not a number
            text, q = (f"value was {val}" if text is None else text), "bad"
            val = None
    if type(st) is not int or (sts is not None and type(sts) is not int) or type(hist) is not bool \
            or type(gw) is not str or type(boot) is not int or type(seq) is not int:
        raise ValueError("status, server_ts_us, boot_epoch and seq must be integers, historical a boolean")
    if not (lim.INT64_MIN <= st <= lim.INT64_MAX and lim.INT64_MIN <= boot <= lim.INT64_MAX
            and lim.INT64_MIN <= seq <= lim.INT64_MAX) or (sts is not None and not 0 <= sts <= lim.TS_ABS_MAX_US):
        raise ValueError("status, boot_epoch, seq or server_ts_us out of range")
    if gateway_id is not None:
        gw = gateway_id
    elif len(gw) > lim.MAX_ID_CHARS:
        raise ValueError(f"gateway_id longer than {lim.MAX_ID_CHARS} characters")
    return (dev, tag, ts, val, text, q, st, sts, hist, gw, boot, seq)


def _bad_time(ts: Any, ts_min: int, ts_max: int) -> str:
    """The reason a time stamp is refused, with the window it must lie in."""
    from core.times import from_us

    def iso(us: int) -> str:
        return from_us(us).strftime("%Y-%m-%dT%H:%M:%SZ")

    return (f"ts_us must be integer microseconds since the Unix epoch from {iso(ts_min)} to {iso(ts_max)}, "
            f"got {lim.clip(repr(ts), 40)}")


@dataclass(slots=True)
class StatusEvent:
    """A device's connection changed: connected / disconnected, with the reason a person can act on."""

    device_id: str
    ts_us: int
    state: str  # "connected" | "disconnected"
    reason: str = ""
    gateway_id: str = ""

    def to_row(self) -> list[Any]:
        return [self.device_id, self.ts_us, self.state, self.reason, self.gateway_id]

    @classmethod
    def from_row(cls, r: list[Any], ts_max: int = lim.TS_ABS_MAX_US, ts_min: int = 0) -> StatusEvent:
        if not isinstance(r, list) or len(r) != 5:
            raise ValueError("status row must be a list of 5 fields")
        dev, ts, state, reason, gw = r
        if state not in ("connected", "disconnected"):
            raise ValueError(f"unknown device state {lim.clip(str(state), 40)!r}")
        if type(ts) is not int or not ts_min <= ts <= ts_max:
            raise ValueError(_bad_time(ts, ts_min, ts_max))
        if type(dev) is not str or not dev or len(dev) > lim.MAX_ID_CHARS:
            raise ValueError(f"device_id must be a non-empty string of at most {lim.MAX_ID_CHARS} characters")
        if type(reason) is not str or len(reason) > lim.MAX_TEXT_CHARS or type(gw) is not str \
                or len(gw) > lim.MAX_ID_CHARS:
            raise ValueError("reason and gateway_id must be strings within the length limits")
        return cls(dev, ts, state, reason, gw)


GAP_REASONS = ("buffer_full", "memory_full", "oversize")


@dataclass(slots=True)
class Gap:
    """Samples of one device the gateway dropped by its stated policy: the time range they covered and how many.

    reason: buffer_full (disk buffer over edge.buffer_max_mb, oldest dropped), memory_full (the disk refused
    writes and the memory queue overflowed, oldest dropped), oversize (one sample larger than a batch may be).
    """

    device_id: str
    from_us: int
    to_us: int
    count: int
    reason: str
    gateway_id: str = ""

    def to_row(self) -> list[Any]:
        return [self.device_id, self.from_us, self.to_us, self.count, self.reason, self.gateway_id]

    @classmethod
    def from_row(cls, r: Any) -> Gap:
        if type(r) is not list or len(r) != 6:
            raise ValueError("gap row must be a list of 6 fields [device_id, from_us, to_us, count, reason, gateway_id]")
        dev, lo, hi, n, reason, gw = r
        if type(dev) is not str or not dev or type(gw) is not str or reason not in GAP_REASONS:
            raise ValueError(f"gap row needs a device_id, a gateway_id and a reason in {GAP_REASONS}")
        if type(lo) is not int or type(hi) is not int or type(n) is not int or not 0 < n < 2**53 or \
                not 0 <= lo <= hi < 2**62:
            raise ValueError("gap from_us <= to_us and count > 0 must be integers in range")
        return cls(dev, lo, hi, n, reason, gw)


def decode_gaps(payload: bytes) -> tuple[list[Gap], list[Reject]]:
    """The gap records of an uplink payload (its optional "gaps" list), with rejects for bad rows."""
    if b'"gaps":[' not in payload or b'"gaps":[]' in payload:
        return [], []
    try:
        doc = json.loads(payload)
        raw = doc["gaps"]
    except (ValueError, RecursionError, KeyError, TypeError):
        return [], []  # the batch decoder reports a payload that is not a batch
    gaps: list[Gap] = []
    rejects: list[Reject] = []
    for i, r in enumerate(raw if isinstance(raw, list) else []):
        try:
            gaps.append(Gap.from_row(r))
        except ValueError as exc:
            rejects.append((f"bad gap row {i}: {exc}", r))
    return gaps, rejects


@dataclass(slots=True)
class Batch:
    """What the uplink carries: one gateway's samples and events, with an id the collector acknowledges."""

    gateway_id: str
    batch_id: int
    samples: list[Sample] = field(default_factory=list)
    events: list[StatusEvent] = field(default_factory=list)

    def encode(self) -> bytes:
        return encode_batch(self.gateway_id, self.batch_id,
                            [json.dumps([s.to_row() for s in self.samples], separators=(",", ":")).encode()],
                            [json.dumps([e.to_row() for e in self.events], separators=(",", ":")).encode()])

    @classmethod
    def decode(cls, payload: bytes) -> Batch:
        """Parse an uplink payload; ValueError says what is wrong (the collector quarantines it)."""
        gateway_id, batch_id, rows, events, rejects = decode_batch(payload)
        if rejects:
            raise ValueError(rejects[0][0])
        samples = [Sample(dev, tag, ts, val, text, Quality(q), st, sts, hist, gw, boot, seq)
                   for dev, tag, ts, val, text, q, st, sts, hist, gw, boot, seq in rows]
        return cls(gateway_id, batch_id, samples, events)


def encode_batch(gateway_id: str, batch_id: int, sample_parts: list[bytes], event_parts: list[bytes],
                 gap_parts: list[bytes] | None = None) -> bytes:
    """Join JSON arrays of wire rows (as stored in the edge buffer) into one payload without re-encoding them.

    Gap records go in an optional "gaps" list, present only when there are any.
    """

    def join(parts: list[bytes]) -> bytes:
        return b",".join(p[1:-1] for p in parts if len(p) > 2)

    gaps = join(gap_parts or [])
    return (b'{"v":1,"gateway_id":' + json.dumps(gateway_id).encode() + b',"batch_id":' + str(batch_id).encode()
            + b',"samples":[' + join(sample_parts) + b'],"events":[' + join(event_parts) + b"]"
            + (b',"gaps":[' + gaps + b"]" if gaps else b"") + b"}")


def decode_batch(payload: bytes) -> tuple[str, int, list[tuple[Any, ...]], list[StatusEvent], list[Reject]]:
    """Payload -> (gateway_id, batch_id, checked rows in FIELDS order, events, rejected rows).

    A payload that is not a batch at all raises ValueError naming the problem (size and nesting are checked
    before parsing: core/wire_limits.py). A batch with some bad rows still yields its good rows: the bad ones
    come back as rejects, each with its reason, for quarantine. Every row takes the batch's gateway_id.
    """
    lim.precheck(payload)
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON: {lim.clip(str(exc), 200)}") from exc
    if not isinstance(doc, dict) or doc.get("v") != 1:
        raise ValueError("not a shopfloor v1 batch (missing \"v\": 1)")
    gateway_id, batch_id = doc.get("gateway_id"), doc.get("batch_id")
    problem = lim.id_problem(gateway_id, "gateway_id")
    if problem:
        raise ValueError(f"bad batch: {problem}")
    if type(batch_id) is not int or not 0 <= batch_id <= lim.INT64_MAX:
        raise ValueError(f"bad batch: batch_id must be an integer from 0 to 2^63-1, got {lim.clip(repr(batch_id), 40)}")
    raw, raw_events = doc.get("samples"), doc.get("events", [])
    if not isinstance(raw, list) or not isinstance(raw_events, list):
        raise ValueError("bad batch: samples and events must be lists")
    assert isinstance(gateway_id, str)
    ts_max = now_us() + lim.MAX_FUTURE_US
    rows: list[tuple[Any, ...]] = []
    rejects: list[Reject] = []
    for i, r in enumerate(raw):
        try:
            rows.append(check_row(r, ts_max, gateway_id, lim.TS_MIN_US))
        except (TypeError, ValueError, OverflowError) as exc:
            rejects.append((f"bad sample row {i} of batch {gateway_id}/{batch_id}: {exc}", r))
    events: list[StatusEvent] = []
    for i, r in enumerate(raw_events):
        try:
            event = StatusEvent.from_row(r, ts_max, lim.TS_MIN_US)
        except (TypeError, ValueError, OverflowError) as exc:
            rejects.append((f"bad event row {i} of batch {gateway_id}/{batch_id}: {exc}", r))
            continue
        event.gateway_id = gateway_id
        events.append(event)
    return gateway_id, batch_id, rows, events, rejects
