"""The hot path's HTTP/1.1 client against raw servers on loopback: framing, reuse, failures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from atoma_proxy.core.nodes.http1 import (
    ConnectFailed,
    ConnectionBroken,
    Http1Client,
    ResponseTimeout,
    ResponseTooLarge,
)
from tests.support.processes import free_port

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


class Server:
    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed_by_client = asyncio.Event()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
    )
    return head + await reader.readexactly(length)


@asynccontextmanager
async def serve(respond: Callable[[Server, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]):  # type: ignore[no-untyped-def]
    state = Server()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            await respond(state, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield state, f"http://127.0.0.1:{port}"
    finally:
        server.close()


async def keep_answering(state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        state.requests.append(await read_request(reader))
        writer.write(OK)
        await writer.drain()


async def until(predicate: Callable[[], object]) -> None:
    """Yield to the loop until `predicate()` holds (what the servers and callbacks do takes a few turns)."""
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


def client(**overrides: float) -> Http1Client:
    options = {"connect_timeout": 5.0, "read_timeout": 5.0, "max_connections": 8, **overrides}
    return Http1Client(**options)  # type: ignore[arg-type]


async def post(http: Http1Client, url: str, body: bytes = b"{}") -> tuple[int, bytes]:
    response = await http.post(url, "/v1/x", b"x-request-id: r1\r\n", body)
    try:
        return response.status, await response.read()
    finally:
        response.release()


async def test_a_request_is_framed_and_the_connection_reused() -> None:
    http = client()
    async with serve(keep_answering) as (state, url):
        assert await post(http, url, b'{"a":1}') == (200, b"{}")
        assert await post(http, url) == (200, b"{}")
    await http.aclose()
    assert state.connections == 1
    first = state.requests[0]
    assert first.startswith(b"POST /v1/x HTTP/1.1\r\n")
    assert b"\r\nhost: 127.0.0.1:" in first and b"\r\nx-request-id: r1\r\n" in first
    assert first.endswith(b'content-length: 7\r\nx-request-id: r1\r\n\r\n{"a":1}')


async def test_the_url_path_prefixes_the_request_path() -> None:
    http = client()
    async with serve(keep_answering) as (state, url):
        await post(http, url + "/node-a/")
    await http.aclose()
    assert state.requests[0].startswith(b"POST /node-a/v1/x HTTP/1.1")


async def test_chunks_that_arrive_in_one_read_come_as_one_piece() -> None:
    async def chunked(state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"3\r\nabc\r\n3\r\ndef\r\n")  # two chunks, one write
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"1\r\ng\r\n0\r\n\r\n")
        await writer.drain()
        await reader.read()

    http = client()
    async with serve(chunked) as (_, url):
        response = await http.post(url, "/", b"", b"")
        pieces = [piece async for piece in response.pieces()]
        response.release()
    await http.aclose()
    assert b"".join(pieces) == b"abcdefg"
    assert b"abcdef" in pieces  # the two chunks of one read were not split


async def test_a_body_delimited_by_the_end_of_the_connection() -> None:
    async def until_close(state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
        await writer.drain()

    http = client()
    async with serve(until_close) as (state, url):
        assert await post(http, url) == (200, b"all of it")
        assert await post(http, url) == (200, b"all of it")
    await http.aclose()
    assert state.connections == 2  # not reused after connection: close


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def one_answer(state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.requests.append(await read_request(reader))
        writer.write(OK)
        await writer.drain()  # then the server closes: its keep-alive timeout

    http = client()
    async with serve(one_answer) as (state, url):
        assert await post(http, url) == (200, b"{}")
        await until(lambda: http.connections() == 0)  # connection_lost reaches the pool
        assert await post(http, url) == (200, b"{}")
    await http.aclose()
    assert state.connections == 2


async def test_releasing_before_the_end_closes_the_connection() -> None:
    async def endless(state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        assert await reader.read() == b""  # EOF: the client went away
        state.closed_by_client.set()

    http = client()
    async with serve(endless) as (state, url):
        response = await http.post(url, "/", b"", b"")
        pieces = response.pieces()
        assert await anext(pieces) == b"hello"
        await pieces.aclose()
        response.release()
        await asyncio.wait_for(state.closed_by_client.wait(), 10)
    assert http.connections() == 0
    await http.aclose()


async def test_a_server_that_dies_mid_body_is_a_broken_connection() -> None:
    async def dies(state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()

    http = client()
    async with serve(dies) as (_, url):
        with pytest.raises(ConnectionBroken):
            await post(http, url)
    await http.aclose()


async def test_garbage_is_a_broken_connection() -> None:
    async def garbage(state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SPDY/9 what\r\n\r\n")
        await writer.drain()
        await reader.read()

    http = client()
    async with serve(garbage) as (_, url):
        with pytest.raises(ConnectionBroken):
            await post(http, url)
    await http.aclose()


async def test_silence_is_a_timeout() -> None:
    async def silent(state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()

    http = client(read_timeout=0.2)
    async with serve(silent) as (_, url):
        with pytest.raises(ResponseTimeout):
            await post(http, url)
    await http.aclose()


async def test_nothing_listening_is_a_connect_failure() -> None:
    http = client()
    with pytest.raises(ConnectFailed):
        await post(http, f"http://127.0.0.1:{free_port()}")
    await http.aclose()


async def test_requests_beyond_the_limit_wait_for_a_free_connection() -> None:
    gate = asyncio.Event()

    async def gated(state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            state.requests.append(await read_request(reader))
            await gate.wait()
            writer.write(OK)
            await writer.drain()

    http = client(max_connections=1)
    async with serve(gated) as (state, url):
        tasks = [asyncio.create_task(post(http, url)) for _ in range(3)]
        await until(lambda: state.requests)
        assert http.connections() == 1 and len(state.requests) == 1
        gate.set()
        assert await asyncio.gather(*tasks) == [(200, b"{}")] * 3
    await http.aclose()
    assert state.connections == 1


async def test_waiting_for_a_free_connection_times_out() -> None:
    async def never(state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()

    http = client(max_connections=1, connect_timeout=0.2, read_timeout=30)
    async with serve(never) as (_, url):
        first = asyncio.create_task(post(http, url))
        await until(http.connections)
        with pytest.raises(ResponseTimeout):
            await post(http, url)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
    assert http.connections() == 0  # the cancelled request closed its connection
    await http.aclose()


@pytest.mark.parametrize("url", ["ftp://x", "http://", "not a url"])
async def test_only_http_urls(url: str) -> None:
    with pytest.raises(ValueError):
        await post(client(), url)


async def test_a_body_past_the_response_limit_is_too_large_and_closes_the_connection() -> None:
    async def endless(state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(200):  # 200 KiB, twice the limit, and no end
            writer.write(b"400\r\n" + b"x" * 1024 + b"\r\n")
        await writer.drain()
        await reader.read()

    http = Http1Client(connect_timeout=5.0, read_timeout=5.0, max_connections=8, max_response_bytes=100_000)
    async with serve(endless) as (_, url):
        response = await http.post(url, "/", b"", b"")
        received = 0
        with pytest.raises(ResponseTooLarge):
            async for piece in response.pieces():
                received += len(piece)
        response.release()
        assert received <= 100_000
        await until(lambda: http.connections() == 0)
    await http.aclose()


async def test_an_announced_body_past_the_response_limit_is_refused_before_reading() -> None:
    async def announced(state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 70000000\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        await reader.read()

    http = Http1Client(connect_timeout=5.0, read_timeout=5.0, max_connections=8, max_response_bytes=100_000)
    async with serve(announced) as (_, url):
        response = await http.post(url, "/", b"", b"")
        with pytest.raises(ResponseTooLarge, match="announced"):
            await response.read()
        response.release()
    await http.aclose()
