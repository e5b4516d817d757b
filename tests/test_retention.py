"""Retention keeps exactly the rows newer than the cutoff, on both paths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from collector.retention import enforce_retention

pytestmark = pytest.mark.integration

NOW = datetime(2024, 6, 30, 12, tzinfo=UTC)


def test_old_rows_are_removed_and_new_rows_untouched(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as c:
        # One row per 6 h over 20 days, so old rows fill whole chunks and one chunk straddles the cutoff.
        c.execute("""INSERT INTO samples (ts, device_id, tag, value)
                     SELECT %s - make_interval(hours => 6 * g), 'd', 't', g FROM generate_series(0, 79) g""", (NOW,))
        c.execute("""INSERT INTO device_status (ts, device_id, state)
                     SELECT %s - make_interval(days => g), 'd', 'connected' FROM generate_series(0, 19) g""", (NOW,))
        report = enforce_retention(c, 7, now=NOW)
        cutoff = NOW - timedelta(days=7)
        kept = c.execute("SELECT count(*), min(ts) FROM samples").fetchone()
        status = c.execute("SELECT count(*), min(ts) FROM device_status").fetchone()
        again = enforce_retention(c, 7, now=NOW)
    assert kept == (29, cutoff)  # 7 days of 4 rows plus the one exactly at the cutoff
    assert status == (8, cutoff)
    assert again["tables"]["samples"]["rows_deleted"] == 0
    if report["path"] == "timescaledb":
        assert report["tables"]["samples"]["chunks_dropped"] >= 10
        assert "policy" not in report["tables"]["samples"]  # Apache edition: no policy jobs
    else:
        assert report["tables"]["samples"]["rows_deleted"] == 51


def test_retention_refuses_less_than_a_day() -> None:
    with pytest.raises(ValueError):
        enforce_retention(None, 0)  # type: ignore[arg-type]  # refused before any query
