"""The hot path's statements on PostgreSQL: a reservation and a settlement are one statement each.

Each is a data-modifying CTE, so its parts (the conditional UPDATEs, the INSERTs) apply together or
not at all, even in autocommit: the Meter runs them as single-statement transactions, one round trip
and one commit each, instead of BEGIN, 2 to 4 statements and COMMIT. Their semantics are exactly those
of the portable statements in `reservations.py` (which SQLite, and callers with a transaction of their
own, use); the ledger's property tests run both. Every sub-statement keys on the reservation's own
row first, then the balance, the stack and the daily row: the lock order of `reservations.py`.

They run through a `StatementRunner`: `on(session)` runs them in the caller's SQLAlchemy session or
connection; `LedgerWriter` runs them on an autocommit psycopg connection of its own, in groups (group
commit), which is what the Meter uses. That bypasses SQLAlchemy's asyncio adaptation and the engine's
pre-ping for these two statements only: measured, it is about three quarters of the CPU and half of
the time a metered request spends in the ledger (bench/accounting.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import TextClause, text
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from atoma_proxy.core.futures import resolve
from atoma_proxy.core.persistence.dialects import Executor
from atoma_proxy.core.persistence.outage import DatabaseTimeout, is_connection_lost, within
from atoma_proxy.core.telemetry.metrics import LEDGER_GROUP_SIZE

__all__ = ["RESERVE", "SETTLE_HELD", "LedgerWriter", "StatementRunner", "UniqueViolation", "on"]


class UniqueViolation(Exception):
    """A statement broke the unique constraint `constraint` (raised by every runner alike)."""

    def __init__(self, constraint: str | None) -> None:
        super().__init__(constraint)
        self.constraint = constraint


class StatementRunner(Protocol):
    async def __call__(self, statement: TextClause, params: Mapping[str, Any]) -> Any | None:
        """The statement's first row (attribute access by column name), or None."""
        ...


def on(executor: Executor) -> StatementRunner:
    """A runner over the caller's SQLAlchemy session or connection (its transaction, if any)."""

    async def run(statement: TextClause, params: Mapping[str, Any]) -> Any | None:
        try:
            return (await executor.execute(statement, dict(params))).first()
        except IntegrityError as error:
            diag = getattr(error.orig, "diag", None)
            if isinstance(error.orig, psycopg.errors.UniqueViolation):
                raise UniqueViolation(getattr(diag, "constraint_name", None)) from error
            raise

    return run


