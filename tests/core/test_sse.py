from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atoma_proxy.core.nodes.sse import EventTooLarge, iter_sse_batches

STREAM = (
    b": keep-alive\n\n"
    b'data: {"a": 1}\n\n'
    b"event: message\ndata: line one\ndata: line two\n\n"
    b'data:{"b":2}\r\n\r\n'
    b"data: [DONE]\n\n"
)
EXPECTED = [b'{"a": 1}', b"line one\nline two", b'{"b":2}', b"[DONE]"]


async def _pieces(data: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    start = 0
    for cut in sorted(set(cuts)):
        yield data[start:cut]
        start = cut
    yield data[start:]


async def _collect(data: bytes, cuts: list[int]) -> list[bytes]:
    return [event async for batch in iter_sse_batches(_pieces(data, cuts)) for event in batch]


async def test_parses_events_fields_and_comments() -> None:
    assert await _collect(STREAM, []) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_of_the_byte_stream_gives_the_same_events(cuts: list[int]) -> None:
    import asyncio

    assert asyncio.run(_collect(STREAM, cuts)) == EXPECTED


async def test_a_final_event_without_blank_line_is_kept() -> None:
    assert await _collect(b"data: last", []) == [b"last"]


async def test_events_that_arrive_together_form_one_batch() -> None:
    pieces = [b'data: {"a":1}\n\ndata: {"b":2}\n\ndata: {"c"', b":3}\n\n: ping\n\n", b"data: [DONE]\n\n"]

    async def network() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    batches = [batch async for batch in iter_sse_batches(network())]
    assert batches == [[b'{"a":1}', b'{"b":2}'], [b'{"c":3}'], [b"[DONE]"]]


CR_STREAM = b"data: a\r\rdata: b\r\n\r\ndata: c\r\ndata: d\r\r\n\n"


@given(st.lists(st.integers(min_value=0, max_value=len(CR_STREAM)), max_size=12))
def test_any_split_of_carriage_returns_gives_the_same_events(cuts: list[int]) -> None:
    import asyncio

    assert asyncio.run(_collect(CR_STREAM, cuts)) == [b"a", b"b", b"c\nd"]


async def test_an_event_past_the_limit_fails_without_reading_further() -> None:
    pulled = 0

    async def endless_event() -> AsyncIterator[bytes]:
        nonlocal pulled
        yield b'data: {"ok":1}\n\ndata: {"content":"'
        while True:
            pulled += 1
            yield b"x" * 1024

    events: list[bytes] = []
    with pytest.raises(EventTooLarge):
        async for batch in iter_sse_batches(endless_event(), max_event_bytes=64 * 1024):
            events += batch
    assert events == [b'{"ok":1}']  # what came before the endless event was delivered
    assert pulled == 64  # refused as soon as it passed 64 KiB, not read on


async def test_a_complete_event_past_the_limit_fails_too() -> None:
    with pytest.raises(EventTooLarge):
        await _collect_limited(b"data: " + b"x" * 5000 + b"\n\ndata: [DONE]\n\n", 4096)
    assert await _collect_limited(b"data: " + b"x" * 4000 + b"\n\ndata: [DONE]\n\n", 4096) == [b"x" * 4000, b"[DONE]"]


async def _collect_limited(data: bytes, limit: int) -> list[bytes]:
    return [event async for batch in iter_sse_batches(_pieces(data, []), limit) for event in batch]
