"""Following the Atoma package's events on chain (README "Sui").

`EventIngestor.poll_once` reads one page after the saved cursor, applies its events in chain order
(a page may list them out of order) and saves the page's end cursor, all in one transaction: a crash
loses nothing and applies nothing twice, a restart resumes at the cursor, and a page read again
(two proxy instances, a cursor saved late) changes nothing. `run` polls until stopped, page after
page while the chain has more, then every `interval` seconds, and calls `on_change` after pages
that changed something (the node registry refreshes from the tables).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.core.persistence.dialects import upsert
from atoma_proxy.core.persistence.sui_models import SuiCursor
from atoma_proxy.core.sui.chain import ChainClient, ChainError
from atoma_proxy.core.sui.event_store import InvalidEvent, apply_event

__all__ = ["EventIngestor", "PollResult"]

log = logging.getLogger(__name__)
cursors = SuiCursor.__table__


class PollResult:
    __slots__ = ("applied", "has_more", "seen")

    def __init__(self, seen: int, applied: int, has_more: bool) -> None:
        self.seen, self.applied, self.has_more = seen, applied, has_more


class EventIngestor:
    def __init__(
        self,
        chain: ChainClient,
        sessions: async_sessionmaker[AsyncSession],
        package_id: str,
        *,
        module: str = "db",
        page_size: int = 50,
        interval: float = 2.0,
        on_change: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._chain = chain
        self._sessions = sessions
        self.module = f"{package_id}::{module}"
        self.cursor_name = f"events:{self.module}"[:64]
        self._page_size = page_size
        self._interval = interval
        self._on_change = on_change
        self._task: asyncio.Task[None] | None = None

    async def cursor(self) -> str | None:
        async with self._sessions() as session:
            return (await session.execute(select(cursors.c.cursor).where(cursors.c.name == self.cursor_name))).scalar()

    async def poll_once(self) -> PollResult:
        after = await self.cursor()
        page = await self._chain.event_page(self.module, after, self._page_size)
        applied = 0
        async with self._sessions() as session, session.begin():
            for event in sorted(page.events, key=lambda e: e.position):
                try:
                    async with session.begin_nested():
                        applied += await apply_event(session, event)
                except InvalidEvent as error:
                    log.warning("skipping Atoma event %s:%d (%s): %s", event.tx_digest, event.seq, event.name, error)
            if page.end_cursor and page.end_cursor != after:
                cursor = {"name": self.cursor_name, "cursor": page.end_cursor}
                await session.execute(upsert(session, cursors, cursor, key=["name"]))
        if applied and self._on_change is not None:
            await self._on_change()
        return PollResult(len(page.events), applied, page.has_next_page)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                result = await self.poll_once()
                if result.has_more:
                    continue
            except ChainError as error:
                log.warning("reading Atoma events failed: %s", error)
            except Exception:
                log.exception("reading Atoma events failed")
            try:
                await asyncio.wait_for(stop.wait(), self._interval)
            except TimeoutError:
                pass

    def start(self) -> None:
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.run(self._stop), name="sui-event-ingestor")

    async def stop(self) -> None:
        if self._task is not None:
            self._stop.set()
            await self._task
            self._task = None
