from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from datetime import timedelta

import pytest
from sqlalchemy import Connection, String, delete, func, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from atoma_proxy.core.persistence import (
    API_KEY_PREFIX,
    ApiKey,
    ApiKeyRepository,
    User,
    UserRepository,
    generate_api_key,
    hash_api_key,
    is_well_formed_api_key,
    key_prefix,
)
from tests.core.persistence._helpers import recorded_statements

KEY_SHAPE = re.compile(r"sk-atoma-[A-Za-z0-9]{40}")


def test_generated_keys_have_the_documented_shape() -> None:
    keys = [generate_api_key() for _ in range(200)]
    assert all(KEY_SHAPE.fullmatch(key) for key in keys)
    assert all(key.startswith(API_KEY_PREFIX) and len(key) == 49 for key in keys)
    assert len(set(keys)) == len(keys)
    assert len({key_prefix(key) for key in keys}) == len(keys)
    # All of the alphabet shows up (8000 random characters from 62).
    assert set("".join(key[len(API_KEY_PREFIX) :] for key in keys)) == set(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    )


def test_hash_and_prefix() -> None:
    key = "sk-atoma-" + "a1B2" * 10
    assert hash_api_key(key) == hashlib.sha256(key.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", hash_api_key(key))
    assert hash_api_key(key) != hash_api_key(key[:-1] + "c")
    assert key_prefix(key) == "sk-atoma-a1B2a1B"
    assert len(key_prefix(key)) == 16


async def _new_user(sessions: async_sessionmaker[AsyncSession], email: str) -> int:
    async with sessions() as session, session.begin():
        return (await UserRepository(session).get_or_create_by_email(email)).id


async def _issue(sessions: async_sessionmaker[AsyncSession], user_id: int, name: str = "k") -> tuple[str, ApiKey]:
    async with sessions() as session, session.begin():
        return await ApiKeyRepository(session).create(user_id, name)


async def _find(sessions: async_sessionmaker[AsyncSession], key: str) -> ApiKey | None:
    async with sessions() as session:
        return await ApiKeyRepository(session).find_active(key)


async def test_create_then_find(sessions: async_sessionmaker[AsyncSession]) -> None:
    user_id = await _new_user(sessions, "alice@example.com")
    key, created = await _issue(sessions, user_id, "laptop")

    assert KEY_SHAPE.fullmatch(key)
    assert created.id is not None
    assert created.user_id == user_id
    assert created.name == "laptop"
    assert created.prefix == key[:16]
    assert created.key_hash == hash_api_key(key)
    assert created.revoked_at is None and created.last_used_at is None

    found = await _find(sessions, key)
    assert found is not None
    assert (found.id, found.user_id, found.name, found.prefix) == (created.id, user_id, "laptop", key[:16])
    assert found.created_at.utcoffset() == timedelta(0)


async def test_a_wrong_secret_with_the_right_prefix_is_not_found(sessions: async_sessionmaker[AsyncSession]) -> None:
    user_id = await _new_user(sessions, "bob@example.com")
    key, _ = await _issue(sessions, user_id)
    last = key[-1]
    forged = key[:-1] + ("A" if last != "A" else "B")
    assert is_well_formed_api_key(forged) and key_prefix(forged) == key_prefix(key)

    assert await _find(sessions, forged) is None
    assert await _find(sessions, key) is not None


async def test_unknown_well_formed_keys_cost_exactly_one_query(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    with recorded_statements(engine.sync_engine) as statements:
        assert await _find(sessions, generate_api_key()) is None
    queries = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(queries) == 1
    assert "prefix" in queries[0]


MALFORMED_KEYS = [
    "",
    "sk-atoma-",
    "sk-atoma-tooShort",
    "sk-atoma-" + "a" * 39,
    "sk-atoma-" + "a" * 41,
    "sk-atoma-" + "a" * 39 + "-",
    "sk-atoma-" + "a" * 39 + "é",
    "sk-atoma-" + "a" * 40 + "\n",
    "SK-ATOMA-" + "a" * 40,
    "sk-other-" + "a" * 40,
    "Bearer sk-atoma-" + "a" * 40,
    "sk-atoma-' OR '1'='1' --" + "a" * 20,
]


async def test_malformed_keys_are_refused_without_a_query(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    user_id = await _new_user(sessions, "mal@example.com")
    real, _ = await _issue(sessions, user_id)
    # Malformed keys that share the real key's prefix, too: no lookup even when one would hit.
    malformed = [*MALFORMED_KEYS, real + "a", real[:-1], real[:-1] + "-", real.upper()]
    for key in malformed:
        assert not is_well_formed_api_key(key), key
        with recorded_statements(engine.sync_engine) as statements:
            assert await _find(sessions, key) is None
        assert statements == [], key
    assert await _find(sessions, real) is not None


async def test_revoked_keys_are_not_found(sessions: async_sessionmaker[AsyncSession]) -> None:
    user_id = await _new_user(sessions, "carol@example.com")
    key, created = await _issue(sessions, user_id)
    other_key, _ = await _issue(sessions, user_id)

    async with sessions() as session, session.begin():
        assert await ApiKeyRepository(session).revoke(created.id) is True

    assert await _find(sessions, key) is None
    assert await _find(sessions, other_key) is not None
    async with sessions() as session:
        revoked = await ApiKeyRepository(session).get(created.id)
    assert revoked is not None and revoked.revoked_at is not None
    assert revoked.revoked_at.utcoffset() == timedelta(0)
    assert not revoked.is_active


async def test_revoke_reports_whether_it_revoked_something(sessions: async_sessionmaker[AsyncSession]) -> None:
    owner = await _new_user(sessions, "dave@example.com")
    stranger = await _new_user(sessions, "eve@example.com")
    _, created = await _issue(sessions, owner)

    async with sessions() as session, session.begin():
        repository = ApiKeyRepository(session)
        assert await repository.revoke(created.id + 1000) is False
        assert await repository.revoke(created.id, user_id=stranger) is False
    async with sessions() as session, session.begin():
        repository = ApiKeyRepository(session)
        assert await repository.revoke(created.id, user_id=owner) is True
        assert await repository.revoke(created.id) is False


async def test_revoke_is_undone_by_rolling_back(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Repositories flush and leave committing to the caller."""
    user_id = await _new_user(sessions, "frank@example.com")
    key, created = await _issue(sessions, user_id)
    async with sessions() as session:
        assert await ApiKeyRepository(session).revoke(created.id) is True
        assert await ApiKeyRepository(session).find_active(key) is None
        await session.rollback()
    assert await _find(sessions, key) is not None


def _text_values(connection: Connection) -> list[str]:
    inspector = inspect(connection)
    values: list[str] = []
    for table in inspector.get_table_names():
        for column in inspector.get_columns(table):
            if isinstance(column["type"], String):
                rows = connection.execute(text(f'SELECT "{column["name"]}" FROM "{table}"')).scalars()
                values.extend(value for value in rows if value is not None)
    return values


async def test_the_plaintext_is_not_stored(engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
    user_id = await _new_user(sessions, "grace@example.com")
    keys = [(await _issue(sessions, user_id, f"key {i}"))[0] for i in range(3)]

    async with engine.connect() as connection:
        values = await connection.run_sync(_text_values)

    # The scan does read the keys' rows: prefixes and hashes are there...
    for key in keys:
        assert key_prefix(key) in values
        assert hash_api_key(key) in values
    # ...but neither the key nor its secret part is, in any text column of any table.
    for key in keys:
        secret = key[len(key_prefix(key)) :]
        assert not [value for value in values if key in value or secret in value]


async def test_prefixes_are_unique(sessions: async_sessionmaker[AsyncSession]) -> None:
    user_id = await _new_user(sessions, "heidi@example.com")
    key, _ = await _issue(sessions, user_id)
    twin = key[:16] + "Z" * (len(key) - 16)
    async with sessions() as session:
        session.add(ApiKey(user_id=user_id, name="twin", prefix=key_prefix(twin), key_hash=hash_api_key(twin)))
        with pytest.raises(IntegrityError):
            await session.flush()
        await session.rollback()


async def test_keys_belong_to_existing_users_and_go_with_them(sessions: async_sessionmaker[AsyncSession]) -> None:
    user_id = await _new_user(sessions, "ivan@example.com")
    key, _ = await _issue(sessions, user_id)

    orphan = generate_api_key()
    async with sessions() as session:
        session.add(
            ApiKey(user_id=user_id + 1000, name="orphan", prefix=key_prefix(orphan), key_hash=hash_api_key(orphan))
        )
        with pytest.raises(IntegrityError):
            await session.flush()
        await session.rollback()

    async with sessions() as session, session.begin():
        await session.execute(delete(User).where(User.id == user_id))
    assert await _find(sessions, key) is None
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(ApiKey)) == 0


async def test_list_for_user(sessions: async_sessionmaker[AsyncSession]) -> None:
    judy = await _new_user(sessions, "judy@example.com")
    mallory = await _new_user(sessions, "mallory@example.com")
    _, first = await _issue(sessions, judy, "first")
    await _issue(sessions, judy, "second")
    await _issue(sessions, mallory, "not judy's")
    async with sessions() as session, session.begin():
        await ApiKeyRepository(session).revoke(first.id)

    async with sessions() as session:
        repository = ApiKeyRepository(session)
        assert [k.name for k in await repository.list_for_user(judy)] == ["first", "second"]
        assert [k.name for k in await repository.list_for_user(judy, include_revoked=False)] == ["second"]
        assert await repository.list_for_user(judy + mallory + 1000) == []


async def test_mark_used(sessions: async_sessionmaker[AsyncSession]) -> None:
    user_id = await _new_user(sessions, "niaj@example.com")
    key, created = await _issue(sessions, user_id)
    async with sessions() as session, session.begin():
        await ApiKeyRepository(session).mark_used(created.id)
    found = await _find(sessions, key)
    assert found is not None and found.last_used_at is not None
    assert found.last_used_at.utcoffset() == timedelta(0)
    assert found.last_used_at >= found.created_at - timedelta(seconds=1)


async def test_get_or_create_by_email(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        users = UserRepository(session)
        olivia = await users.get_or_create_by_email("olivia@example.com")
        assert (await users.get_or_create_by_email("olivia@example.com")).id == olivia.id
        peggy = await users.get_or_create_by_email("peggy@example.com")
        assert peggy.id != olivia.id
    async with sessions() as session:
        users = UserRepository(session)
        assert (await users.get_or_create_by_email("olivia@example.com")).id == olivia.id
        fetched = await users.get(olivia.id)
        assert fetched is not None and fetched.email == "olivia@example.com"
        assert fetched.created_at.utcoffset() == timedelta(0)
        assert await users.get(olivia.id + peggy.id + 1000) is None
        assert await session.scalar(select(func.count()).select_from(User)) == 2


async def _until_a_backend_waits_on_a_lock(engine: AsyncEngine, task: asyncio.Task[int]) -> None:
    async with engine.connect() as observer:
        for _ in range(1000):
            assert not task.done(), task.result()
            blocked = await observer.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock' "
                    "AND query LIKE 'INSERT INTO users%'"
                )
            )
            # pg_stat_activity is a snapshot per transaction: end it to see news.
            await observer.rollback()
            if blocked:
                return
            await asyncio.sleep(0.01)
    pytest.fail("the second transaction never waited on the first one's insert")


@pytest.mark.parametrize("database_kind", ["postgresql"])  # needs pg_stat_activity to see B wait
async def test_get_or_create_waits_for_a_concurrent_insert_instead_of_failing(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Transaction B misses the uncommitted user of A, so it inserts: that must wait for A, then do nothing."""

    async def second() -> int:
        async with sessions() as session, session.begin():
            return (await UserRepository(session).get_or_create_by_email("race@example.com")).id

    waiting: asyncio.Task[int] | None = None
    try:
        async with sessions() as session:
            async with session.begin():
                first = await UserRepository(session).get_or_create_by_email("race@example.com")
                waiting = asyncio.create_task(second())
                await _until_a_backend_waits_on_a_lock(engine, waiting)
            # A committed here: B's INSERT ... ON CONFLICT DO NOTHING goes on, does nothing, and finds A's user.
        assert await waiting == first.id
    finally:
        if waiting is not None and not waiting.done():
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 1
