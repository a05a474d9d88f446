"""Calling the core's servicers in-process: a channel-like object for the stubs the facade uses.

When the facade and the core share a process (`serve`, `demo`), the facade's generated stubs run
on a `LocalChannel` instead of a loopback gRPC connection, the way grpc-gateway's
`RegisterXxxHandlerServer` calls the server implementation directly: the request message the
stub is given reaches the servicer as is, the servicer's response messages come back as they are,
nothing is serialized and no socket is involved. The gRPC port stays open for everyone else.

It is generic: any unary-unary or unary-stream method of any service registered on the core's
server through `LocalServer.recording(server)` is reachable, behind the same server interceptors,
in the same order (the malformed-request interceptor refuses what is not valid protobuf here
too). What a grpc.aio client sees is kept:

* each call runs its interceptors and handler in a task of its own (so its own
  `contextvars.Context`, as on a grpc.aio server);
* the deadline (`timeout`) cancels the handler and ends the call with DEADLINE_EXCEEDED;
  `time_remaining()` counts down to it;
* `cancel()`, or cancelling the task that awaits the call, cancels the handler (its `finally`
  runs) and raises `asyncio.CancelledError` in the caller, as a locally cancelled grpc.aio call;
* invocation metadata in; initial metadata (sent explicitly, or empty with the first message or
  with the status), trailing metadata, code and details out; an abort's status and trailers
  (`grpc-status-details-bin` with ErrorInfo/RetryInfo) reach the caller as an `AioRpcError`;
  an exception in a handler is UNKNOWN "Unexpected <class>: text", as grpc.aio reports it;
* a stream is read with `read()` (`grpc.aio.EOF` at the end) or `async for`; at most `_WINDOW`
  messages wait unread before the handler's next `yield` waits, like a flow-control window.

Client interceptors are not applied, nor `core.max_concurrent_rpcs` (the facade's own limits
hold); client-streaming methods are not carried (no stub of the facade uses one).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from typing import Any, NamedTuple

import grpc
from grpc.aio import AbortError

from atoma_proxy.core.local_context import LocalContext, MetadataPairs
from atoma_proxy.core.telemetry import tracing
from atoma_proxy.wire.metadata import TRACEPARENT

__all__ = ["LocalChannel", "LocalServer"]

log = logging.getLogger(__name__)

_WINDOW = 16  # unread stream messages before the handler waits


class _CallDetails(NamedTuple):  # grpc.HandlerCallDetails as a grpc.aio server passes it
    method: str
    invocation_metadata: MetadataPairs


class _Recorder:
    """Stands in for the server in `add_XServicer_to_server`: registers there and remembers the handlers."""

    def __init__(self, server: grpc.aio.Server, handlers: list[grpc.GenericRpcHandler]) -> None:
        self._server = server
        self._handlers = handlers

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._handlers.extend(generic_rpc_handlers)
        self._server.add_generic_rpc_handlers(generic_rpc_handlers)

    def add_registered_method_handlers(self, service_name: str, method_handlers: dict[str, Any]) -> None:
        self._server.add_registered_method_handlers(service_name, method_handlers)


class LocalServer:
    """The handlers of a grpc.aio server and its interceptors, callable without the network."""

    def __init__(self, interceptors: Sequence[grpc.aio.ServerInterceptor] = ()) -> None:
        self._handlers: list[grpc.GenericRpcHandler] = []
        self._interceptors = tuple(interceptors)
        self._by_method: dict[str, grpc.RpcMethodHandler] = {}
        self._chain: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]] | None = None

    def recording(self, server: grpc.aio.Server) -> Any:
        """Pass this to `add_XServicer_to_server` instead of `server`: the service is served by both."""
        return _Recorder(server, self._handlers)

    def channel(self) -> LocalChannel:
        return LocalChannel(self)

    def service_names(self) -> tuple[str, ...]:
        """The full names of the services registered through `recording`, in the order they were added."""
        return tuple(h.service_name() for h in self._handlers if isinstance(h, grpc.ServiceRpcHandler))

    async def resolve(self, method: str, metadata: MetadataPairs) -> grpc.RpcMethodHandler | None:
        """The handler of `method` behind the interceptors, outermost first, as grpc.aio chains them."""
        if self._chain is None:  # built once: the interceptors and the handler lookup do not change per call
            continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]] = self._lookup
            for interceptor in reversed(self._interceptors):
                continuation = functools.partial(interceptor.intercept_service, continuation)  # type: ignore[arg-type]
            self._chain = continuation
        return await self._chain(_CallDetails(method, metadata))  # type: ignore[arg-type]

    async def _lookup(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self._by_method.get(details.method)
        if handler is None:
            for generic in self._handlers:
                handler = generic.service(details)
                if handler is not None:  # a service's handler of a method is the same object every time
                    self._by_method[details.method] = handler
                    break
        return handler


class _LocalCall:
    """One in-process RPC as its caller sees it (the grpc.aio.Call API the facade uses)."""

    def __init__(
        self, server: LocalServer, method: str, request: Any, metadata: Any, timeout: float | None, streaming: bool
    ) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        pairs = tuple(metadata or ())
        if tracing.enabled():  # what the client interceptor does over gRPC: the caller's span is the parent
            parent = tracing.traceparent(tracing.current_span())
            pairs += ((TRACEPARENT, parent),) if parent else ()
        self._context = LocalContext(method, pairs, deadline)
        self._streaming = streaming
        self._messages: collections.deque[Any] = collections.deque()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._finished = asyncio.Event()
        self._response: Any = None
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self._locally_cancelled = False
        self._callbacks: list[Callable[[Any], None]] = []
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, timeout), self._expire) if timeout is not None else None
        self._task = loop.create_task(self._run(server, request), name=f"local-rpc {method}")

    # The server side.
    async def _run(self, server: LocalServer, request: Any) -> None:
        context = self._context
        try:
            handler = await server.resolve(context.method, context.invocation_metadata())
            if handler is None:
                self._finish(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
                return
            if self._streaming:
                if handler.unary_stream is None:
                    self._finish(grpc.StatusCode.UNIMPLEMENTED, "Method is not server-streaming")
                    return
                async with contextlib.aclosing(handler.unary_stream(request, context)) as responses:
                    async for response in responses:
                        await self._deliver(response)
            else:
                if handler.unary_unary is None:
                    self._finish(grpc.StatusCode.UNIMPLEMENTED, "Method is not unary")
                    return
                self._response = await handler.unary_unary(request, context)
            self._finish(context.status_code or grpc.StatusCode.OK, context.status_details or "")
        except AbortError:
            self._finish(context.status_code or grpc.StatusCode.UNKNOWN, context.status_details or "")
        except asyncio.CancelledError:
            self._finish(grpc.StatusCode.CANCELLED, "Cancelled")  # no-op when the caller or the deadline set it
        except Exception as error:
            if context.status_code not in (None, grpc.StatusCode.OK):  # set_code() before raising wins
                self._finish(context.status_code, context.status_details or "")
                return
            log.exception("Unexpected error in an in-process call of %s", context.method)
            self._finish(grpc.StatusCode.UNKNOWN, f"Unexpected {type(error)}: {error}")

    async def _deliver(self, response: Any) -> None:
        if self._code is not None:  # the caller is gone or the deadline passed: the handler must stop
            raise asyncio.CancelledError
        self._context.mark_initial_sent()
        self._messages.append(response)
        self._readable.set()
        if len(self._messages) >= _WINDOW:
            self._writable.clear()
            await self._writable.wait()

    def _finish(self, code: grpc.StatusCode, details: str) -> None:
        if self._code is not None:
            return
        self._code, self._details = code, details
        self._context.status_code = self._context.status_code or code
        self._context.mark_initial_sent()  # a trailers-only answer has empty initial metadata
        if self._timer is not None:
            self._timer.cancel()
        self._finished.set()
        self._readable.set()
        for callback in self._callbacks:
            callback(self)

    def _expire(self) -> None:
        if self._code is None:
            self._finish(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
            self._task.cancel()

    # The client side.
    def cancel(self) -> bool:
        if self._code is not None:
            return False
        self._locally_cancelled = True
        self._finish(grpc.StatusCode.CANCELLED, "Locally cancelled by application!")
        self._task.cancel()
        return True

    def cancelled(self) -> bool:
        return self._code is grpc.StatusCode.CANCELLED

    def done(self) -> bool:
        return self._code is not None

    def time_remaining(self) -> float | None:
        return self._context.time_remaining()

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        if self._code is not None:
            callback(self)
        else:
            self._callbacks.append(callback)

    async def code(self) -> grpc.StatusCode:
        await self._finished.wait()
        assert self._code is not None
        return self._code

    async def details(self) -> str:
        await self._finished.wait()
        return self._details

    async def initial_metadata(self) -> grpc.aio.Metadata:
        await self._context.initial_sent.wait()
        return grpc.aio.Metadata(*(self._context.initial or ()))

    async def trailing_metadata(self) -> grpc.aio.Metadata:
        await self._finished.wait()
        return grpc.aio.Metadata(*self._context.trailing)

    async def wait_for_connection(self) -> None:
        return None

    def _raise_for_status(self) -> None:
        if self._locally_cancelled:
            raise asyncio.CancelledError
        if self._code is not grpc.StatusCode.OK:
            assert self._code is not None
            raise grpc.aio.AioRpcError(
                self._code,
                grpc.aio.Metadata(*(self._context.initial or ())),
                grpc.aio.Metadata(*self._context.trailing),
                self._details,
                None,
            )

    async def _wait(self, event: asyncio.Event) -> None:
        try:
            await event.wait()
        except asyncio.CancelledError:
            self.cancel()  # the caller's task was cancelled: so is the call, as in grpc.aio
            raise


class _UnaryUnaryCall(_LocalCall):
    def __await__(self) -> Generator[Any, None, Any]:
        return self._result().__await__()

    async def _result(self) -> Any:
        await self._wait(self._finished)
        self._raise_for_status()
        return self._response


class _UnaryStreamCall(_LocalCall):
    async def read(self) -> Any:
        while not self._messages:
            if self._code is not None:
                self._raise_for_status()
                return grpc.aio.EOF
            self._readable.clear()
            await self._wait(self._readable)
        message = self._messages.popleft()
        if len(self._messages) < _WINDOW:
            self._writable.set()
        return message

    async def _iterate(self) -> AsyncIterator[Any]:
        while (message := await self.read()) is not grpc.aio.EOF:
            yield message

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()


class _MultiCallable:
    def __init__(self, server: LocalServer, method: str, streaming: bool) -> None:
        self._server = server
        self._method = method
        self._streaming = streaming

    def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        kind = _UnaryStreamCall if self._streaming else _UnaryUnaryCall
        return kind(self._server, self._method, request, metadata, timeout, self._streaming)


class LocalChannel:
    """What generated stubs need of a grpc.aio.Channel: `unary_unary` and `unary_stream`."""

    def __init__(self, server: LocalServer) -> None:
        self._server = server

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> _MultiCallable:
        return _MultiCallable(self._server, method, streaming=False)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> _MultiCallable:
        return _MultiCallable(self._server, method, streaming=True)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the in-process channel carries no client-streaming method")

    stream_stream = stream_unary

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return grpc.ChannelConnectivity.READY

    async def channel_ready(self) -> None:
        return None

    async def close(self, grace: float | None = None) -> None:
        return None

    async def __aenter__(self) -> LocalChannel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
