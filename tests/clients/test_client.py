"""RoutingClient against the fake core: typed results, request building, call options, lifecycle."""

import math
import socket

import grpc
import orjson
import pytest

from atoma_proxy.clients import (
    ChatCompletionResult,
    CompletionResult,
    EmbeddingsResult,
    ImagesResult,
    InvalidRequestError,
    Model,
    NodeStatus,
    RoutingClient,
    RoutingInfo,
    UnavailableError,
    Usage,
)
from atoma_proxy.generated.atoma.routing.v1 import chat_pb2, common_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from tests.clients import fake_core
from tests.clients.conftest import API_KEY

USAGE = Usage(prompt_tokens=7, completion_tokens=2, total_tokens=9)
BODY_ROUTING = RoutingInfo(node_id="node-a", attempts=2, request_id="req-body")
HI = [{"role": "user", "content": "hi"}]


async def test_list_models_returns_models(client, core):
    models = await client.list_models()

    assert [(m.id, m.object, m.created, m.owned_by) for m in models] == [
        ("llama-3", "model", 1686935002, "atoma"),
        ("qwen-2", "model", 1686935003, "atoma"),
    ]
    assert all(isinstance(m, Model) and isinstance(m.raw, pb.Model) for m in models)
    assert core.calls[-1].method == "ListModels"


async def test_list_nodes_returns_node_statuses(client):
    nodes = await client.list_nodes()

    assert all(isinstance(node, NodeStatus) for node in nodes)
    assert nodes[0].node_id == "node-a"
    assert nodes[0].models == ("llama-3", "qwen-2")
    assert (nodes[0].healthy, nodes[0].in_flight) == (True, 3)
    assert (nodes[0].input_price_per_million, nodes[0].output_price_per_million) == (150_000, 600_000)
    assert (nodes[1].node_id, nodes[1].healthy) == ("node-b", False)
    assert nodes[1].raw == pb.NodeStatus(node_id="node-b", models=["llama-3"], healthy=False)


async def test_chat_completion_create_returns_the_completion_with_usage_and_routing(client):
    result = await client.chat_completion_create(model="llama-3", messages=HI)

    assert isinstance(result, ChatCompletionResult)
    assert result.json == fake_core.CHAT_COMPLETION
    assert result.data["choices"][0]["message"]["content"] == "Hello"
    assert result.usage == USAGE
    assert result.routing == BODY_ROUTING
    assert [message.WhichOneof("event") for message in result.raw] == ["completion", "end"]


async def test_completion_create_returns_the_text_completion(client, core):
    result = await client.completion_create(model="llama-3", prompt="Say hi", max_tokens=5)

    assert isinstance(result, CompletionResult)
    assert result.json == fake_core.TEXT_COMPLETION
    assert result.data["choices"][0]["text"] == "Hi there"
    assert (result.usage, result.routing) == (USAGE, BODY_ROUTING)
    assert core.calls[-1].request == pb.CompletionRequest(model="llama-3", prompt=["Say hi"], max_tokens=5)


async def test_create_helpers_refuse_stream_true(client, core):
    with pytest.raises(ValueError, match="chat_completion"):
        await client.chat_completion_create(model="llama-3", messages=HI, stream=True)
    with pytest.raises(ValueError, match="completion"):
        await client.completion_create(pb.CompletionRequest(model="llama-3", stream=True))
    assert core.calls == []


async def test_embeddings_returns_the_node_object_usage_and_routing(client, core):
    result = await client.embeddings(model="embed", input=["a", "b"], dimensions=2)

    assert isinstance(result, EmbeddingsResult)
    assert result.json == fake_core.EMBEDDINGS
    assert result.data["data"][0]["embedding"] == [0.5, -0.25]
    assert (result.usage, result.routing) == (USAGE, BODY_ROUTING)
    assert isinstance(result.raw, pb.EmbeddingsResponse)
    assert core.calls[-1].request == pb.EmbeddingsRequest(model="embed", input=["a", "b"], dimensions=2)


async def test_generate_images_returns_the_node_object_and_routing(client, core):
    result = await client.generate_images(model="flux", prompt="a cat", n=1, size="256x256")

    assert isinstance(result, ImagesResult)
    assert result.data["data"][0]["url"] == "https://images.example/1.png"
    assert result.routing == BODY_ROUTING
    assert core.calls[-1].request == pb.GenerateImagesRequest(model="flux", prompt="a cat", n=1, size="256x256")


async def test_routing_falls_back_to_response_metadata(client, core):
    core.routing_in_body = False

    embeddings = await client.embeddings(model="embed", input="a")
    chat = await client.chat_completion_create(model="llama-3", messages=HI)

    expected = RoutingInfo(node_id="node-meta", attempts=3, request_id="req-meta")
    assert embeddings.routing == chat.routing == expected


