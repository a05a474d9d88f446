"""The OpenAI inference routes driven by the official SDK against the scripted fake core."""

from __future__ import annotations

import openai
import orjson

from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from tests.facade.conftest import API_KEY
from tests.facade.fake_core import FakeCore, chat_chunk

MESSAGES = [{"role": "user", "content": "Say hello"}]


async def test_chat_completion_returns_the_node_json_and_forwards_auth(
    client: openai.AsyncOpenAI, core: FakeCore
) -> None:
    completion = await client.chat.completions.create(model="m1", messages=MESSAGES, max_tokens=16)

    assert completion.choices[0].message.content == "Hello!"
    assert completion.usage is not None and completion.usage.total_tokens == 7
    [request] = core.requests
    assert isinstance(request, pb.ChatCompletionRequest)
    assert request.model == "m1" and request.max_tokens == 16 and not request.stream
    assert request.messages[0].role == "user" and request.messages[0].text == "Say hello"
    assert core.metadata[0]["authorization"] == f"Bearer {API_KEY}"


async def test_chat_stream_relays_chunks_in_order(client: openai.AsyncOpenAI, core: FakeCore) -> None:
    stream = await client.chat.completions.create(model="m1", messages=MESSAGES, stream=True)
    contents = [chunk.choices[0].delta.content async for chunk in stream]

    assert contents == ["Hel", "lo"]
    assert core.requests[0].stream and not core.requests[0].HasField("stream_options")


async def test_chat_stream_relays_a_batch_of_chunks_as_separate_events(
    client: openai.AsyncOpenAI, core: FakeCore
) -> None:
    core.script.chunks = [chat_chunk("Hel"), chat_chunk("lo"), chat_chunk(usage=True)]
    core.script.batched = True
    stream = await client.chat.completions.create(
        model="m1", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]

    assert [c.choices[0].delta.content for c in chunks[:2]] == ["Hel", "lo"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


async def test_chat_stream_with_usage_ends_with_the_usage_chunk(client: openai.AsyncOpenAI, core: FakeCore) -> None:
    core.script.chunks = [chat_chunk("Hi"), chat_chunk(usage=True)]
    stream = await client.chat.completions.create(
        model="m1", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]

    assert chunks[0].choices[0].delta.content == "Hi"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 7
    assert core.requests[0].stream_options.include_usage


async def test_completion_accepts_token_prompts(client: openai.AsyncOpenAI, core: FakeCore) -> None:
    completion = await client.completions.create(model="m1", prompt=[[1, 2], [3]], max_tokens=4, stop="\n")

    assert completion.choices[0].text == "Hello!"
    [request] = core.requests
    assert [list(t.ids) for t in request.prompt_tokens] == [[1, 2], [3]]
    assert list(request.stop) == ["\n"]


async def test_completion_stream(client: openai.AsyncOpenAI, core: FakeCore) -> None:
    core.script.chunks = [
        '{"id":"c","object":"text_completion","created":1,"model":"m1","choices":'
        '[{"index":0,"text":"Hi","finish_reason":null,"logprobs":null}]}'
    ]
    stream = await client.completions.create(model="m1", prompt="Say", stream=True)

    assert [chunk.choices[0].text async for chunk in stream] == ["Hi"]
    assert list(core.requests[0].prompt) == ["Say"]


async def test_embeddings(client: openai.AsyncOpenAI, core: FakeCore) -> None:
    result = await client.embeddings.create(model="m1", input="hello", encoding_format="float", dimensions=2)

    assert result.data[0].embedding == [0.5, -0.25]
    [request] = core.requests
    assert list(request.input) == ["hello"] and request.dimensions == 2 and request.encoding_format == "float"


async def test_images(client: openai.AsyncOpenAI, core: FakeCore) -> None:
    result = await client.images.generate(model="img1", prompt="a cat", n=1, size="256x256")

    assert result.data is not None and result.data[0].url == "https://images.example/1.png"
    [request] = core.requests
    assert (request.model, request.prompt, request.n, request.size) == ("img1", "a cat", 1, "256x256")


async def test_models(client: openai.AsyncOpenAI, core: FakeCore) -> None:
    page = await client.models.list()

    assert [(m.id, m.created, m.owned_by) for m in page.data] == [("m1", 1686935002, "atoma")]


async def test_unknown_fields_reach_the_core_in_extra_json(client: openai.AsyncOpenAI, core: FakeCore) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low", "vendor": 1}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]
    await client.chat.completions.create(
        model="m1", messages=messages, tools=tools, extra_body={"top_k": 5, "vendor": {"big": 2**63 - 1}}
    )

    [request] = core.requests
    assert orjson.loads(request.extra_json) == {"tools": tools, "top_k": 5, "vendor": {"big": 2**63 - 1}}
    image = request.messages[0].parts.parts[1]
    assert image.image_url.url == "https://x/y.png"
    assert orjson.loads(image.extra_json) == {"image_url": messages[0]["content"][1]["image_url"]}
    assert orjson.loads(request.messages[1].extra_json) == {"tool_calls": messages[1]["tool_calls"]}
    assert request.messages[1].WhichOneof("content") is None
    assert request.messages[2].tool_call_id == "c1"


async def test_routing_headers_are_copied(client: openai.AsyncOpenAI, core: FakeCore) -> None:
    raw = await client.chat.completions.with_raw_response.create(model="m1", messages=MESSAGES)

    assert raw.headers["x-request-id"] == "req-123"
    assert raw.headers["x-atoma-node"] == "node-a"
    assert raw.headers["x-atoma-attempts"] == "1"


async def test_stream_headers_are_copied(client: openai.AsyncOpenAI, core: FakeCore) -> None:
    async with client.chat.completions.with_streaming_response.create(
        model="m1", messages=MESSAGES, stream=True
    ) as response:
        assert response.headers["x-atoma-node"] == "node-a"
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in response.iter_lines() if line]

    assert lines[-1] == "data: [DONE]"


async def test_documented_normalisations_reach_the_core(client: openai.AsyncOpenAI, core: FakeCore) -> None:
    body = {
        "model": "m1",
        "messages": MESSAGES,
        "max_tokens": 16.0,  # integral float -> integer
        "temperature": 1,  # integer -> float
        "stream": False,  # proto default: dropped
        "stream_options": {"include_usage": True},  # dropped when not streaming
        "user": None,  # null: dropped
        "stop": "END",  # string -> list of one
    }
    await client.post("/chat/completions", body=body, cast_to=object)

    [request] = core.requests
    assert request.max_tokens == 16 and request.temperature == 1.0
    assert list(request.stop) == ["END"]
    assert not request.HasField("stream_options") and request.extra_json == ""


async def test_openapi_document_describes_the_request_bodies(facade_http_openapi: dict) -> None:
    chat = facade_http_openapi["paths"]["/v1/chat/completions"]["post"]
    schema_ref = chat["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    component = facade_http_openapi["components"]["schemas"]["ChatCompletionRequest"]

    assert schema_ref == "#/components/schemas/ChatCompletionRequest"
    assert set(component["required"]) == {"model", "messages"} and component["additionalProperties"] is True
    assert "/v1/routing/nodes" in facade_http_openapi["paths"]
    assert "422" not in str(facade_http_openapi["paths"])


async def test_multi_line_chunks_stay_one_event(client: openai.AsyncOpenAI, core: FakeCore) -> None:
    core.script.chunks = [chat_chunk("pretty").replace(",", ",\n")]
    stream = await client.chat.completions.create(model="m1", messages=MESSAGES, stream=True)

    assert [chunk.choices[0].delta.content async for chunk in stream] == ["pretty"]
