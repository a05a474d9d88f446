"""Cancelling a gRPC call when the HTTP client goes away.

The request body has been read when a call starts, so what remains on the ASGI channel is the
disconnect: a watcher task waits for it and cancels the call, which the core passes on to the node.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
from starlette.types import Receive

__all__ = ["watch_disconnect"]


@asynccontextmanager
async def watch_disconnect(receive: Receive, call: grpc.aio.Call) -> AsyncIterator[asyncio.Event]:
    """While the block runs, a disconnect cancels `call`; the event says whether that happened."""
    disconnected = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected.set()
        call.cancel()

    watcher = asyncio.create_task(watch())
    try:
        yield disconnected
    finally:
        watcher.cancel()
        await asyncio.wait([watcher])
        if not watcher.cancelled():
            watcher.exception()  # retrieved, so a failed watcher is not logged as never retrieved
