"""The append-only audit log (table api_audit): certifier token uses, exports, evidence packs, refused requests.

The table refuses UPDATE, DELETE and TRUNCATE by trigger (api/schema/061_api_audit.sql), so what is written
here stays. Writes are one INSERT each on the request's own pool.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

log = logging.getLogger(__name__)
Event = Literal["certifier_use", "export", "refused", "evidence_request", "evidence_view", "evidence_download"]


async def record(conn: psycopg.AsyncConnection[Any], event: Event, *, token_id: int | None = None,
                 role: str | None = None, method: str = "", path: str = "", query: str = "",
                 status: int | None = None, detail: str = "", client: str = "") -> None:
    """Append one audit row (query strings are cut to 2000 characters)."""
    await conn.execute(
        """INSERT INTO api_audit (event, token_id, role, method, path, query, status, detail, client)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (event, token_id, role, method, path[:500], query[:2000], status, detail[:1000], client[:100]))


def record_cli(conn: psycopg.Connection[Any], event: Event, command: str, detail: str = "") -> None:
    """Append one audit row for a command-line action (e.g. `shopfloor export`), from a sync connection."""
    conn.execute("""INSERT INTO api_audit (event, role, method, path, detail) VALUES (%s, 'cli', 'CLI', %s, %s)""",
                 (event, command[:500], detail[:1000]))


async def read(conn: psycopg.AsyncConnection[Any], start: datetime, end: datetime, event: str | None = None,
               limit: int = 1000) -> list[dict[str, Any]]:
    """Audit rows with ts in [start, end), newest first, at most `limit`."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT id, ts, event, token_id, role, method, path, query, status, detail, client FROM api_audit
               WHERE ts >= %s AND ts < %s AND (%s::text IS NULL OR event = %s)
               ORDER BY ts DESC, id DESC LIMIT %s""", (start, end, event, event, limit))
        return await cur.fetchall()
