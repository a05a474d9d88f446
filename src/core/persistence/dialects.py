"""`INSERT ... ON CONFLICT` for either dialect, and which dialect a session or connection speaks.

PostgreSQL and SQLite spell an upsert the same way (`ON CONFLICT (key) DO UPDATE SET ... WHERE ...`,
the new row being `excluded`), but SQLAlchemy builds it from each dialect's own `insert`. Every
repository writes its upserts through these helpers, on a session or on a connection:

    await session.execute(upsert(session, cursors, {"name": name, "cursor": cursor}, key=["name"]))
    inserted = await session.execute(
        insert_or_ignore(session, credits, values, key=["idempotency_key"]).returning(credits.c.id)
    )

`update` names the columns a conflict overwrites with the new row's values (by default every value
that is not part of the key), or is a function of `excluded` (the new row) that returns the SET
clause, for increments and conditional values; `where` (a function of `excluded` too) keeps the
stored row when it is false, which makes "only if newer" writes a single statement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

__all__ = ["Executor", "Insert", "insert_or_ignore", "is_postgresql", "upsert"]

#: What statements run on: a session (a unit of work) or a connection (the Meter's hot path).
Executor: TypeAlias = AsyncSession | AsyncConnection
#: An INSERT with `on_conflict_do_nothing` / `on_conflict_do_update` and `excluded`.
Insert: TypeAlias = postgresql.Insert | sqlite.Insert
#: `excluded`: the row that was proposed for insertion, as columns (`excluded.cursor`).
Excluded: TypeAlias = Any


def is_postgresql(executor: Executor) -> bool:
    dialect = executor.dialect if isinstance(executor, AsyncConnection) else executor.get_bind().dialect
    return dialect.name == "postgresql"


def _insert(executor: Executor, table: Table | Any) -> Insert:
    """The executor's dialect's `INSERT` into `table` (a Table or a mapped class): PostgreSQL's or SQLite's."""
    return (postgresql.insert if is_postgresql(executor) else sqlite.insert)(table)


def upsert(
    executor: Executor,
    table: Table | Any,
    values: Mapping[str, Any],
    *,
    key: Sequence[str],
    update: Sequence[str] | Callable[[Excluded], Mapping[str, Any]] | None = None,
    where: Callable[[Excluded], Any] | None = None,
) -> Insert:
    """`INSERT values ON CONFLICT (key) DO UPDATE SET ... [WHERE ...]` for the executor's dialect.

    `update`: the columns a conflict takes from the new row (default: every one of `values` not in `key`),
    or `excluded -> {column: expression}`; `where`: `excluded -> condition` under which the stored row changes.
    """
    statement = _insert(executor, table).values(**values)
    excluded = statement.excluded
    if update is None or isinstance(update, Sequence):
        names = [name for name in values if name not in key] if update is None else list(update)
        assignments: Mapping[str, Any] = {name: excluded[name] for name in names}
    else:
        assignments = update(excluded)
    return statement.on_conflict_do_update(
        index_elements=list(key), set_=assignments, where=where(excluded) if where is not None else None
    )


def insert_or_ignore(
    executor: Executor, table: Table | Any, values: Mapping[str, Any], *, key: Sequence[str]
) -> Insert:
    """`INSERT values ON CONFLICT (key) DO NOTHING` for the executor's dialect (add `.returning(...)` to learn
    whether the row was inserted)."""
    return _insert(executor, table).values(**values).on_conflict_do_nothing(index_elements=list(key))
