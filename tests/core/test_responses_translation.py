"""The Responses request -> chat body translation, and chat chunks -> Responses events (README "Responses API")."""

from __future__ import annotations

import pytest

from atoma_proxy.core.errors import InvalidRequest
from atoma_proxy.core.responses.output import ResponseStream, response_object
from atoma_proxy.core.responses.request import parse_request


def test_every_translated_field_reaches_the_chat_body() -> None:
    request = parse_request(
        {
            "model": "m",
            "instructions": "Be brief.",
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What is this?"},
                        {"type": "input_image", "image_url": "data:image/png;base64,AA", "detail": "low"},
                    ],
                },
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "42"},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"role": "assistant", "content": [{"type": "output_text", "text": "It is 42."}]},
            ],
            "max_output_tokens": 100.0,
            "temperature": 1,
            "top_p": 0.5,
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}],
            "tool_choice": {"type": "function", "name": "f"},
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}},
            "reasoning": {"effort": "low"},
            "parallel_tool_calls": False,
            "user": "u1",
            "metadata": {"k": "v"},
            "stream": True,
            "store": False,
        }
    )
    assert request.stream and request.echo["metadata"] == {"k": "v"}
    assert request.chat == {
        "model": "m",
        "max_completion_tokens": 100,
        "temperature": 1.0,
        "top_p": 0.5,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "strict": True}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True},
        },
        "reasoning_effort": "low",
        "parallel_tool_calls": False,
        "user": "u1",
        "stream": True,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "detail": "low"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
            {"role": "assistant", "content": "It is 42."},
        ],
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "hi"}, "model"),
        ({"model": "m"}, "input"),
        ({"model": "m", "input": "hi", "top_logprobs": 2}, "top_logprobs"),
        ({"model": "m", "input": "hi", "include": ["reasoning.encrypted_content"]}, "include"),
        ({"model": "m", "input": "hi", "reasoning": {"summary": "auto"}}, "reasoning.summary"),
        ({"model": "m", "input": "hi", "tool_choice": {"type": "file_search"}}, "tool_choice"),
        ({"model": "m", "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "m", "input": "hi", "temperature": 3}, "temperature"),
        ({"model": "m", "input": [{"role": "wizard", "content": "hi"}]}, "input[0].role"),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0].file_id",
        ),
    ],
)
def test_what_cannot_be_served_is_refused_by_name(body: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_request(body)
    assert caught.value.metadata == {"param": param}


def _chunk(delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_text_then_a_tool_call_become_two_items_in_order() -> None:
    stream = ResponseStream(parse_request({"model": "m", "input": "hi"}))
    events = stream.chunk(_chunk({"role": "assistant", "content": ""}))
    events += stream.chunk(_chunk({"content": "Let me look."}))
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a"'}}
    events += stream.chunk(_chunk({"tool_calls": [call]}))
    events += stream.chunk(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}, "tool_calls"))
    events += stream.chunk({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}})
    events += stream.finish(7)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["message", "function_call"]
    assert final["output"][1]["arguments"] == '{"a": 1}' and final["output"][1]["call_id"] == "call_1"
    assert final["usage"]["input_tokens"] == 5 and final["usage"]["output_tokens"] == 4
    assert final["usage"]["cost_micro_usd"] == 7 and final["usage"]["cost"] == 0.000007


def test_a_cut_answer_is_incomplete() -> None:
    request = parse_request({"model": "m", "input": "hi", "max_output_tokens": 2})
    completion = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "a b"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2},
    }
    response = response_object(request, completion)
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["content"][0]["text"] == "a b" and response["max_output_tokens"] == 2
