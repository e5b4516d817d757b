"""Reads of the raw tables for the API and exports: the SQL lives here, with the stage that owns the tables.

Each query comes as (sql, params) so that sync callers (exports) and async callers (the API's pool) run the
same statement; rows come in time order and are meant to be streamed (server-side cursor), never loaded whole.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

SAMPLE_COLUMNS = ("ts", "device_id", "tag", "value", "value_text", "quality")
STATUS_COLUMNS = ("ts", "device_id", "state", "reason", "gateway_id")


def samples_query(devices: list[str], start: datetime, end: datetime,
                  tag: str | None = None) -> tuple[str, tuple[Any, ...]]:
    """Samples of these devices (and one tag, if given) with ts in [start, end), ordered by device, tag, ts."""
    return (f"""SELECT {", ".join(SAMPLE_COLUMNS)} FROM samples
                WHERE device_id = ANY(%s) AND ts >= %s AND ts < %s AND (%s::text IS NULL OR tag = %s)
                ORDER BY device_id, tag COLLATE "C", ts""", (devices, start, end, tag, tag))


def device_status_query(devices: list[str], start: datetime, end: datetime) -> tuple[str, tuple[Any, ...]]:
    """Connectivity events of these devices in [start, end), plus each device's last event before start
    (the state the period starts in), ordered by device, ts."""
    return (f"""(SELECT DISTINCT ON (device_id) {", ".join(STATUS_COLUMNS)} FROM device_status
                 WHERE device_id = ANY(%s) AND ts < %s ORDER BY device_id, ts DESC, state DESC)
                UNION ALL
                (SELECT {", ".join(STATUS_COLUMNS)} FROM device_status
                 WHERE device_id = ANY(%s) AND ts >= %s AND ts < %s)
                ORDER BY device_id, ts, state""", (devices, start, devices, start, end))


def chain_heads_query() -> tuple[str, tuple[Any, ...]]:
    """The last entry of every device's ingest-ledger chain."""
    return ("""SELECT DISTINCT ON (device_id) device_id, chain_seq, hour, revision, row_count, entry_hash, sealed_at
               FROM ingest_ledger ORDER BY device_id, chain_seq DESC""", ())
