"""Cancelling a gRPC call when the HTTP client goes away.

The request body has been read when a call starts, so what remains is to notice the disconnect and
cancel the call, which the core passes on to the node. The facade's own HTTP protocol
(http_protocol.py) announces a lost connection through a `DisconnectSignal` it puts in each request's
ASGI scope (`scope["extensions"]["atoma.disconnect"]`): the call is cancelled from the protocol's
`connection_lost`, with no task per request. Under another ASGI server (tests' in-memory transports)
a watcher task reads the ASGI channel until `http.disconnect` instead, with the same outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
from starlette.types import Receive, Scope

__all__ = ["DISCONNECT_EXTENSION", "DisconnectSignal", "disconnect_signal", "watch_disconnect"]

DISCONNECT_EXTENSION = "atoma.disconnect"


class DisconnectSignal:
    """Fired once when the client's connection is lost before its response was complete."""

    __slots__ = ("_callbacks", "fired")

    def __init__(self) -> None:
        self.fired = False
        self._callbacks: list[Callable[[], None]] = []

    def add(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the signal fires (at once when it already has)."""
        if self.fired:
            callback()
        else:
            self._callbacks.append(callback)

    def discard(self, callback: Callable[[], None]) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def fire(self) -> None:
        if self.fired:
            return
        self.fired = True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


def disconnect_signal(scope: Scope) -> DisconnectSignal | None:
    """The request's signal, when the HTTP server put one in its scope."""
    extensions: dict[str, Any] | None = scope.get("extensions")
    return None if extensions is None else extensions.get(DISCONNECT_EXTENSION)


@asynccontextmanager
async def watch_disconnect(scope: Scope, receive: Receive, call: grpc.aio.Call) -> AsyncIterator[asyncio.Event]:
    """While the block runs, a disconnect cancels `call`; the event says whether that happened."""
    disconnected = asyncio.Event()
    signal = disconnect_signal(scope)
    if signal is not None:

        def cancel() -> None:
            disconnected.set()
            call.cancel()

        signal.add(cancel)
        try:
            yield disconnected
        finally:
            signal.discard(cancel)
        return

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
