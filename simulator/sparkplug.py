"""Sparkplug B payloads as the simulated edge node sends them, built on the generated protobuf classes.

Written from the Eclipse Sparkplug 3.0 specification (6.4.16 "Datatype details": Int32 in `int_value`,
UInt64 in `long_value`, Double in `double_value`, Boolean in `boolean_value`), independently of the edge
driver's codec, so that the simulator's ground truth does not share code with what it tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core import sparkplug_b_pb2 as pb

NAMESPACE = "spBv1.0"
REBIRTH_METRIC = "Node Control/Rebirth"
# Wire field per datatype name (only the datatypes the simulated machines publish).
_FIELD = {"Int32": "int_value", "UInt64": "long_value", "Double": "double_value", "Boolean": "boolean_value"}


@dataclass(frozen=True)
class SimMetric:
    name: str | None  # None in data messages, which carry only the alias
    value: Any
    datatype: str  # a Sparkplug datatype name: Int32, UInt64, Double, Boolean
    alias: int | None = None
    timestamp_ms: int | None = None


def topic(group_id: str, message_type: str, edge_node_id: str, device_id: str | None = None) -> str:
    """spBv1.0/<group>/<type>/<edge node>[/<device>] (specification 4.1)."""
    return "/".join([NAMESPACE, group_id, message_type, edge_node_id, *([device_id] if device_id else [])])


def payload(metrics: list[SimMetric], seq: int | None, timestamp_ms: int) -> bytes:
    """A serialized org.eclipse.tahu.protobuf.Payload."""
    msg = pb.Payload(timestamp=timestamp_ms)
    if seq is not None:
        msg.seq = seq
    for m in metrics:
        out = msg.metrics.add()
        if m.name is not None:
            out.name = m.name
        if m.alias is not None:
            out.alias = m.alias
        if m.timestamp_ms is not None:
            out.timestamp = m.timestamp_ms
        out.datatype = pb.DataType.Value(m.datatype)
        value = m.value
        if m.datatype == "Int32":
            value = int(value) & 0xFFFFFFFF  # two's complement in the uint32 field
        elif m.datatype == "UInt64":
            value = int(value) & 0xFFFFFFFFFFFFFFFF
        elif m.datatype == "Double":
            value = float(value)
        setattr(out, _FIELD[m.datatype], value)
    return bytes(msg.SerializeToString())


def is_rebirth_request(data: bytes) -> bool:
    """True for an NCMD payload whose Node Control/Rebirth metric is true; False for anything else."""
    msg = pb.Payload()
    try:
        msg.ParseFromString(data)
    except Exception:  # noqa: BLE001 - any unparseable command is simply not a rebirth request
        return False
    return any(m.name == REBIRTH_METRIC and m.boolean_value for m in msg.metrics)
