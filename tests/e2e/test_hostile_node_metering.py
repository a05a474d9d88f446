"""Nodes that ignore their cap or lie about usage, against a real proxy and ledger (SQLite and PostgreSQL).

    legacy  completions read only `max_tokens`         chatty  replies 80 tokens when not capped
    greedy  generates 1,000 tokens past any cap        silent  never reports usage
    liar    reports the usage a test sets (fake_usage) honest  the liar's dearer twin, for failover

The simulated models count with the simulator's tokenizer, so every cost is exact: 1 micro-USD per
prompt token and 2 per generated token (honest: 2 and 3). The ledger's default output cap is 50.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import openai
import orjson
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from atoma_proxy.config import DatabaseSettings
from atoma_proxy.core.ledger import usage_summary
from atoma_proxy.core.persistence import UserRepository, create_engine, session_factory
from atoma_proxy.generated.atoma.routing.v1 import chat_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from atoma_proxy.sim_words import chat_prompt_tokens, count_tokens
from tests.e2e._ledger import funded_key, stored_ledger
from tests.support.databases import DATABASE_KINDS
from tests.support.stack import IN_PROCESS, SimNode, Stack, StackFactory, Topology

LEGACY, CHATTY, GREEDY, SILENT, LIAR = (
    f"atoma/sim-{name}" for name in ("legacy", "chatty", "greedy", "silent", "liar")
)
DEFAULT_CAP = 50
PRICE = (1_000_000, 2_000_000)  # micro-USD per million prompt and generated tokens
NODES = [
    SimNode(
        "legacy", chat=(LEGACY,), options=("--completions-max-tokens-only", "--reply-tokens", "6000"), prices=PRICE
    ),
    SimNode("chatty", chat=(CHATTY,), options=("--reply-tokens", "80"), prices=PRICE),
    # Paced, so the proxy's cut reaches the node while it is still generating.
    SimNode(
        "greedy", chat=(GREEDY,), options=("--overproduce-tokens", "1000", "--tokens-per-second", "200"), prices=PRICE
    ),
    SimNode("silent", chat=(SILENT,), options=("--omit-usage",), prices=PRICE),
    # Paced, so a stream delivers tokens before its usage arrives.
    SimNode("liar", chat=(LIAR,), options=("--tokens-per-second", "50"), prices=PRICE),
    SimNode("honest", chat=(LIAR,), prices=(2_000_000, 3_000_000)),
]
PRICES = {node.id: node.prices for node in NODES}
SETTINGS = {
    # Never eject: every test meets the node it is about, whatever the tests before it did.
    "routing": {"eject_after_failures": 1000, "eject_min_requests": 1000},
    "ledger": {"default_max_completion_tokens": DEFAULT_CAP},
}


@pytest.fixture(scope="module", params=[Topology(IN_PROCESS, kind) for kind in DATABASE_KINDS], ids=lambda t: t.id)
def hostile(request: pytest.FixtureRequest, stack_factory: StackFactory) -> Iterator[Stack]:
    with stack_factory(
        request.param, nodes=NODES, settings=SETTINGS, sim_words=(LEGACY, CHATTY, GREEDY, SILENT, LIAR)
    ) as stack:
        yield stack


def _cost(node: str, prompt: int, completion: int) -> int:
    price_in, price_out = PRICES[node]
    return -(-(prompt * price_in + completion * price_out) // 1_000_000)


def _metadata(key: str, strategy: str | None = None) -> tuple[tuple[str, str], ...]:
    pairs = [("authorization", f"Bearer {key}")]
    if strategy:
        pairs.append(("x-atoma-routing-strategy", strategy))
    return tuple(pairs)


def _chat(model: str, text: str, **fields: Any) -> pb.ChatCompletionRequest:
    return pb.ChatCompletionRequest(model=model, messages=[chat_pb2.ChatMessage(role="user", text=text)], **fields)


def _node_requests(stack: Stack, node: str) -> list[dict[str, Any]]:
    """The bodies the node received, oldest first."""
    return [entry["body"] for entry in httpx.get(f"{stack.nodes[node]}/sim/requests").json()]


def _node_stats(stack: Stack, node: str) -> dict[str, Any]:
    return httpx.get(f"{stack.nodes[node]}/sim/stats").json()


def _set_fake_usage(stack: Stack, usage: dict[str, Any] | None) -> None:
    httpx.post(f"{stack.nodes['liar']}/sim/config", json={"fake_usage": usage}).raise_for_status()


def _reason(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info.reason


async def test_legacy_completions_send_the_node_the_reserved_cap_as_max_tokens(hostile: Stack) -> None:
    """Issue 10.1: `max_completion_tokens: 1` next to `max_tokens: 5000` must not buy 5,000 tokens for 1."""
    email, key = await funded_key(hostile.database_url, 100)  # 5,000 tokens would cost 10,001
    request = pb.CompletionRequest(
        model=LEGACY, prompt=["hi"], max_tokens=5000, extra_json='{"max_completion_tokens": 1}'
    )
    async with grpc.aio.insecure_channel(hostile.core_target) as channel:
        events = [e async for e in pb_grpc.RoutingServiceStub(channel).Completion(request, metadata=_metadata(key))]
    answer = orjson.loads(events[0].completion)
    sent = _node_requests(hostile, "legacy")[-1]
    assert sent["max_tokens"] == 1 and "max_completion_tokens" not in sent
    assert count_tokens(answer["choices"][0]["text"]) == answer["usage"]["completion_tokens"] == 1
    assert events[-1].end.cost_micro_usd == _cost("legacy", 1, 1)
    ledger = await stored_ledger(hostile.database_url, email)
    assert (ledger.debited, ledger.reserved, [r.completion_tokens for r in ledger.records]) == (3, 0, [1])


async def test_a_request_without_a_cap_tells_the_node_the_reserved_one(hostile: Stack) -> None:
    """Issue 10.2: the default reservation cap reaches the node; its natural 80-token reply is cut at 50."""
    email, key = await funded_key(hostile.database_url, 10_000_000)
    async with openai.AsyncOpenAI(base_url=f"{hostile.facade_url}/v1", api_key=key, max_retries=0) as client:
        chat = await client.chat.completions.create(model=CHATTY, messages=[{"role": "user", "content": "talk"}])
        text = await client.completions.create(model=CHATTY, prompt="talk")
    chat_sent, text_sent = _node_requests(hostile, "chatty")[-2:]
    assert chat_sent["max_tokens"] == chat_sent["max_completion_tokens"] == DEFAULT_CAP
    assert text_sent["max_tokens"] == DEFAULT_CAP and "max_completion_tokens" not in text_sent
    assert chat.usage is not None and text.usage is not None
    assert (chat.usage.completion_tokens, chat.choices[0].finish_reason) == (DEFAULT_CAP, "length")
    assert (text.usage.completion_tokens, text.choices[0].finish_reason) == (DEFAULT_CAP, "length")
    ledger = await stored_ledger(hostile.database_url, email)
    assert sorted(r.completion_tokens for r in ledger.records) == [DEFAULT_CAP, DEFAULT_CAP]
    prompt = chat_prompt_tokens([{"role": "user", "content": "talk"}])
    assert ledger.debited == _cost("chatty", prompt, DEFAULT_CAP) + _cost("chatty", 1, DEFAULT_CAP)


async def test_a_stream_past_the_cap_is_cut_ended_cleanly_and_the_node_released(hostile: Stack) -> None:
    """Issue 10.2: a node streaming 1,005 tokens for `max_tokens: 5` delivers 5, charged 5, and is hung up on."""
    email, key = await funded_key(hostile.database_url, 10_000_000)
    cancelled = _node_stats(hostile, "greedy")["cancelled"]
    messages = [{"role": "user", "content": "stream please"}]
    async with openai.AsyncOpenAI(base_url=f"{hostile.facade_url}/v1", api_key=key, max_retries=0) as client:
        stream = await client.chat.completions.create(
            model=GREEDY, messages=messages, max_tokens=5, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    tokens = [c for c in chunks if c.choices and c.choices[0].delta.content]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(tokens) == 5 and finishes == ["length"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    prompt = chat_prompt_tokens(messages)
    ledger = await stored_ledger(hostile.database_url, email)
    (record,) = ledger.records
    assert (record.outcome, record.completion_tokens, record.cost) == ("ok", 5, _cost("greedy", prompt, 5))
    assert (ledger.debited, ledger.reserved) == (record.cost, 0)
    for _ in range(100):  # the node sees the proxy hang up while it still generates
        if _node_stats(hostile, "greedy")["cancelled"] > cancelled:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the proxy never released the over-producing node")


async def test_a_non_streamed_overproduction_is_a_node_failure_and_free(hostile: Stack) -> None:
    email, key = await funded_key(hostile.database_url, 10_000_000)
    async with grpc.aio.insecure_channel(hostile.core_target) as channel:
        stub = pb_grpc.RoutingServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            _ = [e async for e in stub.ChatCompletion(_chat(GREEDY, "hi", max_tokens=5), metadata=_metadata(key))]
    assert (raised.value.code(), _reason(raised.value)) == (grpc.StatusCode.UNAVAILABLE, "NODE_FAILED")
    ledger = await stored_ledger(hostile.database_url, email)
    assert [(r.outcome, r.cost) for r in ledger.records] == [("node_failed", 0)] and ledger.reserved == 0


async def test_an_answer_without_usage_is_charged_for_its_generated_text(hostile: Stack) -> None:
    """Issue 10.3: a node that omits usage is charged its counted text, streamed or not."""
    email, key = await funded_key(hostile.database_url, 10_000_000)
    async with grpc.aio.insecure_channel(hostile.core_target) as channel:
        stub = pb_grpc.RoutingServiceStub(channel)
        unary = [e async for e in stub.ChatCompletion(_chat(SILENT, "count me", max_tokens=7), metadata=_metadata(key))]
        streamed = [
            e
            async for e in stub.ChatCompletion(
                _chat(SILENT, "count me", max_tokens=7, stream=True), metadata=_metadata(key)
            )
        ]
    assert "usage" not in orjson.loads(unary[0].completion)
    prompt = chat_prompt_tokens([{"role": "user", "content": "count me"}])
    expected = _cost("silent", prompt, 7)
    assert unary[-1].end.cost_micro_usd == streamed[-1].end.cost_micro_usd == expected
    ledger = await stored_ledger(hostile.database_url, email)
    assert [(r.prompt_tokens, r.completion_tokens, r.cost) for r in ledger.records] == [(prompt, 7, expected)] * 2


ABSURD = [
    {"completion_tokens": 2**62},
    {"completion_tokens": -1},
    {"prompt_tokens": "5"},
    {"completion_tokens": 5.5},
    {"prompt_tokens": True},
    {"total_tokens": 2**63},
    {"prompt_tokens": 10**6},  # far beyond the 9-token prompt
    {"completion_tokens": 6},  # more than max_tokens 5
]


@pytest.mark.parametrize("usage", ABSURD, ids=lambda u: orjson.dumps(u).decode())
async def test_absurd_usage_is_a_node_failure_never_a_free_request_nor_a_database_error(
    hostile: Stack, usage: dict[str, Any]
) -> None:
    """Issue 10.4: the liar's answer is refused; nothing delivered yet fails over, a stream pays what it delivered."""
    _set_fake_usage(hostile, usage)
    try:
        email, key = await funded_key(hostile.database_url, 10_000_000)
        text = "tell me the truth"
        prompt = chat_prompt_tokens([{"role": "user", "content": text}])
        # `cheapest` tries the liar first; its answer is refused, and the honest node answers.
        async with grpc.aio.insecure_channel(hostile.core_target) as channel:
            stub = pb_grpc.RoutingServiceStub(channel)
            events = [
                e
                async for e in stub.ChatCompletion(_chat(LIAR, text, max_tokens=5), metadata=_metadata(key, "cheapest"))
            ]
            call = stub.ChatCompletion(
                _chat(LIAR, text, max_tokens=5, stream=True), metadata=_metadata(key, "cheapest")
            )
            received = []
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                async for event in call:
                    received += [event.chunk] if event.chunk else list(event.chunks.chunks)
        end = events[-1].end
        assert (end.routing.node_id, end.routing.attempts, end.usage.completion_tokens) == ("honest", 2, 5)
        assert end.cost_micro_usd == _cost("honest", prompt, 5)
        # The stream delivered tokens before the liar's usage came: a node failure, charged what was delivered
        # (the last token may arrive in one read with the usage, and is then withheld with it).
        assert _reason(raised.value) == "NODE_FAILED"
        delivered = sum(1 for chunk in received if '"content":" ' in chunk)
        assert 1 <= delivered <= 5
        ledger = await stored_ledger(hostile.database_url, email)
        outcomes = sorted((r.outcome, r.node_id, r.prompt_tokens, r.completion_tokens, r.cost) for r in ledger.records)
        assert outcomes == [
            ("node_failed", "liar", prompt, delivered, _cost("liar", prompt, delivered)),
            ("ok", "honest", prompt, 5, _cost("honest", prompt, 5)),
        ]
        assert (ledger.debited, ledger.reserved, ledger.held) == (ledger.charged, 0, 0)
        engine = create_engine(DatabaseSettings(url=hostile.database_url, pool_size=1))
        try:
            async with session_factory(engine)() as session:
                user = await UserRepository(session).get_by_email(email)
                assert user is not None
                (day,) = await usage_summary(session, user.id)
        finally:
            await engine.dispose()
        assert (day.requests, day.prompt_tokens, day.completion_tokens) == (2, 2 * prompt, 5 + delivered)
        assert all(type(v) is int for v in (day.requests, day.prompt_tokens, day.completion_tokens, day.cost))
    finally:
        _set_fake_usage(hostile, None)
