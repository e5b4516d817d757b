"""Fault and security suite for the centre: hostile payloads on a running collector (real broker, real
PostgreSQL) are quarantined with their reason while good data keeps flowing, and no gateway speaks for another."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collector.ingest import Collector
from collector.writer import SampleWriter
from core.record import Batch, Sample, StatusEvent

pytestmark = pytest.mark.integration

T0 = 1_750_000_000_000_000  # 2025-06-15T15:06:40Z
OWNERS = {"press-a": "gw-a"}  # from a plant file: press-a is read by gateway gw-a only


def row(device: str = "d1", tag: str = "t", ts: int = T0, value: Any = 1.0) -> list[Any]:
    return [device, tag, ts, value, None, "good", 0, None, False, "", 0, 0]


def payload(gateway: str, batch_id: Any, samples: list[Any] | str = "[]", events: list[Any] | str = "[]") -> bytes:
    """A batch written by hand, so that anything a hostile sender could put in it can be put in it."""
    def part(x: list[Any] | str) -> str:
        return x if isinstance(x, str) else json.dumps(x)

    return (f'{{"v":1,"gateway_id":{json.dumps(gateway)},"batch_id":{batch_id},'
            f'"samples":{part(samples)},"events":{part(events)}}}').encode()


class Centre:
    """A running collector, a publisher that may publish anything, and the database to look at."""

    def __init__(self, db: str, broker: tuple[str, int]) -> None:
        self.db = db
        self.stop = threading.Event()
        self.collector = Collector(db, f"mqtt://{broker[0]}:{broker[1]}", share_group=f"g{uuid.uuid4().hex[:6]}",
                                   client_id=f"col-{uuid.uuid4().hex[:8]}", owners=OWNERS)
        self.thread = threading.Thread(target=self.collector.run, args=(self.stop,), daemon=True)
        self.thread.start()
        assert self.collector.connected.wait(10), "collector did not connect to the broker"
        self.acks: list[tuple[str, bytes]] = []
        self.pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.pub.on_message = lambda c, u, m: self.acks.append((m.topic, bytes(m.payload)))
        self.pub.connect(*broker)
        self.pub.loop_start()
        self.pub.subscribe("shopfloor/v1/+/ack", qos=1)
        self.good_seq = 0

    def send(self, gateway: str, body: bytes) -> None:
        self.pub.publish(f"shopfloor/v1/{gateway}/samples", body, qos=1).wait_for_publish(5)

    def send_good(self, gateway: str = "gw-good") -> int:
        """A well-formed batch with one new sample; returns its time stamp."""
        self.good_seq += 1
        ts = T0 + 3_600_000_000 + self.good_seq
        self.send(gateway, Batch(gateway, 10_000 + self.good_seq, [Sample("good-dev", "t", ts, 1.0)]).encode())
        return ts

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db) as conn:
            return conn.execute(sql, args).fetchall()

    def wait(self, cond: Callable[[], bool], timeout_s: float = 10) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if cond():
                return True
            time.sleep(0.05)
        return False

    def stored(self, device: str, ts: int) -> bool:
        return bool(self.query("SELECT 1 FROM samples WHERE device_id = %s AND ts = to_timestamp(%s::float8 / 1e6)",
                               device, ts))

    def reasons(self) -> list[str]:
        return [r[0] for r in self.query("SELECT reason FROM quarantine ORDER BY id")]

    def close(self) -> None:
        self.pub.loop_stop()
        self.pub.disconnect()
        self.stop.set()
        self.thread.join(10)


@pytest.fixture
def centre(db: str, broker: tuple[str, int]) -> Iterator[Centre]:
    c = Centre(db, broker)
    yield c
    c.close()


DEEP = "[" * 100_000 + "]" * 100_000
HOSTILE: list[tuple[str, str, bytes, str]] = [
    # (case, topic gateway, payload, what the quarantine reason says)
    ("integer 1e400 as value", "gw-h", payload("gw-h", 1, [row(value=10**400)]), "outside the double precision range"),
    ("batch_id Infinity", "gw-h", payload("gw-h", "Infinity"), "batch_id must be an integer"),
    ("nested 100,000 deep inside samples", "gw-h", payload("gw-h", 2, f"[{DEEP}]"), "nested deeper"),
    ("nested 100,000 deep outside samples", "gw-h", DEEP.encode(), "nested deeper"),
    ("event timestamp 1e20", "gw-h", payload("gw-h", 3, events=[["d1", 10**20, "connected", "", "gw-h"]]),
     "ts_us must be"),
    ("gateway_id with NUL and a bad row", "gw-h", payload("gw\x00h", 4, [["d1"]]), "gateway_id"),
    ("gateway_id with +", "gw-h", payload("gw+h", 5), "not allowed in an MQTT topic level"),
    ("gateway_id with /", "gw-h", payload("gw/h", 6), "not allowed in an MQTT topic level"),
    ("gateway_id with #", "gw-h", payload("gw#", 7), "not allowed in an MQTT topic level"),
    ("gateway_id of 70,000 characters", "gw-h", payload("g" * 70_000, 8), "70000 characters long"),
    ("10 kB device_id", "gw-h", payload("gw-h", 9, [row(device="d" * 10_240)]), "longer than 256"),
    ("10 kB tag", "gw-h", payload("gw-h", 10, [row(tag="t" * 10_240)]), "longer than 256"),
    ("sample time 1e20", "gw-h", payload("gw-h", 11, [row(ts=10**20)]), "ts_us must be"),
    ("huge status integer", "gw-h", payload("gw-h", 12, [[*row()[:6], 10**30, *row()[7:]]]), "out of range"),
    ("NUL in a device_id and a text", "gw-h", payload("gw-h", 13, [row(device="d\x00x"), [*row()[:4], "a\x00b",
                                                                                      *row()[5:]]]), "0x00"),
]


def test_each_hostile_payload_is_quarantined_with_its_reason_and_good_batches_keep_flowing(centre: Centre) -> None:
    for case, gateway, body, reason in HOSTILE:
        before = len(centre.reasons())
        centre.send(gateway, body)
        ts = centre.send_good()
        assert centre.wait(lambda ts=ts: centre.stored("good-dev", ts)), f"{case}: the good batch after it was not stored"
        new = centre.reasons()[before:]
        assert any(reason in r for r in new), f"{case}: quarantine reasons {new!r} lack {reason!r}"
        assert centre.thread.is_alive(), f"{case}: the collector stopped"
    assert not centre.stored("d1", T0), "a row of a hostile payload was stored"
    # the gateway ids that cannot be topics got no ack (nor did the publish of one raise), gw-good got every one
    ack_topics = {t for t, _ in centre.acks}
    assert ack_topics <= {"shopfloor/v1/gw-good/ack", "shopfloor/v1/gw-h/ack"}, ack_topics
    assert centre.query("SELECT count(*) FROM quarantine WHERE payload IS NULL") == [(0,)]


def test_nan_is_a_bad_quality_sample_and_a_conflicting_duplicate_is_counted_and_quarantined(centre: Centre) -> None:
    centre.send("gw-h", payload("gw-h", 1, [row("d2", "nan", T0, float("nan")), row("d2", "inf", T0, float("-inf")),
                                            row("d2", "x", T0, 5.0)]))
    assert centre.wait(lambda: centre.stored("d2", T0))
    rows = centre.query("SELECT tag, value, value_text, quality FROM samples WHERE device_id = 'd2' ORDER BY tag")
    assert rows == [("inf", None, "value was -inf", "bad"), ("nan", None, "value was nan", "bad"),
                    ("x", 5.0, None, "good")]
    centre.send("gw-h", payload("gw-h", 2, [row("d2", "x", T0, 6.0), row("d2", "y", T0, 1.0),
                                            row("d2", "y", T0, 2.0)]))
    assert centre.wait(lambda: centre.collector.stats.conflicting_duplicates == 2)
    assert centre.query("SELECT tag, value FROM samples WHERE device_id = 'd2' AND tag IN ('x', 'y') ORDER BY tag") \
        == [("x", 5.0), ("y", 1.0)], "the first value of each (device, tag, ts) is kept"
    quarantined = {json.loads(p)["refused"]["value"]: r for r, p in
                   centre.query("SELECT reason, convert_from(payload, 'UTF8') FROM quarantine")}
    assert set(quarantined) == {6.0, 2.0}
    assert "value 5.0 already stored is kept" in quarantined[6.0]
    assert "value 1.0 earlier in the batch is kept" in quarantined[2.0]
    centre.send("gw-h", payload("gw-h", 3, [row("d2", "x", T0, 5.0)]))  # an exact replay is no conflict
    assert centre.wait(lambda: centre.collector.stats.duplicates >= 3)
    assert centre.collector.stats.conflicting_duplicates == 2


def test_spoofed_gateway_and_foreign_device_rows_are_quarantined_and_no_ack_goes_to_the_victim(
        centre: Centre) -> None:
    centre.send("gw-b", payload("gw-a", 1, [row("press-a", "t", T0 + 10**12)]))  # gw-b claims to be gw-a
    centre.send("gw-b", payload("gw-b", 2, [row("press-a", "t", T0 + 1), row("press-b", "t", T0 + 1)],
                                [["press-a", T0, "disconnected", "forged", "gw-b"]]))
    assert centre.wait(lambda: centre.stored("press-b", T0 + 1))
    assert centre.wait(lambda: len(centre.reasons()) == 3)
    reasons = centre.reasons()
    assert "disagrees with the topic's gateway 'gw-b'" in reasons[0]
    assert all("belongs to gateway 'gw-a'" in r for r in reasons[1:])
    assert not centre.stored("press-a", T0 + 10**12) and not centre.stored("press-a", T0 + 1)
    assert centre.query("SELECT count(*) FROM device_status") == [(0,)]
    assert not any(t == "shopfloor/v1/gw-a/ack" for t, _ in centre.acks), "an ack went to the victim"
    centre.send("gw-a", payload("gw-a", 3, [row("press-a", "t", T0 + 2)]))  # the owner itself is welcome
    assert centre.wait(lambda: centre.stored("press-a", T0 + 2))


def test_a_database_refused_row_is_quarantined_not_retried(db: str) -> None:
    """PostgreSQL refuses a 10 kB key in the unique index (SQLSTATE 54000): that row can never go in, so it is
    quarantined and the rest of the batch is stored; nothing is classed as 'database unavailable'."""
    rows = [Sample("ok", "t", T0 + i, float(i)) for i in range(3)]
    rows.insert(1, Sample(secrets.token_hex(5120), "t", T0, 1.0))  # random: index tuples are compressed
    with SampleWriter(db) as w:
        result = w.write(rows, [StatusEvent("ok", T0, "connected")])
    assert (result.inserted, result.rejected) == (3, 1)
    with psycopg.connect(db) as conn:
        (reason,) = conn.execute("SELECT reason FROM quarantine").fetchone()  # type: ignore[misc]
    assert "index row" in reason


def test_a_10kb_device_id_does_not_stall_other_gateways(centre: Centre) -> None:
    for i in range(5):
        centre.send("gw-x", payload("gw-x", 100 + i, [row(device="d" * 10_240, ts=T0 + i)]))
        centre.send("gw-y", Batch("gw-y", 200 + i, [Sample("dev-y", "t", T0 + i, float(i))]).encode())
    assert centre.wait(lambda: all(centre.stored("dev-y", T0 + i) for i in range(5)), 10)
    assert centre.collector.stats.db_retries == 0


def test_the_edge_ignores_acks_for_batches_it_did_not_send(broker: tuple[str, int], tmp_path: Path) -> None:
    """A forged ack (guessable batch ids, wrong or missing digest) deletes nothing from the gateway's buffer."""
    from edge.buffer import StoreAndForward
    from edge.uplink import Forwarder, MqttSink

    async def main() -> tuple[int, int, int]:
        sink = MqttSink(f"mqtt://{broker[0]}:{broker[1]}", f"gw-v{uuid.uuid4().hex[:6]}")
        buffer = StoreAndForward(tmp_path / "victim.sqlite", sink.gateway_id)
        forwarder = Forwarder(buffer, sink, batch_max_samples=10)
        for k in range(3):  # one chunk each: three batches in flight
            buffer.add([Sample("dv", "t", T0 + 10 * k + i, float(i)) for i in range(10)], [])
        stop = asyncio.Event()
        task = asyncio.create_task(forwarder.run(stop))
        end = time.monotonic() + 10
        while forwarder.sent_batches < 3 and time.monotonic() < end:
            await asyncio.sleep(0.05)
        ids = sorted(forwarder._in_flight)
        forger = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        forger.connect(*broker)
        forger.loop_start()
        for body in ({"batch_ids": ids}, {"batch_ids": ids, "digests": ["0" * 32] * len(ids)}):
            forger.publish(sink.ack_topic, json.dumps(body), qos=1).wait_for_publish(5)
        await asyncio.sleep(1.0)
        forger.loop_stop()
        forger.disconnect()
        stop.set()
        await task
        queued = buffer.queued_samples
        buffer.close()
        return len(ids), sink.forged_acks, queued

    sent, forged, queued = asyncio.run(main())
    assert sent == 3
    assert forged == 3, "the acks with a wrong digest are counted as forged"
    assert queued == 30, "a forged ack deleted buffered samples"