async def test_routing_fields_are_none_when_nobody_says(client, core):
    core.routing_in_body = False
    core.response_metadata = {"x-atoma-attempts": "not a number"}

    result = await client.generate_images(model="flux", prompt="a cat")

    assert result.routing == RoutingInfo(node_id=None, attempts=None, request_id=None)


async def test_openai_shaped_chat_fields_become_the_proto(client, core):
    messages = [
        {"role": "system", "content": "be brief", "name": "rules"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
            ],
        },
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function"}]},
        {"role": "tool", "content": "42", "tool_call_id": "call_1"},
        chat_pb2.ChatMessage(role="user", text="as a proto"),
    ]

    await client.chat_completion_create(
        model="llama-3",
        messages=messages,
        max_tokens=16,
        temperature=None,
        stop="\n",
        stream_options={"include_usage": True},
        extra={"tools": [{"type": "function", "function": {"name": "f"}}], "logprobs": True},
    )

    sent = core.calls[-1].request
    assert sent.model == "llama-3"
    assert (sent.HasField("max_tokens"), sent.max_tokens) == (True, 16)
    assert not sent.HasField("temperature")
    assert list(sent.stop) == ["\n"]
    assert not sent.HasField("stream_options")  # only read when streaming: dropped, as the facade drops it
    assert orjson.loads(sent.extra_json) == {
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "logprobs": True,
    }
    system, user, assistant, tool, proto = sent.messages
    assert (system.role, system.text, system.name, system.extra_json) == ("system", "be brief", "rules", "")
    text_part, image_part, audio_part = user.parts.parts
    assert (text_part.type, text_part.text) == ("text", "what is this?")
    assert (image_part.image_url.url, image_part.image_url.detail) == ("data:image/png;base64,AAAA", "low")
    assert audio_part.type == "input_audio"
    assert orjson.loads(audio_part.extra_json) == {"input_audio": {"data": "UklG", "format": "wav"}}
    assert assistant.WhichOneof("content") is None
    assert orjson.loads(assistant.extra_json) == {"tool_calls": [{"id": "call_1", "type": "function"}]}
    assert (tool.text, tool.tool_call_id) == ("42", "call_1")
    assert proto == chat_pb2.ChatMessage(role="user", text="as a proto")


async def test_an_image_url_with_provider_keys_is_typed_and_kept_whole(client, core):
    # The facade's rule, shared: the core sees the URL, the node gets the part exactly as written.
    image_url = {"url": "https://example.com/cat.png", "detail": "low", "x-provider": {"crop": True}}
    content = [{"type": "image_url", "image_url": image_url}, chat_pb2.ChatContentPart(type="text", text="proto")]

    await client.chat_completion_create(model="llama-3", messages=[{"role": "user", "content": content}])

    image_part, proto_part = core.calls[-1].request.messages[0].parts.parts
    assert (image_part.image_url.url, image_part.image_url.detail) == ("https://example.com/cat.png", "low")
    assert orjson.loads(image_part.extra_json) == {"image_url": image_url}
    assert proto_part == chat_pb2.ChatContentPart(type="text", text="proto")


async def test_extra_wins_over_a_keyword_and_token_protos_are_read(client, core):
    await client.completion_create(
        model="m",
        prompt_tokens=[common_pb2.TokenIds(ids=[1, 2]), [3]],
        temperature=0.5,
        extra_json='{"temperature": 1}',
    )

    assert core.calls[-1].request == pb.CompletionRequest(
        model="m", prompt_tokens=[{"ids": [1, 2]}, {"ids": [3]}], temperature=1.0
    )


@pytest.mark.parametrize(
    ("call", "param"),
    [
        (lambda c: c.chat_completion(model="m"), "messages"),
        (lambda c: c.chat_completion(model="m", messages=[{"content": "hi"}]), "messages[0].role"),
        (lambda c: c.chat_completion(model="m", messages=[], max_tokens="many"), "max_tokens"),
        (lambda c: c.completion(model="m", n=2**40), "n"),
        (lambda c: c.embeddings(model="m", input=[["a"]]), "input[0][0]"),
        (lambda c: c.completion(model="m", extra_json="[1]"), "extra_json"),
    ],
)
async def test_values_the_translation_rejects_raise_invalid_request_before_any_rpc(client, core, call, param):
    with pytest.raises(InvalidRequestError) as raised:
        result = call(client)
        if hasattr(result, "__await__"):
            await result

    assert (raised.value.code, raised.value.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    assert raised.value.metadata == {"param": param}
    assert core.calls == []


async def test_empty_content_list_is_sent_as_parts_not_null(client, core):
    await client.chat_completion_create(model="llama-3", messages=[{"role": "user", "content": []}])

    assert core.calls[-1].request.messages[0].WhichOneof("content") == "parts"


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("one", pb.CompletionRequest(model="m", prompt=["one"])),
        (["one", "two"], pb.CompletionRequest(model="m", prompt=["one", "two"])),
        ([1, 2, 3], pb.CompletionRequest(model="m", prompt_tokens=[{"ids": [1, 2, 3]}])),
        ([[1, 2], [3]], pb.CompletionRequest(model="m", prompt_tokens=[{"ids": [1, 2]}, {"ids": [3]}])),
    ],
)
async def test_every_openai_prompt_shape_reaches_the_core(client, core, prompt, expected):
    await client.completion_create(model="m", prompt=prompt)

    assert core.calls[-1].request == expected