class LedgerWriter:
    """The hot path's statements on one autocommit psycopg connection of their own, with group commit.

    Statements that arrive while a group is being applied form the next group: one transaction
    sent as one pipeline, so one round trip and one commit for the group instead of one each. A
    statement alone (no concurrency) runs at once in autocommit. Every statement keeps its own
    semantics: each sees the effects of those before it, so two reservations on one balance still
    cannot both take the same money. One group is in flight per instance (its statements never wait
    on each other); a group first locks its users' balance rows in user order, and every statement
    then takes the rest in the order reservation, balance, stack, daily row, so the groups of
    several instances queue on a balance instead of deadlocking. If any statement of a group fails,
    the transaction applies nothing and each statement runs again alone, so one error (a duplicate
    request id) stays its caller's. The connection is opened on first use and again after a failure;
    an outage (a lost connection, a statement or group past `statement_timeout`) fails the statements
    at hand at once and drops the connection, so the next statement reconnects by itself.
    """

    def __init__(
        self, database_url: str, *, max_group: int = 64, connect_timeout: int = 2, statement_timeout: float = 5.0
    ) -> None:
        """`connect_timeout` bounds a connect, `statement_timeout` a statement or group: past them the
        callers get DatabaseTimeout (or psycopg's OperationalError) and the connection is opened anew."""
        self._conninfo = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._connect_timeout = connect_timeout
        self._statement_timeout = statement_timeout
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._sql: dict[int, str] = {}
        self._queue: list[_Pending] = []
        self._max_group = max_group
        self._flush_task: asyncio.Task[None] | None = None
        self.groups = 0  # transactions of more than one statement, for tests and benchmarks

    def _compiled(self, statement: TextClause) -> str:
        sql = self._sql.get(id(statement))
        if sql is None:
            sql = self._sql[id(statement)] = str(statement.compile(dialect=psycopg_dialect.dialect()))
        return sql

    async def __call__(self, statement: TextClause, params: Mapping[str, Any]) -> Any | None:
        pending = _Pending(self._compiled(statement), params, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        if self._flush_task is None:
            self._flush_task = asyncio.create_task(self._flush(), name="ledger-group-commit")
        return await pending.result

    async def _open(self) -> psycopg.AsyncConnection[Any]:
        connection = self._connection
        if connection is None or connection.closed:
            connection = self._connection = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, row_factory=namedtuple_row, connect_timeout=self._connect_timeout
            )
        return connection

    async def _discard(self) -> None:
        """Drop the connection after an outage or a timeout (its state is unknown); the next statement reconnects.

        Closing is immediate (no round trip): a statement still waiting on it fails at once."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def _flush(self) -> None:
        try:
            while self._queue:
                group, self._queue = self._queue[: self._max_group], self._queue[self._max_group :]
                group = [pending for pending in group if not pending.result.done()]  # a cancelled caller
                LEDGER_GROUP_SIZE.observe(len(group))
                if len(group) > 1 and await self._run_group(group):
                    continue
                for pending in group:
                    await self._run_alone(pending)
        finally:
            # In the same step as the last look at the queue: a statement queued after it starts a flush.
            self._flush_task = None

    async def _run_alone(self, pending: _Pending) -> None:
        try:
            try:
                row = await within(self._statement_timeout, self._execute_alone(pending), "the ledger's statement")
            except psycopg.errors.UniqueViolation as error:
                raise UniqueViolation(error.diag.constraint_name) from error
            except DatabaseTimeout:
                await self._discard()
                raise
            except psycopg.Error as error:
                if is_connection_lost(error):
                    await self._discard()
                raise
        except BaseException as error:  # the caller gets it; the flush goes on with the others
            resolve(pending.result, error=error)
            if not isinstance(error, Exception):
                raise
        else:
            resolve(pending.result, row)

    async def _execute_alone(self, pending: _Pending) -> Any:
        connection = await self._open()
        cursor = await connection.execute(pending.sql, pending.params)
        return await cursor.fetchone()

    async def _run_group(self, group: list[_Pending]) -> bool:
        """Apply the group in one transaction; False (nothing applied) when any statement failed."""
        group.sort(key=lambda pending: pending.params.get("user_id") or 0)
        try:
            rows = await within(self._statement_timeout, self._execute_group(group), "the ledger's statements")
        except (DatabaseTimeout, psycopg.Error) as error:
            if isinstance(error, psycopg.Error) and not is_connection_lost(error):
                return False  # a statement's error (a duplicate request id, a deadlock): each runs again alone
            # The database is away: every statement of the group fails at once (not once each, alone).
            await self._discard()
            for pending in group:
                resolve(pending.result, error=error)
            return True
        self.groups += 1
        for pending, row in zip(group, rows, strict=True):
            resolve(pending.result, row)
        return True

    async def _execute_group(self, group: list[_Pending]) -> list[Any]:
        users = sorted({user for pending in group if (user := pending.params.get("user_id")) is not None})
        connection = await self._open()
        async with connection.transaction(), connection.pipeline():
            if users:  # the balances first, in one order: groups of several instances queue, never deadlock
                await connection.execute(_LOCK_BALANCES, {"users": users})
            cursors = [await connection.execute(pending.sql, pending.params) for pending in group]
            return [await cursor.fetchone() for cursor in cursors]

    async def aclose(self) -> None:
        while self._flush_task is not None:
            await asyncio.gather(self._flush_task, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()


_LOCK_BALANCES = "SELECT user_id FROM balances WHERE user_id = ANY(%(users)s) ORDER BY user_id FOR UPDATE"


@dataclass(slots=True)
class _Pending:
    sql: str
    params: Mapping[str, Any]
    result: asyncio.Future[Any]


# :stack_id (nullable): try that stack's units first. :fallback: else hold :amount of the balance
# (:amount = 0 needs no balance row). Returns the reservation, or nothing when nothing could be held.
RESERVE = text(
    """
