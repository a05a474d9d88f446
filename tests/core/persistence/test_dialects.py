"""The upsert helpers on both dialects: the default SET, a computed one, a WHERE that keeps the stored row,
and an INSERT that a conflict ignores."""

from __future__ import annotations

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.core.persistence.dialects import insert_or_ignore, upsert
from atoma_proxy.core.persistence.sui_models import SuiCursor

cursors: Table = SuiCursor.__table__  # type: ignore[assignment]


async def _cursor(session: AsyncSession, name: str) -> str | None:
    return await session.scalar(select(cursors.c.cursor).where(cursors.c.name == name))


async def test_upsert_and_insert_or_ignore(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        await session.execute(upsert(session, cursors, {"name": "a", "cursor": "1"}, key=["name"]))
        await session.execute(upsert(session, cursors, {"name": "a", "cursor": "2"}, key=["name"]))
        assert await _cursor(session, "a") == "2"  # every value not in the key is taken from the new row

        concatenated = upsert(
            session,
            cursors,
            {"name": "a", "cursor": "3"},
            key=["name"],
            update=lambda new: {"cursor": new.cursor + "!"},
        )
        await session.execute(concatenated)
        assert await _cursor(session, "a") == "3!"

        older = upsert(
            session,
            cursors,
            {"name": "a", "cursor": "0"},
            key=["name"],
            where=lambda new: cursors.c.cursor < new.cursor,
        )
        await session.execute(older)
        assert await _cursor(session, "a") == "3!"  # the WHERE was false: the stored row stays

        ignored = insert_or_ignore(session, cursors, {"name": "a", "cursor": "9"}, key=["name"])
        assert (await session.execute(ignored.returning(cursors.c.name))).first() is None
        inserted = insert_or_ignore(session, cursors, {"name": "b", "cursor": "9"}, key=["name"])
        assert (await session.execute(inserted.returning(cursors.c.name))).scalar() == "b"
        assert (await _cursor(session, "a"), await _cursor(session, "b")) == ("3!", "9")
