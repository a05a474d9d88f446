"""The sweeper: every core frees, every `ledger.sweep_interval` seconds, what crashed cores left held.

A reservation outlives its request's deadline by `ledger.reservation_margin`; past `expires_at`
nobody will settle it any more (a live core would have, in its `finally`), so the sweeper moves
it to `expired` with the conditional UPDATE of `reservations.sweep_expired`. Any number of cores
may sweep at once: each row changes state once, and on PostgreSQL SKIP LOCKED splits the rows
between the sweepers instead of making them queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.core.ledger.reservations import sweep_expired
from atoma_proxy.core.persistence.outage import is_database_outage

__all__ = ["LedgerSweeper"]

log = logging.getLogger(__name__)


class LedgerSweeper:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], interval: float, *, batch: int = 500) -> None:
        self._sessions = sessions
        self._interval = interval
        self._batch = batch
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def sweep(self) -> int:
        """One pass: expire every reservation due now, a batch per transaction; returns how many."""
        total = 0
        while True:
            async with self._sessions() as session, session.begin():
                expired = await sweep_expired(session, limit=self._batch)
            total += expired
            if expired < self._batch:
                return total

    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="ledger-sweeper")

    async def stop(self, grace: float = 5.0) -> None:
        """Ends the loop between two passes: a pass under way finishes (its session closed before the
        engine is disposed), unless it takes longer than `grace` seconds, when it is cancelled."""
        if self._task is not None:
            self._stopping.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                expired = await self.sweep()
            except Exception as error:
                log.warning(
                    "sweeping expired reservations failed; retrying in %.1f s",
                    self._interval,
                    exc_info=not is_database_outage(error),  # an outage is reported, not traced every interval
                )
            else:
                if expired:
                    log.info("released %d expired reservations", expired)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
