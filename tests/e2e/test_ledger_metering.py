"""Metering end to end on the shared stack: refusals before any node call, exact costs, partial streams.

The stack's simulated models count prompts with the simulator's own tokenizer, so every expected
cost below is computed exactly: ceil((prompt * input + completion * output) / 1e6) micro-USD at
the serving node's prices.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import grpc
import httpx
import openai
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from atoma_proxy.config import DatabaseSettings
from atoma_proxy.core.ledger import set_user_model_price
from atoma_proxy.core.persistence import UserRepository, create_engine, session_factory
from atoma_proxy.generated.atoma.routing.v1 import chat_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from atoma_proxy.sim_words import chat_prompt_tokens
from tests.e2e._ledger import funded_key, stored_ledger
from tests.e2e.conftest import CHAT, EMBED, SLOW_CHAT, Stack
from tests.support.databases import temporary_database_sync
from tests.support.processes import run_command

# (input, output) micro-USD per million tokens, as tests/e2e/conftest.py configures the nodes.
PRICES = {"fast": (600_000, 2_000_000), "steady": (100_000, 400_000), "slow": (100_000, 400_000)}


def _cost(node: str, prompt: int, completion: int) -> int:
    price_in, price_out = PRICES[node]
    return -(-(prompt * price_in + completion * price_out) // 1_000_000)


def _metadata(key: str, request_id: str | None = None) -> tuple[tuple[str, str], ...]:
    pairs = [("authorization", f"Bearer {key}")]
    if request_id:
        pairs.append(("x-request-id", request_id))
    return tuple(pairs)


def _chat(model: str, text: str, **fields) -> pb.ChatCompletionRequest:  # type: ignore[no-untyped-def]
    return pb.ChatCompletionRequest(model=model, messages=[chat_pb2.ChatMessage(role="user", text=text)], **fields)


def _node_requests(stack: Stack) -> int:
    return sum(httpx.get(f"{url}/sim/stats").json()["requests_total"] for url in stack.nodes.values())


async def test_an_unfunded_user_gets_402_from_the_openai_sdk_and_no_node_is_called(stack: Stack) -> None:
    _, key = await funded_key(stack.database_url, 0)
    before = _node_requests(stack)
    async with openai.AsyncOpenAI(base_url=stack.base_url, api_key=key, max_retries=0) as client:
        with pytest.raises(openai.APIStatusError) as raised:
            await client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.APIStatusError) as streamed:
            await client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi"}], stream=True)
    for error in (raised.value, streamed.value):
        assert error.status_code == 402
        assert error.code == "insufficient_quota" and error.type == "insufficient_quota"
        assert "micro-USD" in error.message
    assert _node_requests(stack) == before


async def test_insufficient_funds_over_grpc_carries_error_info_and_quota_failure(stack: Stack) -> None:
    _, key = await funded_key(stack.database_url, 5)  # far below what a 4096-token reply may cost
    async with grpc.aio.insecure_channel(stack.core_target) as channel:
        stub = pb_grpc.RoutingServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Embeddings(pb.EmbeddingsRequest(model=EMBED, input=["x " * 5000]), metadata=_metadata(key))
    error = raised.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(error)
    assert status is not None
    info, quota = error_details_pb2.ErrorInfo(), error_details_pb2.QuotaFailure()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain) == ("INSUFFICIENT_FUNDS", "atoma.network")
    assert int(info.metadata["required_micro_usd"]) > 5
    assert any(detail.Unpack(quota) for detail in status.details[1:])
    assert quota.violations[0].subject.startswith("user:")


async def test_a_stream_reports_its_exact_cost_and_the_ledger_records_it(stack: Stack) -> None:
    email, key = await funded_key(stack.database_url, 10_000_000)
    text = "what does the ledger charge, exactly?"
    async with grpc.aio.insecure_channel(stack.core_target) as channel:
        stub = pb_grpc.RoutingServiceStub(channel)
        call = stub.ChatCompletion(_chat(CHAT, text, max_tokens=7, stream=True), metadata=_metadata(key))
        events = [event async for event in call]
        trailing = dict(await call.trailing_metadata())
    end = events[-1].end
    prompt = chat_prompt_tokens([{"role": "user", "content": text}])
    assert (end.usage.prompt_tokens, end.usage.completion_tokens) == (prompt, 7)
    expected = _cost(end.routing.node_id, prompt, 7)
    assert end.cost_micro_usd == expected > 0
    assert trailing["x-atoma-cost"] == str(expected)
    ledger = await stored_ledger(stack.database_url, email)
    assert (ledger.held, ledger.reserved, ledger.debited) == (0, 0, expected)
    (record,) = ledger.records
    assert (record.node_id, record.prompt_tokens, record.completion_tokens, record.cost, record.outcome) == (
        end.routing.node_id,
        prompt,
        7,
        expected,
        "ok",
    )


async def test_non_streamed_responses_carry_the_cost_header(stack: Stack) -> None:
    email, key = await funded_key(stack.database_url, 10_000_000)
    async with openai.AsyncOpenAI(base_url=stack.base_url, api_key=key, max_retries=0) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model=CHAT, messages=[{"role": "user", "content": "one two three"}], max_tokens=4
        )
        completion = raw.parse()
        embedded = await client.embeddings.with_raw_response.create(model=EMBED, input=["alpha beta", "gamma"])
    assert completion.usage is not None
    chat_cost = _cost(raw.headers["x-atoma-node"], completion.usage.prompt_tokens, completion.usage.completion_tokens)
    assert raw.headers["x-atoma-cost"] == str(chat_cost)
    embed_cost = _cost(embedded.headers["x-atoma-node"], 3, 0)  # embeddings: input tokens at the input price
    assert embedded.headers["x-atoma-cost"] == str(embed_cost)
    ledger = await stored_ledger(stack.database_url, email)
    assert ledger.debited == ledger.charged == chat_cost + embed_cost and ledger.reserved == 0


async def test_a_client_that_leaves_mid_stream_pays_for_what_was_generated(stack: Stack) -> None:
    email, key = await funded_key(stack.database_url, 10_000_000)
    request_id = f"leave-{uuid.uuid4().hex}"
    text = "a long story please"
    async with grpc.aio.insecure_channel(stack.core_target) as channel:
        stub = pb_grpc.RoutingServiceStub(channel)
        call = stub.ChatCompletion(_chat(SLOW_CHAT, text, stream=True), metadata=_metadata(key, request_id))
        seen = 0
        async for event in call:
            if '"content":" ' in event.chunk:
                seen += 1
            if seen == 5:
                break
        call.cancel()

    async def settled():  # type: ignore[no-untyped-def]
        ledger = await stored_ledger(stack.database_url, email)
        return ledger if ledger.record_count else None

    for _ in range(200):
        ledger = await settled()
        if ledger is not None:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the cancelled stream was never settled")
    (record,) = ledger.records
    prompt = chat_prompt_tokens([{"role": "user", "content": text}])
    assert record.request_id == request_id and record.outcome == "client_cancelled"
    # The core relayed at least what the client read, far less than the 2,000-token reply.
    assert 5 <= record.completion_tokens < 2000
    assert record.prompt_tokens == prompt
    assert record.cost == _cost("slow", prompt, record.completion_tokens)
    assert (ledger.held, ledger.reserved, ledger.debited) == (0, 0, record.cost)


async def test_a_request_the_node_refuses_charges_nothing(stack: Stack) -> None:
    """The simulator refuses more than 2,000,000 generated tokens per request (n x max_tokens, with ignore_eos)."""
    email, key = await funded_key(stack.database_url, 100_000_000)
    request = _chat(CHAT, "hi", max_tokens=131_072, n=20, extra_json='{"ignore_eos": true}')
    async with grpc.aio.insecure_channel(stack.core_target) as channel:
        stub = pb_grpc.RoutingServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            _ = [e async for e in stub.ChatCompletion(request, metadata=_metadata(key))]
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ledger = await stored_ledger(stack.database_url, email)
    assert (ledger.held, ledger.reserved, ledger.debited) == (0, 0, 0)
    assert [(r.outcome, r.cost) for r in ledger.records] == [("node_rejected", 0)]


async def test_a_user_price_override_prices_that_users_requests(stack: Stack) -> None:
    email, key = await funded_key(stack.database_url, 2_500_000)
    engine = create_engine(DatabaseSettings(url=stack.database_url, pool_size=1))
    try:
        async with session_factory(engine)() as session, session.begin():
            user = await UserRepository(session).get_by_email(email)
            assert user is not None
            await set_user_model_price(
                session, user_id=user.id, model=CHAT, input_per_million=5_000_000, output_per_million=7_000_000
            )
    finally:
        await engine.dispose()
    async with openai.AsyncOpenAI(base_url=stack.base_url, api_key=key, max_retries=0) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model=CHAT, messages=[{"role": "user", "content": "priced for me"}], max_tokens=2
        )
    usage = raw.parse().usage
    assert usage is not None
    override = -(-(usage.prompt_tokens * 5_000_000 + usage.completion_tokens * 7_000_000) // 1_000_000)
    assert raw.headers["x-atoma-cost"] == str(override)
    ledger = await stored_ledger(stack.database_url, email)
    assert ledger.debited == override


def test_the_operator_cli_credits_shows_and_sets_prices(tmp_path: Path) -> None:
    with temporary_database_sync("sqlite") as database_url:
        env = {"ATOMA_DATABASE__URL": database_url}
        credit = ["balance", "credit", "--email", "op@cli.test", "--micro-usd", "2500000", "--idempotency-key", "k1"]
        assert "credited 2500000" in run_command(*credit, env=env)
        shown = run_command("balance", "show", "--email", "op@cli.test", env=env)
        assert "op@cli.test: available 2500000 micro-USD (credited 2500000, debited 0, reserved 0)" in shown
        prices = ["--model", CHAT, "--input", "5000000", "--output", "7000000"]
        assert "5000000 / 7000000" in run_command("prices", "set", "--email", "op@cli.test", *prices, env=env)
        with pytest.raises(AssertionError, match="no user with email"):
            run_command("balance", "show", "--email", "nobody@cli.test", env=env)
