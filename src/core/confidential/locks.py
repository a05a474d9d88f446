"""Locks: a node and a held reservation for exactly one confidential request.

`LockNode` selects a node with a valid key and holds, through the Meter, the most the request may
cost; the lock's id (`stack_small_id` on the wire) is random. Locks live in the database
(`confidential_locks`), so a lock granted through one core instance is taken through any:

take      `UPDATE confidential_locks SET consumed = true WHERE id = :id AND consumed = false
           AND released = false AND expires_at > :now`: exactly one request, through whichever
           instance, gets the lock; any other is refused LOCK_ALREADY_USED (or LOCK_EXPIRED).
release   `UPDATE ... SET released = true WHERE id = :id AND consumed = false AND released = false
           AND expires_at <= :now`, and in the same transaction the release of its reservation
           (charging nothing; the ledger's own conditional UPDATE on `state = 'held'`). The granting
           instance does it when the lock expires; every instance's periodic sweep does it for the
           locks of instances that stopped or died.

A lock is `consumed` or `released`, never both, so its reservation is settled by the request that
used it or released unused, once. If no instance runs at all, the ledger's sweeper expires the
reservation once it passes its own `expires_at` (later than the lock's), charging nothing.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Table, and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.core.auth import Principal
from atoma_proxy.core.confidential.errors import (
    LockAlreadyUsed,
    LockExpired,
    LockMismatch,
    LockNotFound,
    LockOfAnotherUser,
)
from atoma_proxy.core.confidential.key_store import NodeKey
from atoma_proxy.core.ledger import MeteredRequest
from atoma_proxy.core.ledger._sql import reservations, rowcount
from atoma_proxy.core.ledger.reservations import Hold, release
from atoma_proxy.core.nodes.registry import Node
from atoma_proxy.core.persistence.confidential_models import ConfidentialLock
from atoma_proxy.core.persistence.models import utcnow
from atoma_proxy.core.pipeline.call import InferenceCall

__all__ = ["LOCK_EXPIRED_OUTCOME", "Lock", "LockRecord", "LockTable", "locks_table"]

log = logging.getLogger(__name__)

# The usage record of a lock that expired unused (the sweeper's, after a crash, is Outcome.EXPIRED).
LOCK_EXPIRED_OUTCOME = "lock_expired"
_FORGET_AFTER = timedelta(minutes=10)  # how long a finished lock's row is kept, to say LOCK_ALREADY_USED
_SWEEP_BATCH = 500

locks_table: Table = ConfidentialLock.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class LockRecord:
    """A lock as stored: what any instance needs to serve it."""

    id: int
    user_id: int
    node_id: str
    model: str
    endpoint: str
    max_num_tokens: int
    rotation_counter: int
    request_id: str
    metered: bool
    expires_at: datetime


@dataclass(eq=False)
class Lock:
    """A lock being served by this instance (after `LockNode`, or after `take`)."""

    record: LockRecord
    node: Node
    key: NodeKey | None  # the node's key, once checked against the request's
    call: InferenceCall
    metered: MeteredRequest | None

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def max_num_tokens(self) -> int:
        return self.record.max_num_tokens


def _record(row: object) -> LockRecord:
    return LockRecord(**{name: getattr(row, name) for name in LockRecord.__dataclass_fields__})


class LockTable:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        sweep_interval: float = 5.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """`sessions`: bounded by `database.statement_timeout` on the serving path (README "Outages")."""
        self._sessions = sessions
        self._sweep_interval = sweep_interval
        self._clock = clock
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    @staticmethod
    def new_id() -> int:
        return secrets.randbits(63)

    async def add(self, record: LockRecord) -> None:
        """Store a new lock; this instance releases it when it expires unused (so does any instance's sweep)."""
        async with self._sessions() as session, session.begin():
            await session.execute(
                locks_table.insert().values(
                    **{name: getattr(record, name) for name in LockRecord.__dataclass_fields__}, created_at=utcnow()
                )
            )
        # a moment past the expiry, so that the database's comparison (`expires_at <= now`) agrees
        delay = max(0.0, (record.expires_at - self._clock()).total_seconds()) + 0.05
        self._timers[record.id] = asyncio.get_running_loop().call_later(delay, self._expire_soon, record.id)

    async def check(
        self, lock_id: int, principal: Principal, *, model: str, endpoint: str, units: int | None
    ) -> LockRecord:
        """The lock, if this request may take it. Raises the LOCK_* errors (nothing changes)."""
        found = await self._state(lock_id)
        if found is None:
            raise LockNotFound("No lock with this `stack_small_id`: lock a node first (POST /v1/nodes/lock).")
        record, consumed, released = found
        if record.user_id != principal.user_id:
            raise LockOfAnotherUser("This lock was granted to another user.")
        if consumed:
            raise LockAlreadyUsed("This lock has served its request already: lock again.")
        if released or self._clock() >= record.expires_at:
            raise LockExpired("This lock expired before it was used: lock again.")
        if record.model != model or record.endpoint != endpoint:
            raise LockMismatch(f"The lock is for {record.model} on /{record.endpoint}, not {model} on /{endpoint}.")
        if units is not None and units > record.max_num_tokens:
            raise LockMismatch(f"num_compute_units {units} is above the lock's {record.max_num_tokens}.")
        return record

    async def take(self, record: LockRecord) -> None:
        """Consume the lock, exactly once across every instance; LOCK_ALREADY_USED / LOCK_EXPIRED otherwise."""
        async with self._sessions() as session, session.begin():
            taken = await session.execute(
                update(locks_table)
                .where(
                    locks_table.c.id == record.id,
                    locks_table.c.consumed.is_(False),
                    locks_table.c.released.is_(False),
                    locks_table.c.expires_at > self._clock(),
                )
                .values(consumed=True)
            )
        if rowcount(taken) != 1:
            found = await self._state(record.id)
            if found is not None and found[1]:
                raise LockAlreadyUsed("This lock has served its request already: lock again.")
            raise LockExpired("This lock expired before it was used: lock again.")
        timer = self._timers.pop(record.id, None)
        if timer is not None:
            timer.cancel()

    async def held(self, record: LockRecord) -> Hold | None:
        """The reservation the lock holds, as the Meter settles it (None when it is not held any more)."""
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(reservations).where(
                        reservations.c.request_id == record.request_id, reservations.c.state == "held"
                    )
                )
            ).first()
        if row is None:
            return None
        return Hold(
            row.request_id, row.user_id, row.api_key_id, row.model, row.amount, row.stack_id, row.units, row.node_id
        )

    async def _state(self, lock_id: int) -> tuple[LockRecord, bool, bool] | None:
        async with self._sessions() as session:
            row = (await session.execute(select(locks_table).where(locks_table.c.id == lock_id))).first()
        return (_record(row), row.consumed, row.released) if row is not None else None

    def _expire_soon(self, lock_id: int) -> None:
        self._timers.pop(lock_id, None)
        task = asyncio.create_task(self._release_logged(lock_id), name=f"lock-expiry-{lock_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release_logged(self, lock_id: int) -> None:
        try:
            await self.release_expired(lock_id)
        except Exception:  # the periodic sweep (or the ledger's) releases it later
            log.exception("could not release expired lock %d", lock_id)

    async def release_expired(self, lock_id: int | None = None) -> int:
        """Release expired unused locks (one, or up to a batch), with their reservations; returns how many."""
        now = self._clock()
        due = and_(
            locks_table.c.consumed.is_(False), locks_table.c.released.is_(False), locks_table.c.expires_at <= now
        )
        if lock_id is not None:
            target = locks_table.c.id == lock_id
        else:
            target = locks_table.c.id.in_(
                select(locks_table.c.id).where(due).order_by(locks_table.c.expires_at).limit(_SWEEP_BATCH)
            )
        async with self._sessions() as session, session.begin():
            rows = (
                await session.execute(
                    update(locks_table)
                    .where(target, due)
                    .values(released=True)
                    .returning(locks_table.c.id, locks_table.c.node_id, locks_table.c.request_id, locks_table.c.metered)
                )
            ).all()
            for row in rows:
                if row.metered:  # charges nothing; a reservation no longer held is left as it is
                    await release(session, row.request_id, LOCK_EXPIRED_OUTCOME, node_id=row.node_id)
        for row in rows:
            log.info("lock %d on node %s expired unused", row.id, row.node_id)
        return len(rows)

    async def forget_finished(self) -> None:
        """Delete the rows of locks finished long ago (a reuse is then LOCK_NOT_FOUND)."""
        async with self._sessions() as session, session.begin():
            await session.execute(
                delete(locks_table).where(
                    locks_table.c.expires_at < self._clock() - _FORGET_AFTER,
                    or_(locks_table.c.consumed.is_(True), locks_table.c.released.is_(True)),
                )
            )

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="confidential-lock-sweeper")

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            try:
                while await self.release_expired() == _SWEEP_BATCH:
                    pass
                await self.forget_finished()
            except Exception:
                log.exception("confidential lock sweep failed; retrying")

    async def aclose(self) -> None:
        """Stop the timers and the sweep. Unused locks stay: another instance (or a restart) may serve or
        release them; if none runs, the ledger's sweeper releases their reservations."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
