"""Small helpers shared by the persistence tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, event, inspect


@contextmanager
def recorded_statements(target: Any) -> Iterator[list[str]]:
    """Every SQL statement sent through `target` (an Engine, or the Engine class for all engines)."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(target, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(target, "before_cursor_execute", record)


def table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())
