"""What a hostile node can send the real transport: its limits, and its error text kept from the client."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest
from pydantic import ValidationError

from atoma_proxy.config import CoreSettings
from atoma_proxy.core.errors import NodeFailed, NodeRejectedRequest
from atoma_proxy.core.nodes.node_errors import MAX_MESSAGE_CHARS, node_error, sanitize_message
from atoma_proxy.core.nodes.registry import Node
from atoma_proxy.core.nodes.transport import MAX_METRICS_BYTES, HttpNodeTransport
from tests.core.nodes.support import make_node
from tests.core.nodes.test_http1 import Server, read_request, serve

LIMITS = CoreSettings(node_max_event_bytes=16 * 1024, node_max_response_bytes=256 * 1024)


def _answer(status: int, body: bytes, content_type: bytes = b"application/json"):  # type: ignore[no-untyped-def]
    async def respond(state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        head = b"HTTP/1.1 %d X\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n" % (status, content_type, len(body))
        writer.write(head + body)
        await writer.drain()
        await reader.read()

    return respond


def _node(url: str) -> Node:
    node = make_node("evil")
    node.url = url
    return node


async def _post(status: int, body: bytes, content_type: bytes = b"application/json") -> bytes:
    transport = HttpNodeTransport(LIMITS)
    try:
        async with serve(_answer(status, body, content_type)) as (_, url):
            return await transport.post(_node(url), "/v1/chat/completions", b"{}", request_id="r")
    finally:
        await transport.aclose()


async def test_a_node_error_message_is_cut_and_sanitized_but_keeps_type_and_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    message = "Bad request: internal: db password=hunter2 token: abc\x1b[31m " + "blah " * 200
    body = orjson.dumps({"error": {"message": message, "type": "BadRequestError", "code": "context_length_exceeded"}})
    with caplog.at_level(logging.INFO), pytest.raises(NodeRejectedRequest) as caught:
        await _post(400, body)
    shown = caught.value.message
    assert "hunter2" not in shown and "abc" not in shown and "\x1b" not in shown
    assert shown.startswith("Bad request: internal: db password=[redacted] token: [redacted]")
    assert len(shown) <= MAX_MESSAGE_CHARS
    assert caught.value.metadata == {
        "node_status": "400",
        "node_error_type": "BadRequestError",
        "node_error_code": "context_length_exceeded",
    }
    assert "hunter2" in caplog.text  # the rest is logged, not lost


@pytest.mark.parametrize(
    "body",
    [
        b"internal: db password=hunter2",
        b"<html><body>500 internal: password=hunter2</body></html>",
        b'{"error": {"message": ["hunter2"], "type": "x"}}',
    ],
)
async def test_a_node_error_that_is_not_an_openai_error_gets_a_generic_message(body: bytes) -> None:
    with pytest.raises(NodeFailed) as caught:
        await _post(500, body)
    assert caught.value.message == "Node evil answered 500."
    with pytest.raises(NodeRejectedRequest) as refused:
        await _post(422, body)
    assert refused.value.message == "The node refused the request (HTTP 422)."
    assert "hunter2" not in str(caught.value.metadata) + str(refused.value.metadata)


def test_node_error_types_and_codes_are_kept_only_when_they_are_identifiers() -> None:
    node = make_node("evil")
    odd = orjson.dumps({"error": {"message": "no", "type": "a b <script>", "code": "x" * 100}})
    assert node_error(node, 400, odd).metadata == {"node_status": "400"}
    vllm = orjson.dumps({"object": "error", "message": "too long", "type": "BadRequestError", "code": 400})
    error = node_error(node, 400, vllm)
    assert error.message == "too long" and error.metadata["node_error_code"] == "400"
    assert sanitize_message("Authorization: Bearer sk-abcdefghijklmnop") == "Authorization: [redacted] [redacted]"
    assert sanitize_message("max_tokens=5000 is more than 4096") == "max_tokens=5000 is more than 4096"


async def test_an_answer_past_the_response_limit_is_a_node_failure() -> None:
    with pytest.raises(NodeFailed, match="more than 262144 bytes"):
        await _post(200, b'{"pad":"' + b"x" * 300_000 + b'"}')


async def test_a_stream_event_past_the_event_limit_is_a_node_failure() -> None:
    async def endless_event(state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        first = b'data: {"ok":true}\n\ndata: '
        writer.write(b"%x\r\n%s\r\n" % (len(first), first))
        for _ in range(100):  # 100 KiB of one event, far past the limit, and no end
            writer.write(b"400\r\n" + b"x" * 1024 + b"\r\n")
        await writer.drain()
        await reader.read()

    transport = HttpNodeTransport(LIMITS)
    received: list[bytes] = []
    try:
        async with serve(endless_event) as (_, url):
            with pytest.raises(NodeFailed, match="an event of more than 16384 bytes"):
                async for batch in transport.stream(_node(url), "/v1/chat/completions", b"{}", request_id="r"):
                    received += batch
    finally:
        await transport.aclose()
    assert received == [b'{"ok":true}']


async def test_a_metrics_page_past_its_limit_is_not_read() -> None:
    async def metrics(state: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for size in (100, MAX_METRICS_BYTES + 1):
            await reader.readuntil(b"\r\n\r\n")
            body = b'vllm:num_requests_waiting{model_name="m"} 1\n' + b"#" * size + b"\n"
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        await reader.read()

    transport = HttpNodeTransport(LIMITS)
    try:
        async with serve(metrics) as (_, url):
            assert (await transport.fetch_metrics(_node(url))) is not None
            assert (await transport.fetch_metrics(_node(url))) is None
    finally:
        await transport.aclose()


def test_node_limits_stay_below_one_grpc_message() -> None:
    assert CoreSettings().node_max_response_bytes < 64 * 1024 * 1024
    for limits in ({"node_max_response_bytes": 64 * 1024 * 1024}, {"node_max_event_bytes": 33 * 1024 * 1024}):
        with pytest.raises(ValidationError):
            CoreSettings(**limits)  # type: ignore[arg-type]
