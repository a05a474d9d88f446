"""Register, login, refresh-token rotation with reuse detection, logout: on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.core.accounts.logins import Logins, TokenGrant
from atoma_proxy.core.accounts.passwords import PasswordHasher
from atoma_proxy.core.accounts.tokens import AccessTokenCodec, hash_refresh_token
from atoma_proxy.core.errors import AlreadyExists, ProxyError, Unauthenticated
from atoma_proxy.core.persistence import RefreshToken, UserPassword, UserRepository
from tests.core.accounts.conftest import REFRESH_DAYS, FakeClock, cheap_hasher, new_email

PASSWORD = "correct horse battery"


async def _reason_of(operation) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ProxyError) as raised:
        await operation
    return raised.value.reason


async def _registered(logins: Logins) -> tuple[str, int]:
    email = new_email()
    user = await logins.register(email, PASSWORD)
    return email, user.id


async def _session_of(logins: Logins, codec: AccessTokenCodec, grant: TokenGrant) -> bool:
    claims = codec.verify(grant.access_token)
    return await logins.session_active(claims.session_id, claims.user_id)


async def test_register_stores_an_argon2id_hash_only(
    logins: Logins, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email, user_id = await _registered(logins)

    async with sessions() as session:
        stored = await session.scalar(select(UserPassword.password_hash).where(UserPassword.user_id == user_id))
        user = await UserRepository(session).get(user_id)
    assert user is not None and user.email == email
    assert stored is not None and stored.startswith("$argon2id$") and PASSWORD not in stored


async def test_an_email_is_registered_once(logins: Logins) -> None:
    email, _ = await _registered(logins)

    with pytest.raises(AlreadyExists) as taken:
        await logins.register(email, "another password")
    assert taken.value.reason == "EMAIL_TAKEN"


async def test_concurrent_registrations_of_one_email_make_one_account(logins: Logins) -> None:
    email = new_email()

    outcomes = await asyncio.gather(*(logins.register(email, PASSWORD) for _ in range(3)), return_exceptions=True)

    assert sum(not isinstance(outcome, BaseException) for outcome in outcomes) == 1
    assert all(
        isinstance(outcome, AlreadyExists) and outcome.reason == "EMAIL_TAKEN"
        for outcome in outcomes
        if isinstance(outcome, BaseException)
    )


async def test_login_issues_tokens_of_a_new_session(logins: Logins, codec: AccessTokenCodec) -> None:
    email, user_id = await _registered(logins)

    first = await logins.login(email, PASSWORD)
    second = await logins.login(email, PASSWORD)

    assert codec.verify(first.access_token).user_id == user_id
    assert codec.verify(first.access_token).session_id != codec.verify(second.access_token).session_id
    assert first.expires_in == 15 * 60 and first.refresh_expires_in == REFRESH_DAYS * 86400
    assert await _session_of(logins, codec, first) and await _session_of(logins, codec, second)


async def test_wrong_password_unknown_email_and_passwordless_users_are_all_invalid_credentials(
    logins: Logins, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email, _ = await _registered(logins)
    cli_email = new_email()
    async with sessions() as session, session.begin():
        await UserRepository(session).get_or_create_by_email(cli_email)  # as `atoma-proxy keys create` does

    for attempt in (
        logins.login(email, "wrong password"),
        logins.login(new_email(), PASSWORD),
        logins.login(cli_email, ""),
    ):
        assert await _reason_of(attempt) == "INVALID_CREDENTIALS"


async def test_login_upgrades_a_hash_made_with_older_parameters(
    sessions: async_sessionmaker[AsyncSession], codec: AccessTokenCodec, clock: FakeClock
) -> None:
    weak = Logins(sessions, cheap_hasher(), codec, refresh_token_days=REFRESH_DAYS, clock=clock)
    email, user_id = await _registered(weak)
    stronger_hasher = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    stronger = Logins(sessions, stronger_hasher, codec, refresh_token_days=REFRESH_DAYS, clock=clock)

    await stronger.login(email, PASSWORD)

    async with sessions() as session:
        stored = await session.scalar(select(UserPassword.password_hash).where(UserPassword.user_id == user_id))
    assert stored is not None and not stronger_hasher.needs_rehash(stored)
    assert await stronger_hasher.verify(stored, PASSWORD)
    await weak.login(email, PASSWORD)  # the upgraded hash still verifies for any hasher


async def test_refresh_rotates_the_refresh_token(logins: Logins, codec: AccessTokenCodec) -> None:
    email, user_id = await _registered(logins)
    grant = await logins.login(email, PASSWORD)

    rotated = await logins.refresh(grant.refresh_token)

    assert rotated.refresh_token != grant.refresh_token
    assert codec.verify(rotated.access_token).user_id == user_id
    assert codec.verify(rotated.access_token).session_id == codec.verify(grant.access_token).session_id
    assert (await logins.refresh(rotated.refresh_token)).refresh_token != rotated.refresh_token


async def test_reusing_a_rotated_refresh_token_ends_the_whole_family(logins: Logins, codec: AccessTokenCodec) -> None:
    email, _ = await _registered(logins)
    stolen = await logins.login(email, PASSWORD)
    other_session = await logins.login(email, PASSWORD)
    legitimate = await logins.refresh(stolen.refresh_token)

    assert await _reason_of(logins.refresh(stolen.refresh_token)) == "TOKEN_REVOKED"

    # The descendant issued to whoever refreshed first is revoked too, access tokens included...
    assert await _reason_of(logins.refresh(legitimate.refresh_token)) == "TOKEN_REVOKED"
    assert not await _session_of(logins, codec, legitimate)
    # ...while the user's other sessions are untouched.
    assert await _session_of(logins, codec, other_session)
    await logins.refresh(other_session.refresh_token)


async def test_concurrent_refreshes_with_one_token_cannot_both_win(logins: Logins) -> None:
    email, _ = await _registered(logins)
    grant = await logins.login(email, PASSWORD)

    outcomes = await asyncio.gather(*(logins.refresh(grant.refresh_token) for _ in range(2)), return_exceptions=True)

    winners = [outcome for outcome in outcomes if isinstance(outcome, TokenGrant)]
    losers = [outcome for outcome in outcomes if isinstance(outcome, Unauthenticated)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    assert losers[0].reason == "TOKEN_REVOKED"
    # A second use is reuse whichever came first: the family is gone.
    assert await _reason_of(logins.refresh(winners[0].refresh_token)) == "TOKEN_REVOKED"


async def test_an_expired_refresh_token_is_refused_and_not_consumed(logins: Logins, clock: FakeClock) -> None:
    email, _ = await _registered(logins)
    grant = await logins.login(email, PASSWORD)

    clock.advance(REFRESH_DAYS * 86400)

    assert await _reason_of(logins.refresh(grant.refresh_token)) == "TOKEN_EXPIRED"
    assert await _reason_of(logins.refresh(grant.refresh_token)) == "TOKEN_EXPIRED"


async def test_unknown_refresh_tokens_are_invalid(logins: Logins) -> None:
    assert await _reason_of(logins.refresh("rt-atoma-made-up")) == "INVALID_TOKEN"
    assert await _reason_of(logins.logout("rt-atoma-made-up")) == "INVALID_TOKEN"


async def test_logout_ends_the_session_and_is_idempotent(logins: Logins, codec: AccessTokenCodec) -> None:
    email, _ = await _registered(logins)
    grant = await logins.login(email, PASSWORD)
    rotated = await logins.refresh(grant.refresh_token)

    await logins.logout(rotated.refresh_token)
    await logins.logout(rotated.refresh_token)

    assert not await _session_of(logins, codec, rotated)
    assert await _reason_of(logins.refresh(rotated.refresh_token)) == "TOKEN_REVOKED"


async def test_only_hashes_of_refresh_tokens_are_stored(
    logins: Logins, sessions: async_sessionmaker[AsyncSession]
) -> None:
    email, user_id = await _registered(logins)
    grant = await logins.login(email, PASSWORD)

    async with sessions() as session:
        hashes = (await session.scalars(select(RefreshToken.token_hash).where(RefreshToken.user_id == user_id))).all()
    assert hashes == [hash_refresh_token(grant.refresh_token)]
