"""Wallet proofs and USDC deposits against a real database and the loopback chain."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import base58
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.core import ledger
from atoma_proxy.core.errors import AlreadyExists, InvalidRequest, NotFound, PermissionDenied, ProxyError
from atoma_proxy.core.persistence.models import User
from atoma_proxy.core.persistence.sui_models import SuiUsdcDeposit, SuiWallet
from atoma_proxy.core.sui.chain import GraphQLChainClient
from atoma_proxy.core.sui.deposits import check_digest, credit_deposit, usdc_coin_type
from atoma_proxy.core.sui.wallets import create_challenge, link_wallet, wallet_of
from atoma_proxy.sui.crypto import SignatureScheme, SuiKeypair
from tests.core.sui.conftest import OTHER_KEY, PROXY_KEY, USDC_PACKAGE, USER_KEY
from tests.support.sui_chain.server import load_fixture

Sessions = async_sessionmaker[AsyncSession]
NOW = datetime(2025, 8, 26, 12, 0, tzinfo=UTC)
USER = SuiKeypair.from_keystring(USER_KEY)
OTHER = SuiKeypair.from_keystring(OTHER_KEY)
PROXY = SuiKeypair.from_keystring(PROXY_KEY)
USDC = usdc_coin_type(USDC_PACKAGE)
DIGESTS = {tx["digest"]: tx for tx in load_fixture("transactions.json")}


def _digest(name: str) -> str:
    """The digest of the recorded transaction named `name` (how the fixture's digests were made)."""
    return base58.b58encode(hashlib.blake2b(name.encode(), digest_size=32).digest()).decode()


async def _users(sessions: Sessions, count: int) -> list[int]:
    async with sessions() as session, session.begin():
        users = [User(email=f"u{i}@example.com") for i in range(count)]
        session.add_all(users)
        await session.flush()
        return [u.id for u in users]


async def _link(sessions: Sessions, user_id: int, key: SuiKeypair, now: datetime = NOW) -> str:
    async with sessions() as session, session.begin():
        challenge = await create_challenge(session, user_id, now)
    signature = key.sign_personal_message(challenge.message.encode())
    async with sessions() as session, session.begin():
        return await link_wallet(session, user_id, challenge.nonce, signature, now)


async def _error(sessions: Sessions, coroutine_factory) -> ProxyError:
    with pytest.raises(ProxyError) as caught:
        async with sessions() as session, session.begin():
            await coroutine_factory(session)
    return caught.value


@pytest.mark.parametrize("scheme", list(SignatureScheme))
async def test_a_signed_challenge_links_the_signer(sessions: Sessions, scheme: SignatureScheme) -> None:
    (user,) = await _users(sessions, 1)
    key = SuiKeypair.generate(scheme)
    assert await _link(sessions, user, key) == key.address
    async with sessions() as session:
        assert await wallet_of(session, user) == key.address


async def test_forged_expired_and_reused_proofs_are_refused(sessions: Sessions) -> None:
    (user,) = await _users(sessions, 1)
    async with sessions() as session, session.begin():
        challenge = await create_challenge(session, user, NOW)
    forged = USER.sign_personal_message(b"some other message")
    error = await _error(sessions, lambda s: link_wallet(s, user, challenge.nonce, forged, NOW))
    assert error.reason == "INVALID_WALLET_PROOF"
    not_personal = USER.sign_hashed(challenge.message.encode())  # signed without the intent
    error = await _error(sessions, lambda s: link_wallet(s, user, challenge.nonce, not_personal, NOW))
    assert error.reason == "INVALID_WALLET_PROOF"
    good = USER.sign_personal_message(challenge.message.encode())
    later = NOW + timedelta(minutes=11)
    error = await _error(sessions, lambda s: link_wallet(s, user, challenge.nonce, good, later))
    assert isinstance(error, PermissionDenied) and error.reason == "WALLET_CHALLENGE_EXPIRED"
    async with sessions() as session:
        assert await wallet_of(session, user) is None  # nothing changed
    async with sessions() as session, session.begin():
        assert await link_wallet(session, user, challenge.nonce, good, NOW) == USER.address
    error = await _error(sessions, lambda s: link_wallet(s, user, challenge.nonce, good, NOW))
    assert isinstance(error, NotFound) and error.reason == "WALLET_CHALLENGE_NOT_FOUND"  # one time only


async def test_a_challenge_is_only_the_users_it_was_made_for(sessions: Sessions) -> None:
    alice, mallory = await _users(sessions, 2)
    async with sessions() as session, session.begin():
        challenge = await create_challenge(session, alice, NOW)
    signature = OTHER.sign_personal_message(challenge.message.encode())
    error = await _error(sessions, lambda s: link_wallet(s, mallory, challenge.nonce, signature, NOW))
    assert error.reason == "WALLET_CHALLENGE_NOT_FOUND"


async def test_a_second_user_cannot_claim_a_taken_address(sessions: Sessions) -> None:
    first, second = await _users(sessions, 2)
    await _link(sessions, first, USER)
    with pytest.raises(AlreadyExists) as caught:
        await _link(sessions, second, USER)
    assert caught.value.reason == "WALLET_ADDRESS_TAKEN"
    async with sessions() as session:
        assert (await session.execute(select(SuiWallet.user_id, SuiWallet.address))).all() == [(first, USER.address)]
    assert await _link(sessions, first, USER) == USER.address  # proving it again is fine
    assert await _link(sessions, first, OTHER) == OTHER.address  # a new proof replaces the address


async def _deposit(sessions: Sessions, chain: GraphQLChainClient, user: int, name: str) -> ledger.Balance:
    digest = check_digest(_digest(name))
    tx = await chain.transaction(digest)
    async with sessions() as session, session.begin():
        result = await credit_deposit(
            session, tx, user_id=user, digest=digest, proxy_address=PROXY.address, usdc_type=USDC
        )
    return result.balance


async def test_a_deposit_submitted_twice_is_credited_once(sessions: Sessions, chain: GraphQLChainClient) -> None:
    user, stranger = await _users(sessions, 2)
    await _link(sessions, user, USER)
    assert (await _deposit(sessions, chain, user, "deposit-ok")).credited == 5_000_000  # 5 USDC = 5,000,000 µUSD
    assert (await _deposit(sessions, chain, user, "deposit-ok")).credited == 5_000_000
    await _link(sessions, stranger, OTHER)
    with pytest.raises(AlreadyExists, match="another user"):
        await _deposit(sessions, chain, stranger, "deposit-ok")
    async with sessions() as session:
        assert (await session.execute(select(func.count()).select_from(SuiUsdcDeposit))).scalar() == 1
        assert (await ledger.get_balance(session, user)).credited == 5_000_000
        assert (await ledger.get_balance(session, stranger)).credited == 0


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("deposit-other", "DEPOSIT_SENDER_MISMATCH"),  # sent by someone else's wallet
        ("deposit-elsewhere", "DEPOSIT_RECEIVER_MISMATCH"),  # the user paid someone else
        ("deposit-two-senders", "DEPOSIT_NOT_A_TRANSFER"),
        ("deposit-failed", "DEPOSIT_TRANSACTION_FAILED"),
        ("task-1", "DEPOSIT_NOT_A_TRANSFER"),  # no USDC moved at all
        ("never-executed", "DEPOSIT_NOT_FOUND"),
    ],
)
async def test_deposits_that_are_not_the_users_transfer_to_the_proxy_are_refused(
    sessions: Sessions, chain: GraphQLChainClient, name: str, reason: str
) -> None:
    (user,) = await _users(sessions, 1)
    await _link(sessions, user, USER)
    with pytest.raises(ProxyError) as caught:
        await _deposit(sessions, chain, user, name)
    assert caught.value.reason == reason
    async with sessions() as session:
        assert (await ledger.get_balance(session, user)).credited == 0
        assert (await session.execute(select(func.count()).select_from(SuiUsdcDeposit))).scalar() == 0


async def test_a_deposit_needs_a_proven_wallet(sessions: Sessions, chain: GraphQLChainClient) -> None:
    (user,) = await _users(sessions, 1)
    with pytest.raises(PermissionDenied) as caught:
        await _deposit(sessions, chain, user, "deposit-ok")
    assert caught.value.reason == "WALLET_NOT_LINKED"


def test_digests_are_checked() -> None:
    for bad in ("", "0OIl", "abc", json.dumps({"x": 1})):
        with pytest.raises(InvalidRequest):
            check_digest(bad)
    assert _digest("deposit-ok") in DIGESTS
