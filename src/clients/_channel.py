"""The gRPC channel of a client: opening it, calling through it, closing it (shared by every client)."""

# ruff: noqa: ASYNC109 - `timeout` is the gRPC deadline sent to the core, not a local wait to replace by asyncio.timeout.

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import grpc

from atoma_proxy.clients._errors import UnavailableError, from_rpc_error
from atoma_proxy.wire.metadata import AUTHORIZATION

Options = Mapping[str, str] | None


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


def call_options(
    authorization: str | None, timeout: float | None, default_timeout: float | None, metadata: Options
) -> dict[str, Any]:
    """The keyword arguments of one call: its deadline (`timeout` seconds; None: `default_timeout`; `math.inf`:
    none) and its metadata, `authorization` first (when given) unless `metadata` has its own."""
    timeout = default_timeout if timeout is None else timeout
    entries = {AUTHORIZATION: authorization} if authorization else {}
    entries.update((key.lower(), value) for key, value in (metadata or {}).items())
    return {"timeout": None if timeout == math.inf else timeout, "metadata": tuple(entries.items())}


class ChannelOwner:
    """The lifecycle of a client that owns its channel: `close()`, `async with`; and its unary calls."""

    _channel: grpc.aio.Channel
    _closed: bool = False
    default_timeout: float | None = None

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} is closed")

    async def _call(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable,
        request: Any,
        token: str | None,
        timeout: float | None,
        metadata: Options,
    ) -> Any:
        """The response of a unary call sending `authorization: Bearer <token>` (none without a token);
        a failed call raises the RoutingError its status selects."""
        self._check_open()
        authorization = f"Bearer {token}" if token else None
        try:
            return await method(request, **call_options(authorization, timeout, self.default_timeout, metadata))
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from err

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
