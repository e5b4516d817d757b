"""Collector errors: the ingest loop retries transient ones and quarantines rejected batches."""

from __future__ import annotations

import psycopg

from core.errors import ShopfloorError

# SQLSTATEs that mean "try again later": connection exception (08), transaction rollback (40: serialization
# failure, deadlock), insufficient resources (53: disk full, out of memory, too many connections), operator
# intervention by shutdown or restart (57P01..57P05), lock not available (55P03), I/O error (58030).
# Everything else with a SQLSTATE (22 data exception, 23 integrity, 54 program limit such as an index row
# too large, 57014 statement timeout, 42 ...) is about the rows: retrying the same rows cannot succeed.
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53"})
TRANSIENT_SQLSTATES = frozenset({"55P03", "58030"})


class TransientDbError(ShopfloorError):
    """The database is unreachable or asked us to retry; keep the batch and try again with backoff."""


class BatchRejectedError(ShopfloorError):
    """The database refused the batch's data itself (bad value, constraint); retrying will not help."""


class MigrationError(ShopfloorError):
    """The schema could not be created or upgraded; the message says what to do."""


class ScopeError(ShopfloorError):
    """A scope (asset id) that the plant config does not know."""


def is_transient(exc: BaseException) -> bool:
    """True for errors a retry can cure: SQLSTATE 08, 40, 53, 57P, 55P03, 58030 and a lost connection (no SQLSTATE).

    Decided by SQLSTATE first: psycopg maps class 54 (e.g. 54000, an index row too large) to OperationalError
    too, and that row will be refused however often it is retried.
    """
    state = getattr(exc, "sqlstate", None)
    if isinstance(state, str) and state:
        return state[:2] in TRANSIENT_SQLSTATE_CLASSES or state[:3] == "57P" or state in TRANSIENT_SQLSTATES
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
