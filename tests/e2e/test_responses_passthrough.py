"""/v1/responses passed through to nodes that serve the Responses API, translated for the others,
with the official `openai` SDK against a real proxy and ledger (SQLite).

    resp         serves Responses (`apis = ["chat", "responses"]`): 1 micro-USD a prompt token, 2 an output one
    greedy       serves Responses, generates 1,000 tokens past any cap
    silent       serves Responses, never reports usage
    resp-broken  serves Responses, fails every request (cheapest of MIXED_A)   chat-fine    chat only
    chat-broken  chat only, fails every request (cheapest of MIXED_B)          resp-fine    serves Responses
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e._ledger import funded_key, stored_ledger
from tests.support.stack import IN_PROCESS, SimNode, Stack, StackFactory, Topology

RESP, GREEDY, SILENT, MIXED_A, MIXED_B = (
    f"atoma/sim-{name}" for name in ("resp", "greedy-resp", "silent-resp", "mixed-a", "mixed-b")
)
DEFAULT_CAP = 50
PRICE, CHEAP, DEAR = (1_000_000, 2_000_000), (1, 1), (2_000_000, 3_000_000)


def _node(node_id: str, model: str, *options: str, prices: tuple[int, int]) -> SimNode:
    """A node; one given `--responses` serves the Responses API and is configured so."""
    apis = ["chat", "responses"] if "--responses" in options else ["chat"]
    return SimNode(node_id, chat=(model,), options=options, prices=prices, entry={"apis": apis})


NODES = [
    _node("resp", RESP, "--responses", prices=PRICE),
    _node("greedy", GREEDY, "--responses", "--overproduce-tokens", "1000", prices=PRICE),
    _node("silent", SILENT, "--responses", "--omit-usage", prices=PRICE),
    _node("resp-broken", MIXED_A, "--responses", "--error-rate", "1", prices=CHEAP),
    _node("chat-fine", MIXED_A, prices=DEAR),
    _node("chat-broken", MIXED_B, "--error-rate", "1", prices=CHEAP),
    _node("resp-fine", MIXED_B, "--responses", prices=DEAR),
]
PRICES = {node.id: node.prices for node in NODES}
SETTINGS = {
    "routing": {"eject_after_failures": 1000, "eject_min_requests": 1000},
    "ledger": {"default_max_completion_tokens": DEFAULT_CAP},
}


@pytest.fixture(scope="module")
def passing(stack_factory: StackFactory) -> Iterator[Stack]:
    sim_words = (RESP, GREEDY, SILENT, MIXED_A, MIXED_B)
    with stack_factory(Topology(IN_PROCESS, "sqlite"), nodes=NODES, settings=SETTINGS, sim_words=sim_words) as stack:
        yield stack


def _received(stack: Stack, node: str) -> list[dict[str, Any]]:
    """What the node received since the last call (path and body), oldest first; the log is then cleared."""
    entries = httpx.get(f"{stack.nodes[node]}/sim/requests").json()
    httpx.delete(f"{stack.nodes[node]}/sim/requests")
    return [{"path": entry["path"], "body": entry["body"]} for entry in entries]


def _cost(node: str, prompt: int, completion: int) -> int:
    price_in, price_out = PRICES[node]
    return -(-(prompt * price_in + completion * price_out) // 1_000_000)


async def _client(stack: Stack) -> tuple[str, openai.AsyncOpenAI]:
    email, key = await funded_key(stack.database_url, 10**9)
    headers = {"x-atoma-routing-strategy": "cheapest"}
    return email, openai.AsyncOpenAI(base_url=stack.base_url, api_key=key, max_retries=0, default_headers=headers)


async def _charged_exactly(stack: Stack, email: str, node: str, prompt: int, completion: int) -> int:
    ledger = await stored_ledger(stack.database_url, email)
    [record] = ledger.records
    assert (record.prompt_tokens, record.completion_tokens) == (prompt, completion)
    assert record.cost == _cost(node, prompt, completion) == ledger.debited and ledger.reserved == 0
    return record.cost


async def test_non_streamed_response_is_passed_through_with_the_proxys_cap(passing: Stack) -> None:
    _received(passing, "resp")
    email, client = await _client(passing)
    async with client as api:
        raw = await api.responses.with_raw_response.create(model=RESP, input="Tell me about routing.")
    response = raw.parse()
    [received] = _received(passing, "resp")
    assert received["path"] == "/v1/responses"
    assert received["body"]["max_output_tokens"] == DEFAULT_CAP and received["body"]["store"] is False
    assert response.status == "completed" and response.output_text and response.store is False
    usage = response.usage
    cost = await _charged_exactly(passing, email, "resp", usage.input_tokens, usage.output_tokens)
    assert usage.model_extra["cost_micro_usd"] == cost == int(raw.headers["x-atoma-cost"])
    assert raw.headers["x-atoma-node"] == "resp"


async def test_streamed_response_relays_the_nodes_events_metered_exactly(passing: Stack) -> None:
    _received(passing, "resp")
    email, client = await _client(passing)
    async with client as api:
        stream = await api.responses.create(model=RESP, input="Hello there", max_output_tokens=4, stream=True)
        events = [event async for event in stream]
    [received] = _received(passing, "resp")
    assert received["path"] == "/v1/responses" and received["body"]["max_output_tokens"] == 4
    assert received["body"]["stream"] is True and received["body"]["store"] is False
    assert [event.type for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 4,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    usage = events[-1].response.usage
    assert usage.output_tokens == 4
    cost = await _charged_exactly(passing, email, "resp", usage.input_tokens, 4)
    assert usage.model_extra["cost_micro_usd"] == cost


async def test_stream_of_a_node_past_its_cap_is_cut_and_charged_at_the_cap(passing: Stack) -> None:
    email, client = await _client(passing)
    async with client as api:
        stream = await api.responses.create(model=GREEDY, input="Hello", max_output_tokens=3, stream=True)
        events = [event async for event in stream]
    deltas = [event for event in events if event.type == "response.output_text.delta"]
    assert len(deltas) == 3
    assert events[-1].type == "response.incomplete" and events[-1].response.usage.output_tokens == 3
    assert [event.sequence_number for event in events] == list(range(len(events)))
    ledger = await stored_ledger(passing.database_url, email)
    [record] = ledger.records
    assert record.completion_tokens == 3 and ledger.reserved == 0


async def test_non_streamed_overproduction_is_a_node_failure_not_a_charge(passing: Stack) -> None:
    email, client = await _client(passing)
    async with client as api:
        with pytest.raises(openai.APIStatusError) as raised:
            await api.responses.create(model=GREEDY, input="Hello", max_output_tokens=3)
    assert raised.value.status_code == 503 and "implausible usage" in raised.value.message
    ledger = await stored_ledger(passing.database_url, email)
    assert ledger.debited == 0 and ledger.reserved == 0


@pytest.mark.parametrize("stream", [False, True])
async def test_failover_from_a_responses_node_to_a_chat_node_translates(passing: Stack, stream: bool) -> None:
    _received(passing, "resp-broken"), _received(passing, "chat-fine")
    email, client = await _client(passing)
    async with client as api:
        if stream:
            events = [e async for e in await api.responses.create(model=MIXED_A, input="Hi", stream=True)]
            response = events[-1].response
        else:
            response = await api.responses.create(model=MIXED_A, input="Hi")
    assert response.status == "completed" and response.output_text
    assert [r["path"] for r in _received(passing, "resp-broken")] == ["/v1/responses"]
    [translated] = _received(passing, "chat-fine")
    assert translated["path"] == "/v1/chat/completions"
    assert translated["body"]["max_completion_tokens"] == DEFAULT_CAP
    usage = response.usage
    await _charged_exactly(passing, email, "chat-fine", usage.input_tokens, usage.output_tokens)


@pytest.mark.parametrize("stream", [False, True])
async def test_failover_from_a_chat_node_to_a_responses_node_passes_through(passing: Stack, stream: bool) -> None:
    _received(passing, "chat-broken"), _received(passing, "resp-fine")
    email, client = await _client(passing)
    async with client as api:
        if stream:
            events = [e async for e in await api.responses.create(model=MIXED_B, input="Hi", stream=True)]
            response = events[-1].response
        else:
            response = await api.responses.create(model=MIXED_B, input="Hi")
    assert response.status == "completed" and response.output_text
    assert [r["path"] for r in _received(passing, "chat-broken")] == ["/v1/chat/completions"]
    assert [r["path"] for r in _received(passing, "resp-fine")] == ["/v1/responses"]
    usage = response.usage
    await _charged_exactly(passing, email, "resp-fine", usage.input_tokens, usage.output_tokens)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_node_that_reports_no_usage_is_charged_for_the_text_it_sent(passing: Stack, stream: bool) -> None:
    email, client = await _client(passing)
    async with client as api:
        if stream:
            events = [e async for e in await api.responses.create(model=SILENT, input="Hi", stream=True)]
            text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        else:
            text = (await api.responses.create(model=SILENT, input="Hi")).output_text
    ledger = await stored_ledger(passing.database_url, email)
    [record] = ledger.records
    assert record.completion_tokens == len(text.split()) == 16  # the simulator's natural reply
    assert record.cost == _cost("silent", record.prompt_tokens, 16) == ledger.debited > 0
