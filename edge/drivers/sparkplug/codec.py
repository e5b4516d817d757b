"""Sparkplug B payloads and topics, pure: bytes <-> Payload, alias resolution, the datatype table.

Value encoding follows the Sparkplug 3.0 specification (section 6.4.16, "Datatype details"):
Int8/Int16/Int32/UInt8/UInt16 travel in `int_value` (signed ones as two's complement), UInt32/Int64/UInt64/
DateTime in `long_value`, Float/Double/Boolean/String/Text/UUID/Bytes/File in their own fields. Decoding
reads whichever field is set, so a publisher that puts UInt32 in `int_value` is still understood.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError as ProtobufDecodeError

from core import sparkplug_b_pb2 as pb
from core.errors import DecodeError

__all__ = ["DATATYPES", "MESSAGE_TYPES", "NAMESPACE", "REBIRTH_METRIC", "Metric", "Payload", "Topic",
           "birth_aliases", "datatype_id", "decode_payload", "encode_payload", "infer_datatype", "make_topic",
           "parse_topic", "rebirth_request", "resolve_aliases"]

NAMESPACE = "spBv1.0"
MESSAGE_TYPES = frozenset({"NBIRTH", "NDEATH", "DBIRTH", "DDEATH", "NDATA", "DDATA", "NCMD", "DCMD", "STATE"})
REBIRTH_METRIC = "Node Control/Rebirth"

# Datatype id -> name, exactly the spec's DataType enum (0 Unknown ... 34 DateTimeArray).
DATATYPES: dict[int, str] = {v.number: v.name for v in pb.DataType.DESCRIPTOR.values}
_IDS = {name: number for number, name in DATATYPES.items()}

_SIGNED_BITS = {"Int8": 8, "Int16": 16, "Int32": 32, "Int64": 64}
_INT_FIELD = {"Int8", "Int16", "Int32", "UInt8", "UInt16"}
_LONG_FIELD = {"UInt32", "Int64", "UInt64", "DateTime"}
_STRING_FIELD = {"String", "Text", "UUID"}
_BYTES_FIELD = {"Bytes", "File"}


def datatype_id(name: str) -> int:
    """'Int32' -> 3; KeyError for a name that is not in the spec's table."""
    return _IDS[name]


@dataclass(slots=True)
class Metric:
    """One metric as the driver sees it: a plain Python value plus the Sparkplug flags."""

    name: str | None
    value: Any = None
    datatype: int = 0
    alias: int | None = None
    timestamp_ms: int | None = None
    is_historical: bool = False
    is_transient: bool = False
    is_null: bool = False
    quality: int | None = None  # the "Quality" property where a publisher sends one (192 good, 0 bad)

    @property
    def datatype_name(self) -> str:
        return DATATYPES.get(self.datatype, f"#{self.datatype}")


@dataclass(slots=True)
class Payload:
    metrics: list[Metric] = field(default_factory=list)
    timestamp_ms: int | None = None
    seq: int | None = None
    uuid: str | None = None
    body: bytes | None = None


@dataclass(slots=True, frozen=True)
class Topic:
    group_id: str
    message_type: str
    edge_node_id: str
    device_id: str | None = None


def parse_topic(topic: str) -> Topic:
    """'spBv1.0/plant1/DDATA/cell-gw/robot-04' -> Topic; ValueError if it is not a Sparkplug B topic.

    Levels before the namespace are a broker listener's mount_point (Mosquitto 2.0.11 delivers topics with it,
    e.g. gateways/spBv1.0/...) and are skipped.
    """
    at = topic.find("/" + NAMESPACE + "/")
    if at >= 0 and not topic.startswith(NAMESPACE + "/"):
        topic = topic[at + 1:]
    parts = topic.split("/")
    if len(parts) not in (4, 5) or parts[0] != NAMESPACE or parts[2] not in MESSAGE_TYPES:
        raise ValueError(f"not a Sparkplug B topic: {topic!r}")
    return Topic(parts[1], parts[2], parts[3], parts[4] if len(parts) == 5 else None)


def make_topic(group_id: str, message_type: str, edge_node_id: str, device_id: str | None = None) -> str:
    tail = f"/{device_id}" if device_id else ""
    return f"{NAMESPACE}/{group_id}/{message_type}/{edge_node_id}{tail}"


# --------------------------------------------------------------------------------------------- decode


def _signed(raw: int, bits: int) -> int:
    raw &= (1 << bits) - 1
    return raw - (1 << bits) if raw >> (bits - 1) else raw


def _metric_value(m: Any, dtype: str) -> Any:
    which = m.WhichOneof("value")
    if which is None or which in ("dataset_value", "template_value", "extension_value"):
        return None  # complex types are not mapped to tags (yet): the driver reports them as unsupported
    raw = getattr(m, which)
    if which in ("int_value", "long_value") and dtype in _SIGNED_BITS:
        return _signed(raw, _SIGNED_BITS[dtype])
    if which == "bytes_value":
        return bytes(raw)
    return raw


