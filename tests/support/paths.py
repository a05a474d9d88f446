"""A channel to servicers behind server interceptors, over either path a caller of the core may take.

    async with channel_to("grpc", interceptors, lambda server: pb_grpc.add_XServicer_to_server(s, server)) as ch:
        ...

"grpc" is a real grpc.aio server on loopback; "in-process" the LocalServer next to it (src/core/local_channel.py),
with the same interceptors: the assertions of a test hold on both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc

from atoma_proxy.core.local_channel import LocalServer

__all__ = ["PATHS", "channel_to"]

PATHS = ["grpc", "in-process"]


@asynccontextmanager
async def channel_to(
    path: str, interceptors: Sequence[grpc.aio.ServerInterceptor], register: Callable[[Any], None]
) -> AsyncIterator[Any]:
    """A channel over `path` to what `register(server)` adds to a server with `interceptors`."""
    server = grpc.aio.server(interceptors=interceptors)
    local = LocalServer(interceptors)
    register(local.recording(server))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel: Any = grpc.aio.insecure_channel(f"127.0.0.1:{port}") if path == "grpc" else local.channel()
    try:
        yield channel
    finally:
        await channel.close()
        await server.stop(0)
