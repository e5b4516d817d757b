"""Collector errors: the ingest loop retries transient ones and quarantines rejected batches."""

from __future__ import annotations

import psycopg

from core.errors import ShopfloorError

# SQLSTATE classes that mean "try again later": connection exception, transaction rollback
# (serialization failure, deadlock), insufficient resources, operator intervention (shutdown, cancel).
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57"})


class TransientDbError(ShopfloorError):
    """The database is unreachable or asked us to retry; keep the batch and try again with backoff."""


class BatchRejectedError(ShopfloorError):
    """The database refused the batch's data itself (bad value, constraint); retrying will not help."""


class MigrationError(ShopfloorError):
    """The schema could not be created or upgraded; the message says what to do."""


class ScopeError(ShopfloorError):
    """A scope (asset id) that the plant config does not know."""


def is_transient(exc: BaseException) -> bool:
    """True for errors a retry can cure: lost connections and SQLSTATE classes 08, 40, 53, 57."""
    if isinstance(exc, psycopg.OperationalError):
        return True
    state = getattr(exc, "sqlstate", None)
    return isinstance(state, str) and state[:2] in TRANSIENT_SQLSTATE_CLASSES