def _quality(props: Any) -> int | None:
    for key, val in zip(props.keys, props.values, strict=False):
        if key == "Quality" and val.WhichOneof("value") in ("int_value", "long_value"):
            return int(getattr(val, val.WhichOneof("value")))
    return None


def decode_payload(data: bytes) -> Payload:
    """Protobuf bytes -> Payload; DecodeError (never a protobuf exception) if the bytes are not a payload."""
    msg = pb.Payload()
    try:
        msg.ParseFromString(data)
    except (ProtobufDecodeError, RuntimeError, ValueError) as exc:
        raise DecodeError(f"not a Sparkplug B payload: {exc}") from exc
    metrics = []
    for m in msg.metrics:
        dtype = DATATYPES.get(m.datatype, "Unknown")
        metrics.append(Metric(
            name=m.name if m.HasField("name") else None,
            value=None if m.is_null else _metric_value(m, dtype),
            datatype=m.datatype,
            alias=m.alias if m.HasField("alias") else None,
            timestamp_ms=m.timestamp if m.HasField("timestamp") else None,
            is_historical=m.is_historical, is_transient=m.is_transient, is_null=m.is_null,
            quality=_quality(m.properties) if m.HasField("properties") else None))
    return Payload(metrics,
                   timestamp_ms=msg.timestamp if msg.HasField("timestamp") else None,
                   seq=msg.seq if msg.HasField("seq") else None,
                   uuid=msg.uuid if msg.HasField("uuid") else None,
                   body=msg.body if msg.HasField("body") else None)


def birth_aliases(payload: Payload) -> dict[int, str]:
    """alias -> name from a birth certificate (NBIRTH or DBIRTH)."""
    return {m.alias: m.name for m in payload.metrics if m.alias is not None and m.name}


def resolve_aliases(payload: Payload, aliases: dict[int, str]) -> list[int]:
    """Fill in names of alias-only metrics from a birth's map; return the aliases no birth defined."""
    unknown = []
    for m in payload.metrics:
        if m.name is None and m.alias is not None:
            name = aliases.get(m.alias)
            if name is None:
                unknown.append(m.alias)
            m.name = name
    return unknown


# --------------------------------------------------------------------------------------------- encode


def infer_datatype(value: Any) -> int:
    """The natural Sparkplug datatype for a Python value (bool before int: bool is an int)."""
    if isinstance(value, bool):
        return _IDS["Boolean"]
    if isinstance(value, int):
        return _IDS["Int64"]
    if isinstance(value, float):
        return _IDS["Double"]
    if isinstance(value, str):
        return _IDS["String"]
    if isinstance(value, bytes | bytearray):
        return _IDS["Bytes"]
    raise TypeError(f"no Sparkplug datatype for {type(value).__name__}")


def _set_value(out: Any, dtype: str, value: Any) -> None:
    if dtype in _INT_FIELD:
        out.int_value = int(value) & 0xFFFFFFFF
    elif dtype in _LONG_FIELD:
        out.long_value = int(value) & 0xFFFFFFFFFFFFFFFF
    elif dtype == "Float":
        out.float_value = float(value)
    elif dtype == "Double":
        out.double_value = float(value)
    elif dtype == "Boolean":
        out.boolean_value = bool(value)
    elif dtype in _STRING_FIELD:
        out.string_value = str(value)
    elif dtype in _BYTES_FIELD:
        out.bytes_value = bytes(value)
    else:
        raise ValueError(f"encoding {dtype} values is not supported")


def encode_payload(metrics: Iterable[Metric], *, seq: int | None = None, timestamp_ms: int | None = None,
                   uuid: str | None = None, body: bytes | None = None) -> bytes:
    """Payload bytes; a metric with datatype 0 gets one inferred from its value."""
    msg = pb.Payload()
    if timestamp_ms is not None:
        msg.timestamp = timestamp_ms
    if seq is not None:
        msg.seq = seq
    if uuid is not None:
        msg.uuid = uuid
    if body is not None:
        msg.body = body
    for m in metrics:
        out = msg.metrics.add()
        if m.name is not None:
            out.name = m.name
        if m.alias is not None:
            out.alias = m.alias
        if m.timestamp_ms is not None:
            out.timestamp = m.timestamp_ms
        dtype = m.datatype or infer_datatype(m.value)
        out.datatype = dtype
        if m.is_historical:
            out.is_historical = True
        if m.is_transient:
            out.is_transient = True
        if m.is_null or m.value is None:
            out.is_null = True
        else:
            _set_value(out, DATATYPES[dtype], m.value)
        if m.quality is not None:
            out.properties.keys.append("Quality")
            out.properties.values.add(type=_IDS["Int32"], int_value=m.quality)
    return bytes(msg.SerializeToString())


def rebirth_request(timestamp_ms: int) -> bytes:
    """The NCMD payload that asks an edge node to send its births again."""
    return encode_payload([Metric(REBIRTH_METRIC, True, _IDS["Boolean"])], timestamp_ms=timestamp_ms)