WITH stack AS (
    UPDATE stacks SET reserved_units = reserved_units + :units
    WHERE id = :stack_id AND user_id = :user_id AND :units > 0
      AND total_units - used_units - reserved_units >= :units
    RETURNING id, node_id
), money AS (
    UPDATE balances SET reserved = reserved + :amount
    WHERE user_id = :user_id AND :fallback AND :amount > 0 AND NOT EXISTS (SELECT 1 FROM stack)
      AND credited - debited - reserved >= :amount
    RETURNING user_id
)
INSERT INTO reservations
    (request_id, user_id, api_key_id, model, node_id, amount, stack_id, units, state, instance_id,
     created_at, expires_at)
SELECT :request_id, :user_id, :api_key_id, :model, stack.node_id,
       CASE WHEN stack.id IS NULL THEN :amount ELSE 0 END, stack.id,
       CASE WHEN stack.id IS NULL THEN 0 ELSE :units END, 'held', :instance_id, :now, :expires_at
FROM (SELECT 1) AS one LEFT JOIN stack ON true
WHERE stack.id IS NOT NULL OR (:fallback AND (EXISTS (SELECT 1 FROM money) OR :amount = 0))
RETURNING amount, stack_id, units, node_id
"""
)

# Moves the reservation out of `held` and applies the charge, capped by what was held. `stack` and
# `daily` read `money` so that they run after it: the lock order reservation, balance, stack, daily. Returns
# (cost, units) applied, or nothing when the reservation was not held.
SETTLE_HELD = text(
    """
WITH held AS (
    UPDATE reservations
    SET state = :state, finished_at = :now, node_id = COALESCE(CAST(:node_id AS VARCHAR), node_id)
    WHERE request_id = :request_id AND state = 'held'
    RETURNING user_id, api_key_id, model, amount, stack_id, units, node_id,
        CASE WHEN stack_id IS NULL THEN LEAST(CAST(:cost AS BIGINT), amount) ELSE 0 END AS cost,
        CASE WHEN stack_id IS NULL THEN 0 ELSE LEAST(CAST(:units AS BIGINT), units) END AS used
), money AS (
    UPDATE balances SET debited = balances.debited + held.cost, reserved = balances.reserved - held.amount
    FROM held WHERE balances.user_id = held.user_id AND held.amount > 0
    RETURNING 1
), stack AS (
    UPDATE stacks SET used_units = stacks.used_units + held.used, reserved_units = stacks.reserved_units - held.units
    FROM held WHERE stacks.id = held.stack_id AND (SELECT count(*) FROM money) >= 0
    RETURNING 1
), record AS (
    INSERT INTO usage_records
        (request_id, user_id, api_key_id, model, node_id, prompt_tokens, completion_tokens, cost, stack_id,
         stack_units, latency_ms, outcome, created_at)
    SELECT :request_id, user_id, api_key_id, model, node_id, :prompt_tokens, :completion_tokens, cost, stack_id,
           used, :latency_ms, :outcome, :now
    FROM held
    RETURNING 1
), daily AS (
    INSERT INTO daily_usage AS d (user_id, day, model, requests, prompt_tokens, completion_tokens, cost)
    SELECT user_id, :day, model, 1, :prompt_tokens, :completion_tokens, cost FROM held
    WHERE :billable AND (SELECT count(*) FROM money) >= 0
    ON CONFLICT (user_id, day, model) DO UPDATE SET
        requests = d.requests + 1,
        prompt_tokens = d.prompt_tokens + EXCLUDED.prompt_tokens,
        completion_tokens = d.completion_tokens + EXCLUDED.completion_tokens,
        cost = d.cost + EXCLUDED.cost
    RETURNING 1
)
SELECT cost, used FROM held
"""
)
