"""API tokens: random, shown once, stored only as SHA-256 hashes; roles, certifier scope and period, expiry.

A request carries its token as `Authorization: Bearer <token>` or in the dashboard's HttpOnly cookie
(Settings.cookie_name). This module has no FastAPI imports: the CLI creates and revokes tokens with it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import psycopg

from core.errors import ShopfloorError

Role = Literal["viewer", "manager", "certifier", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
TOKEN_PREFIX = "sf_"


class TokenError(ShopfloorError):
    """A token cannot be created or revoked as asked; the message says what to change."""


@dataclass(frozen=True)
class Principal:
    """Who is asking: the token's role, and for certifiers the asset scope and period they may read."""

    role: Role
    token_id: int | None = None
    name: str = ""
    scope: str | None = None  # asset id; None: the whole plant
    period_from: datetime | None = None
    period_to: datetime | None = None
    expires_at: datetime | None = None


NO_AUTH = Principal(role="admin", token_id=None, name="no-auth")


def hash_token(token: str) -> str:
    """SHA-256 hex of the token text: what the database keeps."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


_SELECT = """SELECT id, role, name, scope, period_from, period_to, expires_at FROM api_tokens
             WHERE token_sha256 = %s AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"""


def _principal(row: tuple[Any, ...]) -> Principal:
    return Principal(role=row[1], token_id=int(row[0]), name=str(row[2]), scope=row[3], period_from=row[4],
                     period_to=row[5], expires_at=row[6])


async def lookup(conn: psycopg.AsyncConnection[Any], token: str) -> Principal | None:
    """The principal of a valid token (known, not revoked, not expired), else None."""
    cur = await conn.execute(_SELECT, (hash_token(token),))
    row = await cur.fetchone()
    return None if row is None else _principal(row)


def create_token(conn: psycopg.Connection[Any], role: str, *, name: str = "", scope: str | None = None,
                 period_from: datetime | None = None, period_to: datetime | None = None,
                 expires_at: datetime | None = None, now: datetime | None = None) -> tuple[int, str]:
    """Store a new token's hash; returns (id, token). The token text exists only in this return value."""
    if role not in ROLES:
        raise TokenError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    now = now or datetime.now(UTC)
    if role == "certifier" and (scope is None or expires_at is None):
        raise TokenError("a certifier token needs --scope (plant, area or line id) and --expires")
    if expires_at is not None and expires_at <= now:
        raise TokenError(f"--expires {expires_at.isoformat()} is in the past: give a future time or a duration")
    if period_from is not None and period_to is not None and period_from >= period_to:
        raise TokenError("the token's period is empty: --period-from must be before --period-to")
    token = new_token()
    row = conn.execute(
        """INSERT INTO api_tokens (token_sha256, prefix, role, name, scope, period_from, period_to, expires_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
        (hash_token(token), token[:8], role, name, scope, period_from, period_to, expires_at)).fetchone()
    assert row is not None
    return int(row[0]), token


def revoke_token(conn: psycopg.Connection[Any], token_or_id: str) -> int:
    """Revoke by id or by the token text; returns the id. Unknown or already revoked: TokenError."""
    if token_or_id.isdigit():
        row = conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL "
                           "RETURNING id", (int(token_or_id),)).fetchone()
    else:
        row = conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE token_sha256 = %s AND revoked_at IS NULL "
                           "RETURNING id", (hash_token(token_or_id),)).fetchone()
    if row is None:
        raise TokenError(f"no active token {token_or_id[:12]!r}: list them with `shopfloor api token list`")
    return int(row[0])


def list_tokens(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Every token's metadata (never the token): id, prefix, role, name, scope, period, expiry, revocation."""
    cur = conn.execute("""SELECT id, prefix, role, name, scope, period_from, period_to, created_at, expires_at,
                                 revoked_at FROM api_tokens ORDER BY id""")
    cols = [d.name for d in cur.description or []]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
