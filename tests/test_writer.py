"""SampleWriter: binary COPY, idempotent replay, events, quarantine, transient errors."""

from __future__ import annotations

import psycopg
import pytest

from collector.errors import TransientDbError, is_transient
from collector.writer import SampleWriter, ts_from_us
from core.record import Quality, Sample, StatusEvent

pytestmark = pytest.mark.integration

T0 = 1_709_280_000_000_000  # 2024-03-01T08:00:00Z in microseconds


def batch(n: int, start: int = 0, device: str = "press-01-plc") -> list[Sample]:
    return [Sample(device, "parts_total", T0 + i * 1000, float(i), gateway_id="gw-1", boot_epoch=3, seq=i)
            for i in range(start, start + n)]


def count(url: str, sql: str = "SELECT count(*) FROM samples") -> int:
    with psycopg.connect(url) as c:
        row = c.execute(sql).fetchone()
        assert row is not None
        return int(row[0])


def test_write_stores_every_field_with_exact_microseconds(db: str) -> None:
    s = Sample("d", "temp", T0 + 7, 21.5, text="ok", quality=Quality.UNCERTAIN, status=0x40920000,
               server_ts_us=T0 + 9, historical=True, gateway_id="gw", boot_epoch=2, seq=41)
    with SampleWriter(db) as w:
        assert w.write([s], []).inserted == 1
    with psycopg.connect(db) as c:
        row = c.execute("""SELECT ts, device_id, tag, value, value_text, quality, status_code, server_ts,
                                  historical, gateway_id, boot_epoch, seq FROM samples""").fetchone()
    assert row == (ts_from_us(T0 + 7), "d", "temp", 21.5, "ok", "uncertain", 0x40920000, ts_from_us(T0 + 9),
                   True, "gw", 2, 41)


def test_replayed_batch_adds_no_rows_and_counts_duplicates(db: str) -> None:
    with SampleWriter(db) as w:
        first = w.write(batch(100), [])
        again = w.write(batch(100), [])
    assert (first.inserted, first.duplicates) == (100, 0)
    assert (again.inserted, again.duplicates) == (0, 100)
    assert count(db) == 100


def test_mixed_new_and_replayed_rows_insert_only_the_new_ones(db: str) -> None:
    with SampleWriter(db) as w:
        w.write(batch(50), [])
        mixed = w.write(batch(50, start=25), [])  # 25 replayed, 25 new
        inside = w.write(batch(5, start=200) + batch(5, start=200), [])  # duplicates inside one batch
    assert (mixed.inserted, mixed.duplicates) == (25, 25)
    assert (inside.inserted, inside.duplicates) == (5, 5)
    assert count(db) == 80


def test_status_events_are_written_once(db: str) -> None:
    events = [StatusEvent("d", T0, "connected", "", "gw"), StatusEvent("d", T0 + 10, "disconnected", "timeout", "gw")]
    with SampleWriter(db) as w:
        w.write([], events)
        w.write(batch(3), events)  # replayed events with new samples: same transaction, no error
    with psycopg.connect(db) as c:
        rows = c.execute("SELECT device_id, state, reason FROM device_status ORDER BY ts").fetchall()
    assert rows == [("d", "connected", ""), ("d", "disconnected", "timeout")]
    assert count(db) == 3


def test_poison_rows_go_to_quarantine_and_the_rest_is_stored(db: str) -> None:
    bad_text = Sample("d", "name", T0, None, text="nul\x00byte")
    bad_time = Sample("d", "x", 10**19, 1.0)  # beyond year 9999
    with SampleWriter(db) as w:
        result = w.write([*batch(10), bad_text, bad_time], [])
        w.quarantine("shopfloor/v1/gw/samples", "not JSON", b"\xff\xfe")
    assert (result.inserted, result.duplicates, result.rejected) == (10, 0, 2)
    assert count(db) == 10
    with psycopg.connect(db) as c:
        reasons = [r[0] for r in c.execute("SELECT reason FROM quarantine ORDER BY id")]
        payload = c.execute("SELECT payload FROM quarantine WHERE source LIKE 'shopfloor/%'").fetchone()
    assert len(reasons) == 3 and "not JSON" in reasons
    assert payload == (b"\xff\xfe",)


def test_ten_thousand_rows_in_one_write(db: str) -> None:
    with SampleWriter(db) as w:
        assert w.write(batch(10_000), []).inserted == 10_000
        assert w.write(batch(10_000), []).duplicates == 10_000
    assert count(db) == 10_000


@pytest.mark.plain_only
def test_lost_connection_raises_transient_and_the_next_write_reconnects(db: str) -> None:
    w = SampleWriter(db)
    w.write(batch(1), [])
    with psycopg.connect(db, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    with pytest.raises(TransientDbError):
        w.write(batch(1, start=1), [])
    assert w.write(batch(1, start=1), []).inserted == 1
    w.close()
    assert count(db) == 2


def test_unreachable_database_is_transient() -> None:
    with pytest.raises(TransientDbError):
        SampleWriter("postgresql://postgres@127.0.0.1:1/none", connect_timeout_s=2).write(batch(1), [])


def test_only_errors_a_retry_can_cure_are_transient() -> None:
    assert is_transient(psycopg.errors.SerializationFailure())
    assert is_transient(psycopg.errors.AdminShutdown())
    assert not is_transient(psycopg.errors.UniqueViolation())
    assert not is_transient(psycopg.errors.ProgramLimitExceeded()), "54000 is an OperationalError, but about the row"
    assert not is_transient(psycopg.errors.QueryCanceled()), "a statement timeout would time out again"
    assert is_transient(psycopg.errors.DiskFull()) and is_transient(psycopg.OperationalError("connection lost"))
