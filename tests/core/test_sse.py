from __future__ import annotations

from collections.abc import AsyncIterator

from hypothesis import given
from hypothesis import strategies as st

from atoma_proxy.core.nodes.sse import iter_sse_batches

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
