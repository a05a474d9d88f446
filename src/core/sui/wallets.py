"""Wallet proofs: a user links a Sui address by signing a one-time, expiring challenge (README "Sui").

    challenge = await create_challenge(session, user_id, now)        # show challenge.message to the user
    address = await link_wallet(session, user_id, challenge.nonce, signature, now)

The wallet signs the challenge's message as a Sui personal message (intent [3,0,0], BCS bytes,
blake2b-256), verified offline for Ed25519, secp256k1 and secp256r1. The signer's address is what
gets linked. A challenge works once, for the user it was made for, until it expires; one address
belongs to one user, and a user's new proof replaces their previous address.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from atoma_proxy.core.errors import AlreadyExists, InvalidRequest, NotFound, PermissionDenied
from atoma_proxy.core.persistence.sui_models import SuiWallet, SuiWalletChallenge
from atoma_proxy.sui.crypto import InvalidSignature, verify_personal_message

__all__ = [
    "CHALLENGE_TTL",
    "Challenge",
    "challenge_message",
    "check_nonce",
    "create_challenge",
    "link_wallet",
    "wallet_of",
]

CHALLENGE_TTL = timedelta(minutes=10)
_MAX_OPEN_CHALLENGES = 5


@dataclass(frozen=True)
class Challenge:
    nonce: str
    message: str
    expires_at: datetime


def challenge_message(user_id: int, nonce: str, expires_at: datetime) -> str:
    """What the wallet signs (as UTF-8 bytes)."""
    return (
        "Sign this message to prove you are the owner of this wallet. "
        f"User ID: {user_id}. Nonce: {nonce}. Expires: {expires_at.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    )


async def create_challenge(session: AsyncSession, user_id: int, now: datetime) -> Challenge:
    """A new challenge for the user; expired ones and all but their latest few are forgotten."""
    await session.execute(delete(SuiWalletChallenge).where(SuiWalletChallenge.expires_at <= now))
    open_nonces = (
        await session.execute(
            select(SuiWalletChallenge.nonce)
            .where(SuiWalletChallenge.user_id == user_id)
            .order_by(SuiWalletChallenge.expires_at.desc())
            .offset(_MAX_OPEN_CHALLENGES - 1)
        )
    ).scalars()
    stale = list(open_nonces)
    if stale:
        await session.execute(delete(SuiWalletChallenge).where(SuiWalletChallenge.nonce.in_(stale)))
    nonce = secrets.token_hex(16)
    expires_at = (now + CHALLENGE_TTL).replace(microsecond=0)
    session.add(SuiWalletChallenge(nonce=nonce, user_id=user_id, expires_at=expires_at))
    await session.flush()
    return Challenge(nonce, challenge_message(user_id, nonce, expires_at), expires_at)


async def link_wallet(session: AsyncSession, user_id: int, nonce: str, signature: str, now: datetime) -> str:
    """Verify the signed challenge and link the signer's address to the user; returns the address."""
    challenge = (
        await session.execute(
            select(SuiWalletChallenge)
            .where(SuiWalletChallenge.nonce == nonce, SuiWalletChallenge.user_id == user_id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if challenge is None:
        raise NotFound("No such wallet challenge: ask for a new one.", reason="WALLET_CHALLENGE_NOT_FOUND")
    if challenge.expires_at <= now:
        raise PermissionDenied(
            "The wallet challenge has expired: ask for a new one.", reason="WALLET_CHALLENGE_EXPIRED"
        )
    message = challenge_message(user_id, nonce, challenge.expires_at).encode()
    try:
        address = verify_personal_message(signature, message).signer
    except InvalidSignature as error:
        raise PermissionDenied(f"The wallet signature is not valid: {error}.", reason="INVALID_WALLET_PROOF") from None
    owner = (await session.execute(select(SuiWallet.user_id).where(SuiWallet.address == address))).scalar()
    if owner is not None and owner != user_id:
        raise AlreadyExists(f"The address {address} belongs to another user.", reason="WALLET_ADDRESS_TAKEN")
    await session.execute(delete(SuiWalletChallenge).where(SuiWalletChallenge.nonce == nonce))  # one time only
    wallet = await session.get(SuiWallet, user_id, with_for_update=True)
    if wallet is None:
        session.add(SuiWallet(user_id=user_id, address=address, linked_at=now))
    else:
        wallet.address, wallet.linked_at = address, now
    await session.flush()
    return address


async def wallet_of(session: AsyncSession, user_id: int) -> str | None:
    return (await session.execute(select(SuiWallet.address).where(SuiWallet.user_id == user_id))).scalar()


def check_nonce(nonce: str) -> str:
    if not (0 < len(nonce) <= 64 and nonce.isalnum()):
        raise InvalidRequest("`nonce` is not a wallet challenge nonce.", param="nonce")
    return nonce
