"""A lean HTTP/1.1 client for the relay's hot path: keep-alive connections per origin, httptools parsing.

Why not httpx here: profiled under load, httpx and httpcore cost about half of the core's CPU per
request (request and URL models, anyio streams, a poll() syscall per pooled connection per request
to check it is still open). This client does what the relay needs and nothing else: one POST with
a body in one write, the response status and headers, then the body as it arrives, one piece per
socket read, so SSE events that arrive together stay together (see `sse.iter_sse_batches`).
httpx stays for everything off the hot path (health probes, metrics scrapes).

Connections are kept alive and reused LIFO per origin; one the server closed is noticed by
`connection_lost` when it happens, never probed. A response released before its end closes its
connection (the node sees the disconnect and stops generating). Timeouts: `connect_timeout` to
open a connection (and to wait for a free one when `max_connections` are busy), `read_timeout` of
silence while a response is awaited or read. TLS for https origins uses the default context.
A body longer than `max_response_bytes` (its Content-Length, or the bytes read so far) raises
ResponseTooLarge, and its connection is closed.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

__all__ = ["ConnectFailed", "ConnectionBroken", "Http1Client", "Response", "ResponseTimeout", "ResponseTooLarge"]

_HIGH_WATER = 1 << 20  # body bytes buffered before the socket stops being read


class ConnectFailed(OSError):
    """No connection could be opened (refused, unreachable, name not resolved)."""


class ConnectionBroken(OSError):
    """The connection failed or closed before the response was complete, or the response was malformed."""


class ResponseTooLarge(ConnectionBroken):
    """The response body is longer than the client's `max_response_bytes`."""


class ResponseTimeout(TimeoutError):
    """Connecting, waiting for a connection, or waiting for the response took too long."""


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int
    base_path: str  # the URL's own path, prefixed to each request path
    host_header: bytes


def _origin(url: str) -> _Origin:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    default = (parts.scheme == "https" and port == 443) or (parts.scheme == "http" and port == 80)
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = (shown if default else f"{shown}:{port}").encode("ascii")
    return _Origin(parts.scheme, host, port, parts.path.rstrip("/"), host_header)


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection and the response being read on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self._headers_done = False
        self._framed = False  # Content-Length or chunked: the end is known without EOF
        self.complete = False
        self._keep_alive = False
        self._pieces: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(ConnectionBroken(f"malformed HTTP response: {error}"))
            self.close()
            return
        if self._pieces and self._buffered >= _HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        if self._headers_done and not self._framed and not self.complete:
            self.complete = True  # a body delimited by the end of the connection
            self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            reason = f": {exc}" if exc else ""
            self._fail(ConnectionBroken(f"the node closed the connection before the response was complete{reason}"))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self._headers_done = True
        self._framed = any(
            name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in value.lower())
            for name, value in self.headers
        ) or self.status in (204, 304)

    def on_body(self, body: bytes) -> None:
        self._pieces.append(body)
        self._buffered += len(body)

    def on_message_complete(self) -> None:
        self.complete = True
        self._keep_alive = self._parser.should_keep_alive()  # only valid inside the callback

    # used by the client and the response

    @property
    def reusable(self) -> bool:
        return self.complete and self._keep_alive and not self.closed and self._error is None

    def send(self, request: bytes) -> None:
        self._reset()
        assert self._transport is not None
        self._transport.write(request)

    def _fail(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, deadline: float) -> None:
        remaining = deadline - self._loop.time()
        if remaining <= 0:
            raise ResponseTimeout("the node sent nothing within the read timeout")
        self._waiter = self._loop.create_future()
        timer = self._loop.call_later(remaining, self._wake)
        try:
            await self._waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def wait_headers(self, silence: float) -> None:
        deadline = self._loop.time() + silence
        while not self._headers_done:
            if self._error is not None:
                raise self._error
            await self._wait(deadline)

    async def next_piece(self, silence: float) -> bytes | None:
        """The body bytes that arrived since the last call (None at the end), within `silence` seconds."""
        deadline = self._loop.time() + silence
        while True:
            if self._pieces:
                pieces, self._pieces, self._buffered = self._pieces, [], 0
                if self._paused and self._transport is not None:
                    self._paused = False
                    self._transport.resume_reading()
                return pieces[0] if len(pieces) == 1 else b"".join(pieces)
            if self.complete:
                return None
            if self._error is not None:
                raise self._error
            await self._wait(deadline)

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()


