"""OpenAI's Responses API through the facade, with the official `openai` SDK: translated to chat
completions in the core, metered like chat."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.e2e._ledger import funded_key, stored_ledger
from tests.e2e.conftest import CHAT, Stack

TOOL = {
    "type": "function",
    "name": "lookup",
    "description": "Look words up.",
    "parameters": {"type": "object", "properties": {"words": {"type": "string"}}, "required": ["words"]},
}


def client(stack: Stack) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=stack.base_url, api_key=stack.api_key, max_retries=0)


async def test_create_response_non_streaming(stack: Stack) -> None:
    async with client(stack) as api:
        raw = await api.responses.with_raw_response.create(
            model=CHAT, input="Tell me about routing.", instructions="Be brief.", max_output_tokens=5
        )
    response = raw.parse()
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert len(response.output_text.split()) == 5
    assert response.usage.output_tokens == 5 and response.usage.input_tokens > 0
    assert response.instructions == "Be brief." and response.max_output_tokens == 5
    assert raw.headers["x-atoma-node"] in {"fast", "steady"} and int(raw.headers["x-atoma-cost"]) > 0


async def test_create_response_streams_openai_events(stack: Stack) -> None:
    async with client(stack) as api:
        stream = await api.responses.create(
            model=CHAT,
            input=[{"role": "user", "content": [{"type": "input_text", "text": "Hello there"}]}],
            max_output_tokens=4,
            stream=True,
        )
        events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds == [
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
    assert [event.sequence_number for event in events] == list(range(len(events)))
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert events[-4].text == text and events[-2].item.content[0].text == text
    assert events[-1].response.usage.output_tokens == 4
    assert events[-1].response.output[0].content[0].text == text


async def test_stream_helper_is_metered_like_chat(stack: Stack) -> None:
    email, key = await funded_key(stack.database_url, 10**9)
    async with openai.AsyncOpenAI(base_url=stack.base_url, api_key=key, max_retries=0) as api:
        async with api.responses.stream(model=CHAT, input="Hi", max_output_tokens=1000) as stream:
            text = "".join([event.delta async for event in stream if event.type == "response.output_text.delta"])
            final = await stream.get_final_response()
    assert final.status == "completed" and final.output_text == text
    assert final.usage.output_tokens == len(text.split()) > 0
    ledger = await stored_ledger(stack.database_url, email)
    [record] = ledger.records
    assert (record.prompt_tokens, record.completion_tokens) == (final.usage.input_tokens, final.usage.output_tokens)
    assert record.outcome == "ok" and record.cost > 0 and ledger.debited == record.cost and ledger.reserved == 0


async def test_tool_call_round_trip(stack: Stack) -> None:
    async with client(stack) as api:
        first = await api.responses.create(
            model=CHAT, input="Find routing.", tools=[TOOL], tool_choice="required", max_output_tokens=50
        )
        calls = [item for item in first.output if item.type == "function_call"]
        assert len(calls) == 1 and calls[0].name == "lookup"
        arguments = json.loads(calls[0].arguments)
        assert arguments["words"]
        stream = await api.responses.create(
            model=CHAT,
            input=[
                {"role": "user", "content": "Find routing."},
                {
                    "type": "function_call",
                    "call_id": calls[0].call_id,
                    "name": "lookup",
                    "arguments": calls[0].arguments,
                },
                {"type": "function_call_output", "call_id": calls[0].call_id, "output": "routing: choosing nodes"},
            ],
            tools=[TOOL],
            max_output_tokens=3,
            stream=True,
        )
        events = [event async for event in stream]
    assert events[-1].response.output_text
    assert "response.function_call_arguments.delta" not in [event.type for event in events]


async def test_streamed_tool_call_events(stack: Stack) -> None:
    async with client(stack) as api:
        stream = await api.responses.create(
            model=CHAT,
            input="Find routing.",
            tools=[TOOL],
            tool_choice={"type": "function", "name": "lookup"},
            max_output_tokens=50,
            stream=True,
        )
        events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-3:] == ["response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    deltas = "".join(event.delta for event in events if event.type == "response.function_call_arguments.delta")
    assert events[-3].arguments == deltas and json.loads(deltas)["words"]
    assert events[-1].response.output[0].name == "lookup"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"background": True}, "background"),
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"store": True}, "store"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"input": [{"type": "input_file", "file_id": "f"}]}, "input[0].type"),
    ],
)
async def test_unsupported_parameters_are_refused_by_name(stack: Stack, extra: dict[str, object], param: str) -> None:
    body = {"model": CHAT, "input": "Hi", **extra}
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{stack.base_url}/responses", json=body, headers={"authorization": f"Bearer {stack.api_key}"}
        )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert param.split("[")[0] in response.json()["error"]["message"]


async def test_stored_responses_do_not_exist_and_say_why(stack: Stack) -> None:
    async with client(stack) as api:
        with pytest.raises(openai.NotFoundError, match="stores no responses"):
            await api.responses.retrieve("resp_123")
        with pytest.raises(openai.NotFoundError, match="stores no responses"):
            await api.responses.delete("resp_123")
