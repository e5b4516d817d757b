"""Ingest ledger: canonical form, sealing, chain verification, tamper detection, late-data revisions."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from collector.ledger import GENESIS, canonical_line, entry_hash, ledger_entries, seal_hours, verify_chain
from collector.writer import SampleWriter
from core.record import Quality, Sample
from core.times import to_us

H0 = datetime(2024, 3, 1, 8, tzinfo=UTC)


def us(dt: datetime) -> int:
    return to_us(dt)


def test_canonical_line_is_exact() -> None:
    ts = datetime(2024, 3, 1, 16, 0, 0, 5, tzinfo=UTC)
    assert canonical_line(ts, "parts_total", 17.0, None, "good") == "2024-03-01T16:00:00.000005Z|parts_total|17.0||good\n"
    assert canonical_line(ts, "t", 0.1, "a|b\\c\nd", "bad") == "2024-03-01T16:00:00.000005Z|t|0.1|a\\|b\\\\c\\nd|bad\n"
    assert canonical_line(ts, "t", None, None, "uncertain") == "2024-03-01T16:00:00.000005Z|t|||uncertain\n"
    assert canonical_line(ts, "t", 1e16, "", "good") == "2024-03-01T16:00:00.000005Z|t|1e+16||good\n"


def test_canonical_line_converts_any_zone_to_utc() -> None:
    shanghai = datetime(2024, 3, 2, 0, 0, tzinfo=UTC).astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai"))
    assert canonical_line(shanghai, "t", 1.0, None, "good").startswith("2024-03-02T00:00:00.000000Z|")


def test_entry_hash_is_sha256_of_the_documented_string() -> None:
    text = f"{GENESIS}|d|2024-03-01T08:00:00Z|1|2|{'a' * 64}"
    assert entry_hash(GENESIS, "d", H0, 1, 2, "a" * 64) == hashlib.sha256(text.encode()).hexdigest()


def write(url: str, samples: list[Sample]) -> None:
    with SampleWriter(url) as w:
        w.write(samples, [])


@pytest.mark.integration
def test_seal_verify_tamper_and_late_data(db: str) -> None:
    samples = [Sample("d1", tag, us(H0 + timedelta(minutes=m)), float(m), quality=Quality.GOOD)
               for m in range(0, 120, 10) for tag in ("b", "a")]
    samples.append(Sample("d2", "s", us(H0), None, text="idle"))
    write(db, samples)
    with psycopg.connect(db, autocommit=True) as c:
        assert seal_hours(c, H0 + timedelta(hours=1, minutes=30)) == 2  # d1 08:00, d2 08:00; 09:00 not complete
        assert seal_hours(c, H0 + timedelta(hours=2)) == 1  # d1 09:00
        assert seal_hours(c, H0 + timedelta(hours=2)) == 0  # nothing new
        entries = ledger_entries(c, "d1")
        assert [(e.hour, e.revision, e.row_count, e.chain_seq) for e in entries] == [
            (H0, 1, 12, 1), (H0 + timedelta(hours=1), 1, 12, 2)]
        assert entries[0].prev_hash == GENESIS and entries[1].prev_hash == entries[0].entry_hash
        # The stored digest is what a certifier computes from an export ordered by tag, ts.
        export = sorted((s for s in samples if s.device_id == "d1" and s.ts_us < us(H0 + timedelta(hours=1))),
                        key=lambda s: (s.tag, s.ts_us))
        text = "".join(canonical_line(datetime.fromtimestamp(0, UTC) + timedelta(microseconds=s.ts_us), s.tag,
                                      s.value, s.text, str(s.quality)) for s in export)
        assert entries[0].rows_sha256 == hashlib.sha256(text.encode()).hexdigest()
        assert verify_chain(c) == []

        # Late row for the first hour: a new revision appended at the end of the chain.
        write(db, [Sample("d1", "a", us(H0 + timedelta(minutes=5)), 99.0)])
        assert seal_hours(c, H0 + timedelta(hours=2)) == 1
        late = ledger_entries(c, "d1")[-1]
        assert (late.hour, late.revision, late.row_count, late.chain_seq) == (H0, 2, 13, 3)
        assert verify_chain(c) == []

        # Someone edits an old value: verify_chain names the hour.
        c.execute("UPDATE samples SET value = 1000 WHERE device_id = 'd1' AND tag = 'b' AND ts = %s",
                  (H0 + timedelta(minutes=70),))
        problems = verify_chain(c)
        assert len(problems) == 1 and "d1 2024-03-01T09:00:00Z" in problems[0]
        assert verify_chain(c, since=H0 + timedelta(hours=2)) == []  # row checks skipped before `since`

        # Someone rewrites a ledger entry: the chain breaks.
        c.execute("UPDATE ingest_ledger SET row_count = 11 WHERE device_id = 'd1' AND hour = %s AND revision = 1",
                  (H0,))
        assert any("entry altered" in p for p in verify_chain(c, "d1"))
        assert verify_chain(c, "d2") == []