class _Pool:
    """The connections to one origin: idle ones LIFO, at most `limit` open."""

    def __init__(self, limit: int) -> None:
        self.idle: deque[_Connection] = deque()
        self.open = 0
        self.limit = limit
        self.waiters: deque[asyncio.Future[None]] = deque()

    def wake_one(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class Response:
    """A response whose status and headers arrived; read its body, then `release()` it (always)."""

    def __init__(self, client: Http1Client, pool: _Pool, connection: _Connection) -> None:
        self._client = client
        self._pool = pool
        self._connection: _Connection | None = connection
        self.status = connection.status
        self.headers = connection.headers

    async def pieces(self) -> AsyncIterator[bytes]:
        """The body as it arrives, one piece per socket read; ResponseTooLarge past the client's limit."""
        connection = self._connection
        assert connection is not None, "released"
        timeout = self._client.read_timeout
        limit = self._client.max_response_bytes
        if limit is not None and self.content_length() > limit:
            raise ResponseTooLarge(f"the node announced a body of more than {limit} bytes")
        size = 0
        while (piece := await connection.next_piece(timeout)) is not None:
            size += len(piece)
            if limit is not None and size > limit:
                raise ResponseTooLarge(f"the node sent a body of more than {limit} bytes")
            yield piece

    def content_length(self) -> int:
        """The announced Content-Length, 0 when there is none (or it is not a number)."""
        for name, value in self.headers:
            if name == b"content-length":
                return int(value) if value.isdigit() else 0
        return 0

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body, or its first `limit` bytes (the rest is not read)."""
        parts: list[bytes] = []
        size = 0
        async for piece in self.pieces():
            parts.append(piece)
            size += len(piece)
            if limit is not None and size >= limit:
                break
        body = b"".join(parts)
        return body if limit is None else body[:limit]

    def release(self) -> None:
        """Back to the pool when the body was read to its end; otherwise the connection is closed."""
        connection, self._connection = self._connection, None
        if connection is not None:
            self._client._release(self._pool, connection)


class Http1Client:
    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int,
        keepalive_expiry: float = 30.0,
        max_response_bytes: int | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_response_bytes = max_response_bytes
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._origins: dict[str, _Origin] = {}
        self._pools: dict[_Origin, _Pool] = {}
        self._ssl: ssl.SSLContext | None = None
        self._closed = False

    async def post(self, url: str, path: str, headers: bytes, body: bytes) -> Response:
        """POST `body` to `url` + `path`; `headers` are extra header lines, each ending in CRLF.

        Returns once the status and headers arrived. Raises ConnectFailed, ResponseTimeout or
        ConnectionBroken.
        """
        origin = self._origins.get(url)
        if origin is None:
            origin = self._origins[url] = _origin(url)
        request = b"".join(
            (
                b"POST ",
                (origin.base_path + path).encode("ascii"),
                b" HTTP/1.1\r\nhost: ",
                origin.host_header,
                b"\r\ncontent-length: ",
                str(len(body)).encode("ascii"),
                b"\r\n",
                headers,
                b"\r\n",
                body,
            )
        )
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _Pool(self._max_connections)
        connection = await self._acquire(origin, pool)
        try:
            connection.send(request)
            await connection.wait_headers(self.read_timeout)
        except BaseException:
            self._release(pool, connection)
            raise
        return Response(self, pool, connection)

    async def _acquire(self, origin: _Origin, pool: _Pool) -> _Connection:
        if self._closed:
            raise RuntimeError("the client is closed")
        now = time.monotonic()
        while pool.idle:
            connection = pool.idle.pop()
            if not connection.closed and now - connection.idle_since < self._keepalive_expiry:
                return connection
            self._discard(pool, connection)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout
        while pool.open >= pool.limit:
            waiter = loop.create_future()
            pool.waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                raise ResponseTimeout(f"no free connection within {self.connect_timeout} s") from None
            finally:
                if not waiter.done():
                    waiter.cancel()
            if pool.idle:
                return await self._acquire(origin, pool)
        pool.open += 1
        try:
            return await self._connect(origin, deadline)
        except BaseException:
            pool.open -= 1
            pool.wake_one()
            raise

    async def _connect(self, origin: _Origin, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        context = None
        if origin.scheme == "https":
            context = self._ssl = self._ssl or ssl.create_default_context()
        try:
            async with asyncio.timeout_at(deadline):
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop),
                    origin.host,
                    origin.port,
                    ssl=context,
                    server_hostname=origin.host if context else None,
                )
        except TimeoutError:
            raise ResponseTimeout(f"could not connect within {self.connect_timeout} s") from None
        except OSError as error:
            raise ConnectFailed(str(error) or type(error).__name__) from error
        return connection

    def _release(self, pool: _Pool, connection: _Connection) -> None:
        if connection.reusable and not self._closed:
            connection.idle_since = time.monotonic()
            pool.idle.append(connection)
            pool.wake_one()
        else:
            self._discard(pool, connection)

    @staticmethod
    def _discard(pool: _Pool, connection: _Connection) -> None:
        connection.close()
        pool.open -= 1
        pool.wake_one()

    def connections(self) -> int:
        """Open connections, all origins (in use, and idle ones the server has not closed)."""
        return sum(pool.open - sum(1 for c in pool.idle if c.closed) for pool in self._pools.values())

    async def aclose(self) -> None:
        self._closed = True
        for pool in self._pools.values():
            while pool.idle:
                self._discard(pool, pool.idle.pop())
