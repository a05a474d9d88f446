"""FIFO admission control: at most `limit` requests run at once, the rest wait in arrival order.

asyncio.Semaphore is not used because the limit must change live (POST /sim/config), the
queue length must be observable (vllm:num_requests_waiting), and a waiter cancelled because its
client left must neither hold nor lose a slot.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["FifoLimiter"]


class FifoLimiter:
    def __init__(self, limit: int = 0) -> None:
        self.limit = limit  # 0 = unlimited
        self.running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _has_room(self) -> bool:
        return self.limit <= 0 or self.running < self.limit

    def try_acquire(self) -> bool:
        """Take a slot now if one is free and nobody is queued ahead."""
        if not self._waiters and self._has_room():
            self.running += 1
            return True
        return False

    async def acquire(self) -> None:
        """Take a slot, queueing behind earlier arrivals when none is free."""
        if self.try_acquire():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # the releaser counts us in `running` before waking us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted a slot just as we were cancelled: pass it on
            else:
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass
            raise

    def release(self) -> None:
        self.running -= 1
        self._wake()

    def set_limit(self, limit: int) -> None:
        self.limit = limit
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._has_room():
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            self.running += 1
            waiter.set_result(None)
