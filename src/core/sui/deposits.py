"""USDC deposits: a user's transfer to the proxy's wallet, credited once (README "Sui").

    result = await credit_deposit(session, chain, user_id=7, digest="5Hq3...", proxy_address=..., usdc_type=...)

The transaction is read from the chain by its digest. It must have succeeded and moved USDC from
exactly one sender, the user's proven wallet, to exactly one receiver, the proxy's wallet. The
amount received is credited through the ledger's `credit`, with the digest as idempotency key, and
the digest is recorded with the user (`sui_usdc_deposits`, primary key): submitted again by the same
user it answers "credited before"; by anyone else it is refused. USDC has 6 decimals, so one USDC
unit is one micro-USD.
"""

from __future__ import annotations

from dataclasses import dataclass

import base58
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from atoma_proxy.core import ledger
from atoma_proxy.core.errors import AlreadyExists, InvalidRequest, NotFound, PermissionDenied
from atoma_proxy.core.persistence.sui_models import SuiUsdcDeposit
from atoma_proxy.core.sui.chain import ChainTransaction
from atoma_proxy.core.sui.wallets import wallet_of
from atoma_proxy.sui.crypto import normalize_address

__all__ = ["DepositResult", "check_digest", "credit_deposit", "usdc_coin_type", "usdc_transfer"]


@dataclass(frozen=True)
class DepositResult:
    applied: bool  # False: this digest was credited to this user before
    amount: int  # micro-USD
    balance: ledger.Balance


def check_digest(digest: str) -> str:
    """A Sui transaction digest: base58 of 32 bytes."""
    try:
        if len(base58.b58decode(digest)) == 32:
            return digest
    except ValueError:
        pass
    raise InvalidRequest("`transaction_digest` is not a Sui transaction digest.", param="transaction_digest")


def usdc_coin_type(usdc_package_id: str) -> str:
    return f"{normalize_address(usdc_package_id)}::usdc::USDC"


def _coin_type(repr_: str) -> str:
    address, _, rest = repr_.partition("::")
    try:
        return f"{normalize_address(address)}::{rest}"
    except ValueError:
        return repr_


def usdc_transfer(tx: ChainTransaction, usdc_type: str) -> tuple[str, str, int]:
    """(sender, receiver, amount) of a transaction's one USDC transfer; PermissionDenied otherwise."""
    if not tx.success:
        raise PermissionDenied(f"Transaction {tx.digest} failed on chain.", reason="DEPOSIT_TRANSACTION_FAILED")
    changes = [c for c in tx.balance_changes if _coin_type(c.coin_type) == usdc_type and c.amount != 0]
    senders = [c for c in changes if c.amount < 0]
    receivers = [c for c in changes if c.amount > 0]
    if len(senders) != 1 or len(receivers) != 1 or senders[0].amount != -receivers[0].amount:
        raise PermissionDenied(
            f"Transaction {tx.digest} is not one USDC transfer from one sender to one receiver.",
            reason="DEPOSIT_NOT_A_TRANSFER",
        )
    return normalize_address(senders[0].owner), normalize_address(receivers[0].owner), receivers[0].amount


async def credit_deposit(
    session: AsyncSession,
    tx: ChainTransaction | None,
    *,
    user_id: int,
    digest: str,
    proxy_address: str,
    usdc_type: str,
) -> DepositResult:
    """Check the transaction `tx` (read by the caller for `digest`) and credit it to the user, once."""
    existing = (
        await session.execute(select(SuiUsdcDeposit).where(SuiUsdcDeposit.digest == digest).with_for_update())
    ).scalar_one_or_none()
    if existing is not None:
        if existing.user_id != user_id:
            raise AlreadyExists("This transaction was credited to another user.", reason="DEPOSIT_ALREADY_CLAIMED")
        return DepositResult(False, existing.amount, await ledger.get_balance(session, user_id))
    wallet = await wallet_of(session, user_id)
    if wallet is None:
        raise PermissionDenied("Link a Sui wallet before depositing USDC.", reason="WALLET_NOT_LINKED")
    if tx is None:
        raise NotFound(f"No transaction {digest} on chain.", reason="DEPOSIT_NOT_FOUND")
    sender, receiver, amount = usdc_transfer(tx, usdc_type)
    if sender != wallet:
        raise PermissionDenied(
            f"The USDC was sent by {sender}, not by your wallet {wallet}.", reason="DEPOSIT_SENDER_MISMATCH"
        )
    if receiver != normalize_address(proxy_address):
        raise PermissionDenied("The USDC was not sent to the proxy's wallet.", reason="DEPOSIT_RECEIVER_MISMATCH")
    session.add(SuiUsdcDeposit(digest=digest, user_id=user_id, sender=sender, amount=amount))
    await session.flush()  # a concurrent submission of the digest fails here on the primary key
    result = await ledger.credit(
        session, user_id=user_id, amount=amount, idempotency_key=f"sui:usdc:{digest}", note=f"USDC deposit {digest}"
    )
    return DepositResult(result.applied, amount, result.balance)
