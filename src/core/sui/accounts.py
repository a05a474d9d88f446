"""The Sui side of user accounts: wallet proofs and USDC deposits, as AccountService calls them."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.core.errors import FeatureDisabled, NodeFailed
from atoma_proxy.core.sui.chain import ChainClient, ChainError
from atoma_proxy.core.sui.deposits import DepositResult, check_digest, credit_deposit
from atoma_proxy.core.sui.stacks import ChainStackBuyer
from atoma_proxy.core.sui.wallets import Challenge, check_nonce, create_challenge, link_wallet, wallet_of

__all__ = ["SuiAccounts"]


class SuiAccounts:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        chain: ChainClient | None = None,
        proxy_address: str | None = None,
        usdc_type: str | None = None,
        clock: Callable[[], float] = time.time,
        stacks: ChainStackBuyer | None = None,
    ) -> None:
        self._sessions = sessions
        self.stacks = stacks  # set: BuyStack buys on chain
        self._chain = chain
        self._proxy_address = proxy_address
        self._usdc_type = usdc_type
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def create_challenge(self, user_id: int) -> Challenge:
        async with self._sessions() as session, session.begin():
            return await create_challenge(session, user_id, self._now())

    async def link_wallet(self, user_id: int, nonce: str, signature: str) -> str:
        async with self._sessions() as session, session.begin():
            return await link_wallet(session, user_id, check_nonce(nonce), signature, self._now())

    async def wallet(self, user_id: int) -> str | None:
        async with self._sessions() as session:
            return await wallet_of(session, user_id)

    async def deposit(self, user_id: int, digest: str) -> DepositResult:
        if self._chain is None or self._proxy_address is None or self._usdc_type is None:
            raise FeatureDisabled(
                "USDC deposits need [sui] http_rpc_node_addr, sui_keystore_path and usdc_package_id.",
                reason="SUI_DISABLED",
            )
        check_digest(digest)
        try:
            tx = await self._chain.transaction(digest)
        except ChainError as error:
            raise NodeFailed(f"The Sui RPC failed: {error}", reason="SUI_RPC_FAILED") from None
        async with self._sessions() as session, session.begin():
            return await credit_deposit(
                session,
                tx,
                user_id=user_id,
                digest=digest,
                proxy_address=self._proxy_address,
                usdc_type=self._usdc_type,
            )
