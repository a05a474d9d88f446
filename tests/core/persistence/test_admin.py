from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from atoma_proxy.config import DatabaseSettings
from atoma_proxy.core.accounts.users_admin import create_user
from atoma_proxy.core.persistence import (
    ApiKey,
    ApiKeyRepository,
    User,
    UserRepository,
    create_api_key,
    create_engine,
    current_revision,
    head_revision,
    is_well_formed_api_key,
    session_factory,
)
from atoma_proxy.core.persistence.admin import admin_session


async def _owners(url: str, keys: list[str]) -> list[tuple[str | None, str]]:
    """(owner's email, key name) for each key, looked up like a request would."""
    engine = create_engine(DatabaseSettings(url=url))
    try:
        async with session_factory(engine)() as session:
            result = []
            for key in keys:
                api_key = await ApiKeyRepository(session).find_active(key)
                assert api_key is not None, key
                user = await session.get(User, api_key.user_id)
                assert user is not None
                result.append((user.email, api_key.name))
            return result
    finally:
        await engine.dispose()


async def _count(url: str, entity: type[User] | type[ApiKey]) -> int:
    engine = create_engine(DatabaseSettings(url=url))
    try:
        async with session_factory(engine)() as session:
            return await session.scalar(select(func.count()).select_from(entity)) or 0
    finally:
        await engine.dispose()


async def test_create_api_key_commits_a_working_key(database_url: str) -> None:
    key = await create_api_key(database_url)
    assert is_well_formed_api_key(key)
    assert await _owners(database_url, [key]) == [("local@atoma.proxy", "default")]

    other = await create_api_key(database_url, email="ops@example.com", name="ci")
    again = await create_api_key(database_url, name="second")
    assert len({key, other, again}) == 3
    assert await _owners(database_url, [key, other, again]) == [
        ("local@atoma.proxy", "default"),
        ("ops@example.com", "ci"),
        ("local@atoma.proxy", "second"),
    ]
    assert await _count(database_url, User) == 2


async def test_create_api_key_migrates_a_fresh_database_first(empty_database_url: str) -> None:
    key = await create_api_key(empty_database_url)
    assert await current_revision(empty_database_url) == head_revision()
    assert await _owners(empty_database_url, [key]) == [("local@atoma.proxy", "default")]


async def test_concurrent_create_api_key_for_the_same_new_email(database_url: str) -> None:
    """Several `keys create` at once for a user that does not exist yet: all succeed, one user."""
    keys = await asyncio.gather(
        *(create_api_key(database_url, email="team@example.com", name=f"key {i}", migrate=False) for i in range(6))
    )
    assert len(set(keys)) == 6
    owners = await _owners(database_url, list(keys))
    assert owners == [("team@example.com", f"key {i}") for i in range(6)]
    assert await _count(database_url, User) == 1
    assert await _count(database_url, ApiKey) == 6


async def test_concurrent_create_api_key_on_a_fresh_database(empty_database_url: str) -> None:
    """Migrating and creating at once, as on a first start: the migration lock keeps them apart."""
    keys = await asyncio.gather(*(create_api_key(empty_database_url) for _ in range(3)))
    assert await _owners(empty_database_url, list(keys)) == [("local@atoma.proxy", "default")] * 3
    assert await _count(empty_database_url, User) == 1


async def test_admin_session_commits_its_work_or_none_of_it(database_url: str) -> None:
    with pytest.raises(RuntimeError):
        async with admin_session(database_url, migrate=False) as session:
            await UserRepository(session).get_or_create_by_email("undone@example.com")
            raise RuntimeError("the command failed half-way")
    async with admin_session(database_url, migrate=False) as session:
        assert await UserRepository(session).get_by_email("undone@example.com") is None
        await UserRepository(session).get_or_create_by_email("done@example.com")
    async with admin_session(database_url, migrate=False) as session:
        assert await UserRepository(session).get_by_email("done@example.com") is not None


async def test_every_admin_command_migrates_a_fresh_database_first(empty_database_url: str) -> None:
    """`users create` as `keys create`, `balance` and `prices`: the one way the CLI opens the database."""
    user_id = await create_user(empty_database_url, email="first@example.com")
    assert await current_revision(empty_database_url) == head_revision()
    async with admin_session(empty_database_url, migrate=False) as session:
        user = await UserRepository(session).get_by_email("first@example.com")
        assert user is not None and user.id == user_id