def test_a_batch_forged_under_the_victims_id_is_acked_but_the_victim_keeps_its_samples(
        centre: Centre, broker: tuple[str, int], tmp_path: Path) -> None:
    """Worst case past the broker ACL (this test broker has none): an attacker publishes on the victim's topic,
    with the victim's gateway id and the victim's in-flight batch ids. The collector stores and acks that batch;
    the ack's digest is of the attacker's payload, so the victim deletes nothing it has not delivered."""
    from edge.buffer import StoreAndForward
    from edge.uplink import Forwarder, MqttSink

    victim = f"gw-v{uuid.uuid4().hex[:6]}"

    async def main() -> tuple[list[int], int, int]:
        sink = MqttSink(f"mqtt://{broker[0]}:{broker[1]}", victim)
        buffer = StoreAndForward(tmp_path / "victim.sqlite", victim)
        forwarder = Forwarder(buffer, sink, batch_max_samples=10)
        for k in range(3):
            buffer.add([Sample("dv", "t", T0 + 10 * k + i, float(i)) for i in range(10)], [])
        real_publish = sink.client.publish
        sink.client.publish = lambda *a, **k: type("Info", (), {"rc": mqtt.MQTT_ERR_SUCCESS})()  # link drops them
        stop = asyncio.Event()
        task = asyncio.create_task(forwarder.run(stop))
        end = time.monotonic() + 10
        while forwarder.sent_batches < 3 and time.monotonic() < end:
            await asyncio.sleep(0.05)
        ids = sorted(forwarder._in_flight)
        for bid in ids:
            centre.send(victim, payload(victim, bid, [row("dv", "t", T0 + 10**9 + bid % 1000, 666.0)]))
        acked = centre.wait(lambda: sum(len(json.loads(p)["batch_ids"]) for t, p in centre.acks
                                        if t.endswith(f"/{victim}/ack")) >= 3)
        await asyncio.sleep(0.5)
        sink.client.publish = real_publish
        stop.set()
        await task
        queued = buffer.queued_samples
        buffer.close()
        assert acked, "the collector did not ack the forged batches (the test needs it to)"
        return ids, sink.forged_acks, queued

    ids, forged, queued = asyncio.run(main())
    assert len(ids) == 3 and forged == 3
    assert queued == 30, "the victim's unsent samples were deleted by an ack for a batch it never delivered"


def test_an_unforeseen_error_quarantines_that_payload_and_the_collector_carries_on(centre: Centre) -> None:
    """Should decoding or writing ever raise something nobody planned for, the message that caused it is
    quarantined (found by processing the group one by one) and ingest goes on."""
    decode = centre.collector.processor.decode

    def flaky(topic: str, body: bytes, bad: list[tuple[str, str, bytes]]) -> Any:
        if b"boom" in body:
            raise RuntimeError("a bug nobody foresaw")
        return decode(topic, body, bad)

    centre.collector.processor.decode = flaky  # type: ignore[method-assign]
    centre.send("gw-h", payload("gw-h", 1, [row("boom", "t", T0)]))
    ts = centre.send_good()
    assert centre.wait(lambda: centre.stored("good-dev", ts))
    assert centre.wait(lambda: any("internal error while ingesting: RuntimeError" in r for r in centre.reasons()))
    assert centre.thread.is_alive()