async def test_embeddings_token_input_goes_to_input_tokens(client, core):
    await client.embeddings(model="embed", input=[[5, 6]])

    assert core.calls[-1].request == pb.EmbeddingsRequest(model="embed", input_tokens=[{"ids": [5, 6]}])


async def test_a_prebuilt_request_is_sent_unchanged(client, core):
    request = pb.ChatCompletionRequest(
        model="llama-3", messages=[chat_pb2.ChatMessage(role="user", text="hi")], seed=7, extra_json='{"x": 1}'
    )

    await client.chat_completion_create(request)

    assert core.calls[-1].request == request


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda c: c.chat_completion(pb.ChatCompletionRequest(model="m"), model="m"), "not both"),
        (lambda c: c.chat_completion(pb.CompletionRequest(model="m")), "ChatCompletionRequest"),
        (lambda c: c.chat_completion(model="m", tools=[]), "no field tools"),
        (lambda c: c.chat_completion(model="m", extra={}, extra_json="{}"), "extra or extra_json"),
        (lambda c: c.completion(model="m", prompt=[1], prompt_tokens=[[1]]), "not both"),
    ],
)
async def test_malformed_calls_raise_type_error_before_any_rpc(client, core, call, match):
    with pytest.raises(TypeError, match=match):
        call(client)
    assert core.calls == []


async def test_api_key_and_caller_metadata_reach_the_core(client, core):
    await client.list_models(metadata={"X-Trace-Id": "trace-1"})

    sent = core.calls[-1].metadata
    assert sent["authorization"] == f"Bearer {API_KEY}"
    assert sent["x-trace-id"] == "trace-1"


async def test_metadata_authorization_replaces_the_client_key(client, core):
    await client.embeddings(model="embed", input="a", metadata={"authorization": "Bearer sk-other"})

    assert core.calls[-1].metadata["authorization"] == "Bearer sk-other"


async def test_timeout_becomes_the_rpc_deadline(client, core):
    await client.list_nodes(timeout=30)
    async for _ in client.chat_completion(model="m", messages=HI, timeout=20):
        pass

    unary, stream = core.calls
    # gRPC rounds the deadline it sends; a wide margin still tells 30 from 20 from the 600 default.
    assert unary.time_remaining == pytest.approx(30, abs=4)
    assert stream.time_remaining == pytest.approx(20, abs=4)


async def test_default_timeout_applies_and_infinity_means_no_deadline(client, core):
    await client.list_models()
    await client.list_models(timeout=math.inf)

    with_default, without = core.calls
    assert with_default.time_remaining == pytest.approx(600, abs=60)
    assert without.time_remaining is None


async def test_default_timeout_none_sends_no_deadline(core):
    async with await RoutingClient.connect(core.target, api_key=API_KEY, default_timeout=None) as client:
        await client.list_models()

    assert core.calls[-1].time_remaining is None


async def test_a_closed_client_refuses_calls(core):
    client = await RoutingClient.connect(core.target, api_key=API_KEY)
    await client.close()
    await client.close()

    with pytest.raises(RuntimeError, match="closed"):
        await client.list_models()
    with pytest.raises(RuntimeError, match="closed"):
        client.chat_completion(model="m", messages=HI)


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_connect_to_nothing_raises_unavailable():
    with pytest.raises(UnavailableError) as caught:
        await RoutingClient.connect(f"127.0.0.1:{_unused_port()}", api_key=API_KEY, connect_timeout=0.2)

    assert caught.value.reason is None


async def test_a_lazy_client_reports_an_unreachable_core_on_the_first_call():
    target = f"127.0.0.1:{_unused_port()}"
    async with await RoutingClient.connect(target, api_key=API_KEY, connect_timeout=None) as client:
        with pytest.raises(UnavailableError):
            await client.list_models()
