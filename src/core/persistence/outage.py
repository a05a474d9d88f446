"""Telling a database outage from a bug, at the edge of an RPC.

    except Exception as error:
        if is_database_outage(error):
            error = DatabaseUnavailable()

An outage is the database not answering: a refused or broken connection, a connect or pool wait past
`database.connect_timeout` / `database.pool_timeout`, a statement cut off by `database.statement_timeout`,
SQLite's lock wait running out. The caller gets UNAVAILABLE `DATABASE_UNAVAILABLE` (HTTP 503) with a
retry delay, never INTERNAL; the engine's pool and the ledger's own connection reconnect by themselves
once the database is back (README "Outages").
"""

from __future__ import annotations

import psycopg
from sqlalchemy import exc as sa_exc

__all__ = ["DatabaseTimeout", "is_database_outage"]


class DatabaseTimeout(TimeoutError):
    """A database call did not finish within `database.statement_timeout` (its connection is discarded)."""


_OUTAGES: tuple[type[BaseException], ...] = (
    DatabaseTimeout,
    sa_exc.OperationalError,  # psycopg's and sqlite3's OperationalError: refused, broken, locked too long
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,  # no pooled connection within pool_timeout
    psycopg.OperationalError,  # the ledger's own connection (LedgerWriter)
    psycopg.InterfaceError,
    ConnectionError,
)


def is_database_outage(error: BaseException) -> bool:
    if isinstance(error, _OUTAGES):
        return True
    return isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated
