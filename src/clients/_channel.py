"""The gRPC channel of a client: opening it, and closing it (shared by RoutingClient and AccountClient)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import grpc

from atoma_proxy.clients._errors import UnavailableError


async def open_channel(
    target: str,
    *,
    tls: bool | grpc.ChannelCredentials,
    channel_options: Sequence[tuple[str, Any]],
    connect_timeout: float | None,
) -> grpc.aio.Channel:
    """A channel to `target`, connected within `connect_timeout` seconds (UnavailableError otherwise)."""
    options = list(channel_options)
    interceptors = _tracing_interceptors()
    if tls is False:
        channel = grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    else:
        credentials = grpc.ssl_channel_credentials() if tls is True else tls
        channel = grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)
    if connect_timeout is not None:
        try:
            await asyncio.wait_for(channel.channel_ready(), connect_timeout)
        except TimeoutError:
            await channel.close()
            raise UnavailableError(
                f"could not connect to {target} within {connect_timeout} s", code=grpc.StatusCode.UNAVAILABLE
            ) from None
        except BaseException:
            await channel.close()
            raise
    return channel


def _tracing_interceptors() -> list[Any] | None:
    """OpenTelemetry's client interceptors when the application installed a tracer provider, else none:
    its spans then cover every call, and the W3C `traceparent` carries its trace into the proxy."""
    from opentelemetry import trace

    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return None
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors())


class ChannelOwner:
    """The lifecycle of a client that owns its channel: `close()`, `async with`."""

    _channel: grpc.aio.Channel
    _closed: bool = False

    async def close(self) -> None:
        """Close the channel, cancelling calls still running. Closing twice is harmless."""
        if not self._closed:
            self._closed = True
            await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
