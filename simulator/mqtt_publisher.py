"""Simulated machines publishing over MQTT: plain JSON telemetry, or a Sparkplug B edge node.

The caller owns time: it calls machine.advance_to(now) for every machine, then publish(). paho's network
loop runs in its own thread; a Rebirth NCMD is answered from that thread, so sequence numbers are guarded.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from core.times import now_us
from simulator.machine import STATE_CODES, Machine
from simulator.sparkplug import SimMetric, is_rebirth_request, payload, topic

__all__ = ["TAGS", "MqttMachinePublisher", "device_config", "signals_config"]

Mode = Literal["json", "sparkplug"]
TAGS = ("status", "parts_total", "parts_scrap", "energy_total", "power_kw")
# Sparkplug datatypes of the machine's values (counts are unsigned and may be 64-bit counters).
_DATATYPES = {"status": "Int32", "parts_total": "UInt64", "parts_scrap": "UInt64", "energy_total": "Double",
              "power_kw": "Double"}


def json_topic(machine_id: str) -> str:
    return f"plant/sim/{machine_id}/telemetry"


class MqttMachinePublisher:
    """Publishes each machine's values(); in sparkplug mode one edge node with a device per machine."""

    def __init__(self, machines: list[Machine], host: str, port: int, mode: Mode = "json",
                 group_id: str = "plant1", edge_node_id: str = "sim-node") -> None:
        if mode not in ("json", "sparkplug"):
            raise ValueError(f"mode must be 'json' or 'sparkplug', got {mode!r}")
        self.machines = machines
        self.host, self.port, self.mode = host, port, mode
        self.group_id, self.edge_node_id = group_id, edge_node_id
        self.births_sent = 0  # NBIRTHs so far (1 after start, +1 per answered rebirth)
        self._lock = threading.Lock()
        self._seq = 0
        self._bd_seq = 0
        self._connected = threading.Event()
        # Aliases are unique across the node: 1, 2, ... over machines x tags, in order.
        self._aliases = {(m.spec.id, tag): i for i, (m, tag) in
                         enumerate(((m, t) for m in machines for t in TAGS), start=1)}
        self._client: mqtt.Client | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout_s: float = 5.0) -> None:
        """Connect (and, for Sparkplug, send NBIRTH and every DBIRTH); raise ConnectionError on failure."""
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{self.edge_node_id}-{uuid.uuid4().hex[:8]}",
                             protocol=mqtt.MQTTv311)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        if self.mode == "sparkplug":
            death = payload([SimMetric("bdSeq", self._bd_seq, "UInt64")], None, now_us() // 1000)
            client.will_set(topic(self.group_id, "NDEATH", self.edge_node_id), death, qos=1)
        self._client = client
        client.connect(self.host, self.port, keepalive=10)
        client.loop_start()
        if not self._connected.wait(timeout_s):
            self.stop()
            raise ConnectionError(f"simulated MQTT publisher could not connect to {self.host}:{self.port}")

    def stop(self) -> None:
        """Disconnect cleanly (a Sparkplug node sends its NDEATH first, as a clean disconnect drops the will)."""
        client, self._client = self._client, None
        if client is None:
            return
        if self.mode == "sparkplug" and self._connected.is_set():
            death = payload([SimMetric("bdSeq", self._bd_seq, "UInt64")], None, now_us() // 1000)
            client.publish(topic(self.group_id, "NDEATH", self.edge_node_id), death, qos=1).wait_for_publish(2)
        self._connected.clear()
        self._bd_seq = (self._bd_seq + 1) % 256  # the next session's birth/death pair
        client.disconnect()
        client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any) -> None:
        if reason_code.is_failure:
            return
        if self.mode == "sparkplug":
            client.subscribe(topic(self.group_id, "NCMD", self.edge_node_id), qos=0)
            self._births()
        self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if is_rebirth_request(bytes(msg.payload)):
            self._births()

    # ------------------------------------------------------------------ publishing
    def publish(self) -> None:
        """Publish every machine's current values (call after advancing the machines)."""
        if self._client is None:
            raise RuntimeError("publisher not started")
        for m in self.machines:
            values = m.values()
            ts_ms = m.t_us // 1000
            if self.mode == "json":
                doc = {"ts": ts_ms, **{k: values[k] for k in TAGS}}
                self._client.publish(json_topic(m.spec.id), json.dumps(doc), qos=1)
            else:
                metrics = [SimMetric(None, values[k], _DATATYPES[k], self._aliases[(m.spec.id, k)], ts_ms)
                           for k in TAGS]
                self._send("DDATA", metrics, ts_ms, device_id=m.spec.id)

    def _send(self, kind: str, metrics: list[SimMetric], ts_ms: int, device_id: str | None = None) -> None:
        client = self._client
        if client is not None:
            with self._lock:  # the sequence and the order on the wire must agree
                self._publish_seq(client, kind, metrics, ts_ms, device_id)

    def _births(self) -> None:
        """NBIRTH (seq 0) and every DBIRTH back to back, with names, aliases and current values."""
        client = self._client
        if client is None:
            return
        ts_ms = now_us() // 1000
        node = [SimMetric("bdSeq", self._bd_seq, "UInt64"), SimMetric("Node Control/Rebirth", False, "Boolean")]
        with self._lock:
            self._seq = 0
            self._publish_seq(client, "NBIRTH", node, ts_ms, None)
            for m in self.machines:
                values = m.values()
                metrics = [SimMetric(k, values[k], _DATATYPES[k], self._aliases[(m.spec.id, k)], ts_ms) for k in TAGS]
                self._publish_seq(client, "DBIRTH", metrics, ts_ms, m.spec.id)
            self.births_sent += 1

    def _publish_seq(self, client: mqtt.Client, kind: str, metrics: list[SimMetric], ts_ms: int,
                     device_id: str | None) -> None:
        seq = self._seq
        self._seq = (self._seq + 1) % 256
        client.publish(topic(self.group_id, kind, self.edge_node_id, device_id), payload(metrics, seq, ts_ms), qos=0)


# ---------------------------------------------------------------------------------------------- plant config


def device_config(machine_ids: list[str], host: str, port: int, mode: Mode, group_id: str = "plant1",
                  edge_node_id: str = "sim-node") -> list[dict[str, Any]]:
    """`devices:` entries (plain dicts, as in the YAML) that read what MqttMachinePublisher publishes."""
    endpoint = f"mqtt://{host}:{port}"
    if mode == "json":
        return [{"id": f"{mid}-mqtt", "protocol": "mqtt", "endpoint": endpoint,
                 "tags": [{"name": t, "topic": json_topic(mid), "json_path": f"$.{t}", "timestamp_path": "$.ts"}
                          for t in TAGS]} for mid in machine_ids]
    if mode == "sparkplug":
        return [{"id": f"{mid}-spb", "protocol": "sparkplug", "endpoint": endpoint, "group_id": group_id,
                 "edge_node_id": edge_node_id, "device_id": mid,
                 "tags": [{"name": t, "metric": t} for t in TAGS]} for mid in machine_ids]
    raise ValueError(f"mode must be 'json' or 'sparkplug', got {mode!r}")


def signals_config() -> dict[str, Any]:
    """An asset's `signals:` for a simulated machine read through device_config()."""
    return {"state": {"tag": "status", "map": {code: state for state, code in STATE_CODES.items()}},
            "total_count": {"tag": "parts_total"},
            "scrap_count": {"tag": "parts_scrap"},
            "energy_kwh": {"tag": "energy_total"}}
