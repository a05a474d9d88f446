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

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

import psycopg
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction

__all__ = ["BoundedSession", "DatabaseTimeout", "is_connection_lost", "is_database_outage", "within"]

T = TypeVar("T")


class DatabaseTimeout(TimeoutError):
    """A database call did not finish within `database.statement_timeout` (its connection is discarded).

    `abandoned` is the call's task, cancelled but possibly still cleaning up."""

    abandoned: asyncio.Future[Any] | None = None


_OUTAGES: tuple[type[BaseException], ...] = (
    DatabaseTimeout,
    sa_exc.OperationalError,  # psycopg's and sqlite3's OperationalError: refused, broken, locked too long
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,  # no pooled connection within pool_timeout
    psycopg.OperationalError,  # the ledger's own connection (LedgerWriter)
    psycopg.InterfaceError,
    ConnectionError,
)
# SQLSTATEs of a server going away: admin_shutdown, crash_shutdown, cannot_connect_now (class 08 too).
_SHUTDOWN_STATES = frozenset({"57P01", "57P02", "57P03"})


def is_connection_lost(error: BaseException) -> bool:
    """A psycopg error of the connection itself (refused, broken, server shutting down), not of a statement:
    a deadlock or a serialization failure is an OperationalError too, and is not an outage."""
    state = getattr(error, "sqlstate", None)
    return state is None or state.startswith("08") or state in _SHUTDOWN_STATES


def is_database_outage(error: BaseException) -> bool:
    """Whether `error` is an outage, or was raised while handling one (a rollback after a timeout, say)."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, sa_exc.DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(seen, _OUTAGES):
            orig = seen.orig if isinstance(seen, sa_exc.DBAPIError) else seen
            return not isinstance(orig, psycopg.Error) or is_connection_lost(orig)
        seen = seen.__cause__ or seen.__context__
    return False


async def within(seconds: float | None, work: Awaitable[T], what: str) -> T:
    """`await work`, or DatabaseTimeout after `seconds` (None: no bound).

    The work runs as a task of its own and is cancelled, not awaited, when time is up: the driver's own
    clean-up of a cut-off query (psycopg sends the server a cancel request and waits for it, then closes
    the connection, some 10 s against a hung server) goes on in the background instead of holding the caller.
    """
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_consume)
        timeout = DatabaseTimeout(f"{what} did not finish within {seconds} s")
        timeout.abandoned = task
        raise timeout
    return task.result()


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned task's outcome (asyncio would log "exception was never retrieved")."""
    if not task.cancelled():
        task.exception()


class BoundedSession(AsyncSession):
    """An AsyncSession whose round trips (execute, get, flush, commit, close) end with DatabaseTimeout after
    `timeout` seconds (`database.statement_timeout`): a hung server cannot hold an RPC until its deadline.

    After a timeout the session is spent: further calls fail at once, and closing it waits, in the
    background, for the abandoned call to end (the driver gives up on the connection) before releasing it.
    """

    timeout: float | None = None
    _abandoned: asyncio.Future[Any] | None = None

    async def _bounded(self, work: Awaitable[T], what: str) -> T:
        if self._abandoned is not None:
            _close_now(work)
            raise DatabaseTimeout("the session gave up on an earlier statement")
        try:
            return await within(self.timeout, work, what)
        except DatabaseTimeout as timeout:
            self._abandoned = timeout.abandoned
            raise

    def begin(self) -> AsyncSessionTransaction:
        return _BoundedTransaction(self)

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await self._bounded(super().execute(*args, **kwargs), "a database statement")

    async def scalar(self, *args: Any, **kwargs: Any) -> Any:
        return await self._bounded(super().scalar(*args, **kwargs), "a database statement")

    async def scalars(self, *args: Any, **kwargs: Any) -> Any:
        return await self._bounded(super().scalars(*args, **kwargs), "a database statement")

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        return await self._bounded(super().get(*args, **kwargs), "a database read")

    async def flush(self, *args: Any, **kwargs: Any) -> None:
        await self._bounded(super().flush(*args, **kwargs), "a database write")

    async def commit(self) -> None:
        await self._bounded(super().commit(), "a commit")

    async def close(self) -> None:
        abandoned = self._abandoned
        if abandoned is None:
            await self._bounded(super().close(), "closing a session")
            return
        close = super().close

        async def when_abandoned_ends() -> None:
            await asyncio.wait({abandoned})
            with contextlib.suppress(Exception):
                await close()

        task = asyncio.ensure_future(when_abandoned_ends())
        _closing.add(task)
        task.add_done_callback(_closing.discard)


class _BoundedTransaction(AsyncSessionTransaction):
    """`async with session.begin()` of a BoundedSession: its commit (or rollback) is bounded too, and a spent
    session's transaction is left to the background close (ending it now would race the abandoned call)."""

    async def __aexit__(self, type_: Any, value: Any, traceback: Any) -> None:
        session = self.session
        assert isinstance(session, BoundedSession)
        if session._abandoned is None:
            await session._bounded(super().__aexit__(type_, value, traceback), "ending a transaction")


# Background closes of spent sessions (a reference, so that they are not garbage-collected mid-way).
_closing: set[asyncio.Future[None]] = set()


def _close_now(work: Awaitable[Any]) -> None:
    """A coroutine that will not be awaited: close it (no "never awaited" warning)."""
    close = getattr(work, "close", None)
    if close is not None:
        close()
