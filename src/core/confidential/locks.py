"""Locks: a node and a held reservation for exactly one confidential request.

`LockNode` selects a node with a valid key and holds, through the Meter, the most the request may
cost; the lock's id (`stack_small_id` on the wire) is random. `take` hands the lock to the one
request that uses it; an unused lock expires after its timeout and its reservation is released
(charging nothing). If the core dies, the ledger's sweeper releases the reservation once it passes
its `expires_at`. Locks live in the memory of the core instance that granted them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from atoma_proxy.core.auth import Principal
from atoma_proxy.core.confidential.errors import (
    LockAlreadyUsed,
    LockExpired,
    LockMismatch,
    LockNotFound,
    LockOfAnotherUser,
)
from atoma_proxy.core.confidential.keys import NodeKey
from atoma_proxy.core.inference import InferenceCall
from atoma_proxy.core.ledger import Meter, MeteredRequest
from atoma_proxy.core.nodes.registry import Node

log = logging.getLogger(__name__)

# The usage record of a lock that expired unused (the sweeper's, after a crash, is Outcome.EXPIRED).
LOCK_EXPIRED_OUTCOME = "lock_expired"
_FORGET_USED_AFTER = 600.0  # seconds a used lock's id is remembered, to say LOCK_ALREADY_USED


@dataclass(eq=False)
class Lock:
    id: int
    user_id: int
    model: str
    endpoint: str
    max_num_tokens: int
    node: Node
    key: NodeKey
    call: InferenceCall
    metered: MeteredRequest | None
    expires_at: float  # monotonic
    expires_at_unix: float
    state: str = "held"  # held -> used | expired


class LockTable:
    def __init__(self, meter: Meter | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._meter = meter
        self._clock = clock
        self._locks: dict[int, Lock] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def new_id() -> int:
        return secrets.randbits(63)

    def add(self, lock: Lock) -> None:
        self._locks[lock.id] = lock
        delay = max(0.0, lock.expires_at - self._clock())
        self._timers[lock.id] = asyncio.get_running_loop().call_later(delay, self._expire_soon, lock.id)

    def take(self, lock_id: int, principal: Principal, *, model: str, endpoint: str, units: int | None) -> Lock:
        """The lock, now used by this request. Raises the LOCK_* errors (nothing changes then)."""
        lock = self._locks.get(lock_id)
        if lock is None:
            raise LockNotFound("No lock with this `stack_small_id`: lock a node first (POST /v1/nodes/lock).")
        if lock.user_id != principal.user_id:
            raise LockOfAnotherUser("This lock was granted to another user.")
        if lock.state == "used":
            raise LockAlreadyUsed("This lock has served its request already: lock again.")
        if lock.state == "expired" or self._clock() >= lock.expires_at:
            raise LockExpired("This lock expired before it was used: lock again.")
        if lock.model != model or lock.endpoint != endpoint:
            raise LockMismatch(f"The lock is for {lock.model} on /{lock.endpoint}, not {model} on /{endpoint}.")
        if units is not None and units > lock.max_num_tokens:
            raise LockMismatch(f"num_compute_units {units} is above the lock's {lock.max_num_tokens}.")
        lock.state = "used"
        timer = self._timers.pop(lock_id, None)
        if timer is not None:
            timer.cancel()
        asyncio.get_running_loop().call_later(_FORGET_USED_AFTER, self._locks.pop, lock_id, None)
        return lock

    def _expire_soon(self, lock_id: int) -> None:
        task = asyncio.create_task(self.expire(lock_id), name=f"lock-expiry-{lock_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def expire(self, lock_id: int) -> None:
        """Releases an unused lock's reservation (charging nothing)."""
        self._timers.pop(lock_id, None)
        lock = self._locks.get(lock_id)
        if lock is None or lock.state != "held":
            return
        lock.state = "expired"
        if self._meter is not None and lock.metered is not None:
            await self._meter.settle(lock.metered, lock.call, LOCK_EXPIRED_OUTCOME)
        log.info("lock %d on node %s expired unused", lock_id, lock.node.id)
        asyncio.get_running_loop().call_later(_FORGET_USED_AFTER, self._locks.pop, lock_id, None)

    async def aclose(self) -> None:
        """Releases every unused lock now (shutdown)."""
        for lock_id in [i for i, lock in self._locks.items() if lock.state == "held"]:
            timer = self._timers.pop(lock_id, None)
            if timer is not None:
                timer.cancel()
            await self.expire(lock_id)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
