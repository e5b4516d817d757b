"""Gap records from the gateways: samples an edge dropped by its stated policy, stored in `edge_gaps`.

They travel in the uplink batch's optional "gaps" list (core.record.Gap) and are written after the batch's
samples, before the batch is acknowledged, so a gap is never lost between the edge and the database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

import psycopg

from collector.errors import BatchRejectedError, TransientDbError, is_transient
from core.record import Gap, decode_gaps
from core.times import from_us

log = logging.getLogger(__name__)

_INSERT = """INSERT INTO edge_gaps (device_id, gateway_id, from_ts, to_ts, dropped, reason)
             VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"""


def store_gaps(conn: psycopg.Connection[Any], payloads: Iterable[bytes]) -> list[tuple[str, Any]]:
    """Write the gap records of these uplink payloads; return the rows that are not gap records (for quarantine).

    Raises TransientDbError when the database is unavailable (the caller retries the whole batch).
    """
    gaps: list[Gap] = []
    rejects: list[tuple[str, Any]] = []
    for payload in payloads:
        found, bad = decode_gaps(payload)
        gaps.extend(found)
        rejects.extend(bad)
    if not gaps:
        return rejects
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(_INSERT, [(g.device_id, g.gateway_id, from_us(g.from_us), from_us(g.to_us), g.count,
                                       g.reason) for g in gaps])
    except psycopg.Error as exc:
        if is_transient(exc):
            raise TransientDbError(f"database unavailable: {exc}") from exc
        raise BatchRejectedError(f"database refused gap records: {str(exc).splitlines()[0]}") from exc
    for g in gaps:
        log.warning("event=edge_gap gateway=%s device=%s dropped=%d from_us=%d to_us=%d reason=%s hint='the "
                    "gateway dropped these samples by its buffer policy; see table edge_gaps'", g.gateway_id,
                    g.device_id, g.count, g.from_us, g.to_us, g.reason)
    return rejects


def gap_reject_payloads(rejects: list[tuple[str, Any]]) -> list[tuple[str, str, bytes]]:
    """Rejected gap rows in the (source, reason, payload) form the quarantine takes."""
    return [("edge_gaps", reason, json.dumps(row, default=str).encode()) for reason, row in rejects]
