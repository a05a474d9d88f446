"""The core's Sui side, built from the `[sui]` settings (README "Sui").

- a keystore: the proxy's key signs requests to Atoma-protocol nodes and is its wallet (deposits go to it);
- `http_rpc_node_addr` (Sui GraphQL): USDC deposits can be checked;
- both and `atoma_package_id`: the Atoma package's events are followed, and nodes registered on chain
  that told the proxy their URL (NodeRegistrationService) join the registry.
Without any of it the proxy runs as before: no chain is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.config import SuiSettings
from atoma_proxy.core.nodes.registry import NodeRegistry
from atoma_proxy.core.sui.accounts import SuiAccounts
from atoma_proxy.core.sui.chain import ChainClient, GraphQLChainClient
from atoma_proxy.core.sui.chain_registry import ChainNodeSync
from atoma_proxy.core.sui.deposits import usdc_coin_type
from atoma_proxy.core.sui.identity import proxy_keypair
from atoma_proxy.core.sui.ingest import EventIngestor
from atoma_proxy.core.sui.registration_service import NodeRegistrationService
from atoma_proxy.core.sui.stacks import ChainStackBuyer, StackSettings
from atoma_proxy.sui.crypto import SuiKeypair

__all__ = ["SuiRuntime"]

log = logging.getLogger(__name__)
REFRESH_INTERVAL = 5.0  # seconds between two reloads of the chain nodes from the tables


class SuiRuntime:
    def __init__(
        self,
        settings: SuiSettings,
        sessions: async_sessionmaker[AsyncSession],
        registry: NodeRegistry,
        *,
        keypair: SuiKeypair | None = None,
        chain: ChainClient | None = None,
    ) -> None:
        self.keypair = keypair if keypair is not None else proxy_keypair(settings)
        if chain is None and settings.http_rpc_node_addr:
            chain = GraphQLChainClient(settings.http_rpc_node_addr, timeout=settings.request_timeout)
        self.chain = chain
        self.sync = ChainNodeSync(registry, sessions)
        usdc_type = usdc_coin_type(settings.usdc_package_id) if settings.usdc_package_id else None
        stacks = None
        if settings.chain_stacks:
            if not (chain and self.keypair and usdc_type and settings.atoma_package_id and settings.atoma_db):
                raise ValueError(
                    "[sui] chain_stacks needs http_rpc_node_addr, sui_keystore_path, atoma_package_id, atoma_db "
                    "and usdc_package_id"
                )
            stack_settings = StackSettings(settings.atoma_package_id, settings.atoma_db, usdc_type, settings.gas_budget)
            stacks = ChainStackBuyer(sessions, chain, self.keypair, stack_settings)
        self.accounts = SuiAccounts(
            sessions,
            chain=chain,
            proxy_address=self.keypair.address if self.keypair else None,
            usdc_type=usdc_type,
            stacks=stacks,
        )
        self.registration = NodeRegistrationService(sessions, on_change=self.sync)
        self.ingestor: EventIngestor | None = None
        self._refresher: asyncio.Task[None] | None = None
        if chain is not None and settings.atoma_package_id:
            self.ingestor = EventIngestor(
                chain, sessions, settings.atoma_package_id, page_size=min(settings.limit, 50), on_change=self.sync
            )

    async def start(self) -> None:
        await self.sync()  # nodes known from an earlier run route at once
        if self.ingestor is not None:
            self.ingestor.start()
            # Registrations accepted by another core process reach this one's registry too.
            self._refresher = asyncio.create_task(self._refresh(), name="sui-node-sync")
            log.info("following Atoma events of %s", self.ingestor.module)

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_INTERVAL)
            try:
                await self.sync()
            except Exception:
                log.exception("refreshing chain nodes failed")

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        if self.ingestor is not None:
            await self.ingestor.stop()
        if self.chain is not None:
            await self.chain.aclose()
