"""Streaming calls: typed events in order, and cancellation reaching the core."""

import asyncio
import gc

import pytest

from atoma_proxy.clients import (
    ChatChunk,
    Completion,
    CompletionChunk,
    EventStream,
    RoutingInfo,
    StreamEnd,
    Usage,
)
from tests.clients import fake_core

HI = [{"role": "user", "content": "hi"}]
# A backstop so that a broken cancellation fails the test instead of hanging it; never reached when it works.
BACKSTOP = 30


async def test_streamed_chat_yields_chunks_then_end(client):
    stream = client.chat_completion(model="llama-3", messages=HI, stream=True, stream_options={"include_usage": True})

    events = [event async for event in stream]

    assert isinstance(stream, EventStream)
    assert [type(event) for event in events] == [ChatChunk, ChatChunk, StreamEnd]
    assert [event.json for event in events[:2]] == list(fake_core.CHAT_CHUNKS)
    assert "".join(event.data["choices"][0]["delta"]["content"] for event in events[:2]) == "Hello"
    end = events[-1]
    assert end.usage == Usage(prompt_tokens=7, completion_tokens=2, total_tokens=9)
    assert end.routing == RoutingInfo(node_id="node-a", attempts=2, request_id="req-body")
    assert end.raw.WhichOneof("event") == "end"


async def test_stream_end_without_usage_has_usage_none(client):
    events = [event async for event in client.chat_completion(model="llama-3", messages=HI, stream=True)]

    assert events[-1].usage is None


async def test_stream_end_routing_falls_back_to_trailers(client, core):
    core.routing_in_body = False

    events = [event async for event in client.chat_completion(model="llama-3", messages=HI, stream=True)]

    assert events[-1].routing == RoutingInfo(node_id="node-meta", attempts=3, request_id="req-meta")


async def test_non_streamed_chat_yields_one_completion_then_end(client):
    events = [event async for event in client.chat_completion(model="llama-3", messages=HI)]

    assert [type(event) for event in events] == [Completion, StreamEnd]
    assert events[0].json == fake_core.CHAT_COMPLETION


async def test_streamed_text_completion_yields_completion_chunks(client):
    events = [event async for event in client.completion(model="llama-3", prompt="Say hi", stream=True)]

    assert [type(event) for event in events] == [CompletionChunk, StreamEnd]
    assert events[0].data["choices"][0]["text"] == "Hi"


async def test_data_is_parsed_once(client):
    async for event in client.chat_completion(model="llama-3", messages=HI, stream=True):
        if isinstance(event, ChatChunk):
            assert event.data is event.data


async def test_break_cancels_the_rpc(client, core):
    core.hang_after_first_event = True

    async for event in client.chat_completion(model="llama-3", messages=HI, stream=True):
        assert isinstance(event, ChatChunk)
        break
    gc.collect()  # CPython frees the stream at once; this only makes other interpreters agree

    await asyncio.wait_for(core.stream_cancelled.wait(), BACKSTOP)


async def test_aclose_cancels_the_rpc(client, core):
    core.hang_after_first_event = True
    stream = client.completion(model="llama-3", prompt="Say hi", stream=True)

    first = await anext(stream)
    await stream.aclose()

    assert isinstance(first, CompletionChunk)
    await asyncio.wait_for(core.stream_cancelled.wait(), BACKSTOP)
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_leaving_async_with_cancels_the_rpc(client, core):
    core.hang_after_first_event = True

    async with client.chat_completion(model="llama-3", messages=HI, stream=True) as stream:
        await anext(stream)

    await asyncio.wait_for(core.stream_cancelled.wait(), BACKSTOP)


async def test_cancelling_the_consuming_task_cancels_the_rpc(client, core):
    core.hang_after_first_event = True
    first_event = asyncio.Event()

    async def consume():
        async for _ in client.chat_completion(model="llama-3", messages=HI, stream=True):
            first_event.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_event.wait(), BACKSTOP)
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(core.stream_cancelled.wait(), BACKSTOP)


async def test_a_batch_of_chunks_yields_one_event_per_chunk(client, core):
    core.batch_chunks = True
    events = [event async for event in client.chat_completion(model="llama-3", messages=HI, stream=True)]

    assert [type(event) for event in events] == [ChatChunk, ChatChunk, StreamEnd]
    assert [event.json for event in events[:2]] == list(fake_core.CHAT_CHUNKS)
    assert events[0].raw.WhichOneof("event") == "chunks"
