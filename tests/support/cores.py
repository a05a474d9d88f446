"""A routing core (CoreServer) in the test's event loop, on a free port, over a fresh SQLite database.

async with in_process_core(nodes=[...], admin_token=ADMIN_TOKEN) as core:
    target = f"127.0.0.1:{core.port}"           # over gRPC
    channel = core.local_channel()               # or in-process, behind the same interceptors
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from atoma_proxy.config import AccountsSettings, CoreSettings, DatabaseSettings, NodeConfig, Settings
from atoma_proxy.core.server import CoreServer
from tests.support.databases import temporary_database

__all__ = ["in_process_core"]


@asynccontextmanager
async def in_process_core(
    *, nodes: Sequence[NodeConfig] = (), admin_token: str | None = None, jwt_secret: str | None = None
) -> AsyncIterator[CoreServer]:
    """A started core with these nodes; the account services need `jwt_secret`, the admin ones `admin_token`."""
    async with temporary_database("sqlite") as url:
        settings = Settings(
            database=DatabaseSettings(url=url),
            core=CoreSettings(listen="127.0.0.1:0"),
            accounts=AccountsSettings(admin_token=admin_token, jwt_secret=jwt_secret),
            nodes=list(nodes),
        )
        core = CoreServer(settings)
        await core.start()
        try:
            yield core
        finally:
            await core.stop(0)
