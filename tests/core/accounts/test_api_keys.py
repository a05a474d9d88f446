"""API keys of an account: create, list, revoke; a revoked key is refused at once here, within the TTL elsewhere."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.core.accounts.api_keys import ApiKeys
from atoma_proxy.core.accounts.logins import Logins
from atoma_proxy.core.auth import ApiKeyAuthenticator
from atoma_proxy.core.errors import NotFound, Unauthenticated
from atoma_proxy.core.persistence import hash_api_key
from tests.core.accounts.conftest import FakeClock, new_email

TTL = 1.0


def _bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


@pytest.fixture
async def authenticators(
    sessions: async_sessionmaker[AsyncSession], clock: FakeClock
) -> AsyncIterator[tuple[ApiKeyAuthenticator, ApiKeyAuthenticator]]:
    """Two instances' key checks on one database, on one clock."""
    here, elsewhere = ApiKeyAuthenticator(sessions, TTL, clock), ApiKeyAuthenticator(sessions, TTL, clock)
    yield here, elsewhere
    await here.aclose()
    await elsewhere.aclose()


@pytest.fixture
async def user_id(logins: Logins) -> int:
    return (await logins.register(new_email(), "password1")).id


async def test_create_shows_the_key_once_and_stores_its_hash(
    sessions: async_sessionmaker[AsyncSession], authenticators: tuple[ApiKeyAuthenticator, ...], user_id: int
) -> None:
    keys = ApiKeys(sessions, authenticators[0])

    secret, created = await keys.create(user_id, "laptop")

    assert secret.startswith("sk-atoma-") and created.prefix == secret[:16]
    assert created.key_hash == hash_api_key(secret) and secret not in repr(created)
    principal = await authenticators[0].authenticate(_bearer(secret))
    assert (principal.user_id, principal.api_key_id) == (user_id, created.id)


async def test_list_shows_the_users_keys_only_oldest_first(
    sessions: async_sessionmaker[AsyncSession], authenticators: tuple[ApiKeyAuthenticator, ...], logins: Logins
) -> None:
    keys = ApiKeys(sessions, authenticators[0])
    mine, theirs = (
        (await logins.register(new_email(), "password1")).id,
        (await logins.register(new_email(), "pw12345678")).id,
    )
    _, first = await keys.create(mine, "first")
    _, second = await keys.create(mine, "second")
    await keys.create(theirs, "not mine")
    await keys.revoke(mine, first.id)

    listed = await keys.list_for_user(mine)

    assert [(key.id, key.name, key.revoked_at is not None) for key in listed] == [
        (first.id, "first", True),
        (second.id, "second", False),
    ]


async def test_revoke_is_idempotent_and_only_for_the_owner(
    sessions: async_sessionmaker[AsyncSession], authenticators: tuple[ApiKeyAuthenticator, ...], logins: Logins
) -> None:
    keys = ApiKeys(sessions, authenticators[0])
    owner, stranger = (
        (await logins.register(new_email(), "password1")).id,
        (await logins.register(new_email(), "pw12345678")).id,
    )
    _, created = await keys.create(owner, "k")

    with pytest.raises(NotFound) as not_yours:
        await keys.revoke(stranger, created.id)
    assert not_yours.value.reason == "API_KEY_NOT_FOUND"
    with pytest.raises(NotFound):
        await keys.revoke(owner, 10**12)

    revoked = await keys.revoke(owner, created.id)
    again = await keys.revoke(owner, created.id)
    assert revoked.revoked_at is not None and again.revoked_at == revoked.revoked_at


async def test_a_revoked_key_is_refused_here_at_once_and_elsewhere_once_the_ttl_passed(
    sessions: async_sessionmaker[AsyncSession],
    authenticators: tuple[ApiKeyAuthenticator, ApiKeyAuthenticator],
    user_id: int,
    clock: FakeClock,
) -> None:
    here, elsewhere = authenticators
    keys = ApiKeys(sessions, here)
    secret, created = await keys.create(user_id, "k")
    await here.authenticate(_bearer(secret))  # both instances have a cached "valid"
    await elsewhere.authenticate(_bearer(secret))

    await keys.revoke(user_id, created.id)

    with pytest.raises(Unauthenticated):
        await here.authenticate(_bearer(secret))
    # The other instance trusts its cache until the TTL passes (the clock has not moved)...
    assert (await elsewhere.authenticate(_bearer(secret))).api_key_id == created.id
    clock.advance(TTL)
    # ...and not a moment longer.
    with pytest.raises(Unauthenticated) as refused:
        await elsewhere.authenticate(_bearer(secret))
    assert refused.value.reason == "INVALID_API_KEY"


async def test_using_a_key_records_when_it_was_last_used(
    sessions: async_sessionmaker[AsyncSession], authenticators: tuple[ApiKeyAuthenticator, ...], user_id: int
) -> None:
    here = authenticators[0]
    keys = ApiKeys(sessions, here)
    secret, created = await keys.create(user_id, "k")
    assert created.last_used_at is None

    await here.authenticate(_bearer(secret))
    await here.aclose()  # waits for the background write

    [listed] = await keys.list_for_user(user_id)
    assert listed.last_used_at is not None and listed.last_used_at >= created.created_at


class _CountingSessions:
    """The session factory, counting the sessions opened (one per database lookup)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self.opened = 0

    def __call__(self) -> AsyncSession:
        self.opened += 1
        return self._sessions()


async def test_concurrent_checks_of_one_key_share_one_lookup(
    sessions: async_sessionmaker[AsyncSession], authenticators: tuple[ApiKeyAuthenticator, ...], user_id: int
) -> None:
    secret, created = await ApiKeys(sessions, authenticators[0]).create(user_id, "busy")
    counting = _CountingSessions(sessions)
    checker = ApiKeyAuthenticator(counting, TTL)  # type: ignore[arg-type]

    principals = await asyncio.gather(*(checker.authenticate(_bearer(secret)) for _ in range(32)))
    unknown = await asyncio.gather(
        *(checker.authenticate(_bearer("sk-atoma-unknown")) for _ in range(8)), return_exceptions=True
    )

    assert {(p.user_id, p.api_key_id) for p in principals} == {(user_id, created.id)}
    assert all(isinstance(error, Unauthenticated) for error in unknown)
    await checker.aclose()
    # One lookup for the 32 checks of the key, one write of its first use, one lookup for the unknown key.
    assert counting.opened == 3


async def test_an_answer_read_before_a_revocation_here_is_not_cached_after_it(
    sessions: async_sessionmaker[AsyncSession], authenticators: tuple[ApiKeyAuthenticator, ...], user_id: int
) -> None:
    here = authenticators[0]
    keys = ApiKeys(sessions, here)
    secret, created = await keys.create(user_id, "racing")

    lookup = asyncio.ensure_future(here.authenticate(_bearer(secret)))  # reads the key while it is active
    await asyncio.sleep(0)
    await keys.revoke(user_id, created.id)  # commits, then tells this instance to forget the key
    await lookup

    with pytest.raises(Unauthenticated):
        await here.authenticate(_bearer(secret))
