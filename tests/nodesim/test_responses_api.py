"""The simulator's own Responses API (`responses_api`), exercised with the official SDK."""

from __future__ import annotations

import httpx
import openai
import pytest

from atoma_proxy.sim_words import count_tokens
from tests.nodesim.helpers import CHAT, StartSim, openai_client

EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
]
CLOSING = ["response.output_text.done", "response.content_part.done", "response.output_item.done"]


async def test_a_node_without_the_responses_api_answers_404(start_sim: StartSim) -> None:
    sim = await start_sim()
    async with openai_client(sim) as client:
        with pytest.raises(openai.NotFoundError):
            await client.responses.create(model=CHAT, input="Hi")


async def test_non_streamed_response_shape_usage_and_cap(start_sim: StartSim) -> None:
    sim = await start_sim(responses_api=True, reply_tokens=8)
    async with openai_client(sim) as client:
        whole = await client.responses.create(model=CHAT, input="Tell me about routing.", instructions="Be brief.")
        capped = await client.responses.create(
            model=CHAT, input=[{"role": "user", "content": [{"type": "input_text", "text": "Hi there"}]}],
            max_output_tokens=3,
        )  # fmt: skip
    assert whole.object == "response" and whole.id.startswith("resp_") and whole.status == "completed"
    assert count_tokens(whole.output_text) == 8 and whole.output[0].role == "assistant"
    assert whole.usage is not None
    assert (whole.usage.input_tokens, whole.usage.output_tokens) == (count_tokens("Be brief.Tell me about routing."), 8)
    assert whole.usage.total_tokens == whole.usage.input_tokens + 8
    assert capped.status == "incomplete" and capped.incomplete_details.reason == "max_output_tokens"
    assert capped.usage is not None and capped.usage.output_tokens == 3 and capped.usage.input_tokens == 4 + 2


async def test_streamed_response_is_openais_event_sequence(start_sim: StartSim) -> None:
    sim = await start_sim(responses_api=True, reply_tokens=5)
    async with openai_client(sim) as client:
        stream = await client.responses.create(model=CHAT, input="Hi", stream=True)
        events = [event async for event in stream]
        capped = [
            e async for e in await client.responses.create(model=CHAT, input="Hi", max_output_tokens=2, stream=True)
        ]
    assert [e.type for e in events] == [*EVENTS, *["response.output_text.delta"] * 5, *CLOSING, "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert events[-4].text == text and events[-1].response.output_text == text
    assert events[-1].response.usage.output_tokens == 5 and events[0].response.usage is None
    assert [e.type for e in capped][-1] == "response.incomplete" and capped[-1].response.usage.output_tokens == 2


async def test_usage_faults_apply_to_responses(start_sim: StartSim) -> None:
    sim = await start_sim(responses_api=True, fake_usage={"output_tokens": -1})
    async with httpx.AsyncClient(base_url=sim.url) as http:
        answer = (await http.post("/v1/responses", json={"model": CHAT, "input": "Hi"})).json()
        refused = await http.post("/v1/responses", json={"model": CHAT, "input": 5})
    assert answer["usage"]["output_tokens"] == -1
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "input"
