"""The metering misbehaviours: over-production past the cap, omitted or fake usage, a completions
route that reads only `max_tokens`, at start and changed live."""

from __future__ import annotations

import httpx
import orjson

from atoma_proxy.nodesim import RunningNodeSim
from tests.nodesim.helpers import CHAT, HELLO, StartSim, get_json, post_config


async def _post(sim: RunningNodeSim, path: str, body: dict) -> httpx.Response:  # type: ignore[type-arg]
    async with httpx.AsyncClient() as client:
        return await client.post(f"{sim.url}{path}", json=body)


def _events(text: str) -> list[dict]:  # type: ignore[type-arg]
    data = [line[len("data: ") :] for line in text.split("\n") if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [orjson.loads(event) for event in data[:-1]]


async def test_an_overproducing_node_generates_past_the_cap_and_says_so(start_sim: StartSim) -> None:
    sim = await start_sim(overproduce_tokens=20)
    body = {"model": CHAT, "messages": HELLO, "max_tokens": 5}
    answer = (await _post(sim, "/v1/chat/completions", body)).json()
    assert answer["usage"]["completion_tokens"] == 25 and answer["choices"][0]["finish_reason"] == "length"
    streamed = await _post(sim, "/v1/chat/completions", {**body, "stream": True})
    tokens = [e for e in _events(streamed.text) if e["choices"] and e["choices"][0]["delta"].get("content")]
    assert len(tokens) == 25


async def test_a_node_can_omit_usage_streamed_or_not(start_sim: StartSim) -> None:
    sim = await start_sim(omit_usage=True)
    body = {"model": CHAT, "messages": HELLO, "max_tokens": 3}
    answer = (await _post(sim, "/v1/chat/completions", body)).json()
    assert "usage" not in answer and answer["choices"][0]["message"]["content"]
    streamed = await _post(
        sim, "/v1/chat/completions", {**body, "stream": True, "stream_options": {"include_usage": True}}
    )
    events = _events(streamed.text)
    assert events and all(not e.get("usage") for e in events)


async def test_a_node_can_report_absurd_usage_values(start_sim: StartSim) -> None:
    sim = await start_sim(fake_usage={"completion_tokens": 2**62, "prompt_tokens": "many"})
    body = {"model": CHAT, "messages": HELLO, "max_tokens": 3}
    usage = (await _post(sim, "/v1/chat/completions", body)).json()["usage"]
    assert (usage["completion_tokens"], usage["prompt_tokens"], usage["total_tokens"]) == (2**62, "many", 10 + 3)
    streamed = await _post(
        sim, "/v1/chat/completions", {**body, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert _events(streamed.text)[-1]["usage"]["completion_tokens"] == 2**62


async def test_a_completions_route_can_honour_only_max_tokens(start_sim: StartSim) -> None:
    both = {"model": CHAT, "prompt": "hi", "max_tokens": 7, "max_completion_tokens": 1}
    honest = await start_sim()
    assert (await _post(honest, "/v1/completions", both)).json()["usage"]["completion_tokens"] == 1
    legacy = await start_sim(completions_max_tokens_only=True)
    assert (await _post(legacy, "/v1/completions", both)).json()["usage"]["completion_tokens"] == 7
    # Chat still reads both caps.
    chat = {"model": CHAT, "messages": HELLO, "max_tokens": 7, "max_completion_tokens": 1}
    assert (await _post(legacy, "/v1/chat/completions", chat)).json()["usage"]["completion_tokens"] == 1


async def test_metering_faults_can_be_changed_live_and_are_checked(sim: RunningNodeSim) -> None:
    changed = await post_config(sim, overproduce_tokens=4, omit_usage=True, fake_usage={"prompt_tokens": -1})
    assert changed.status_code == 200
    view = await get_json(sim, "/sim/config")
    assert (view["overproduce_tokens"], view["omit_usage"], view["fake_usage"]) == (4, True, {"prompt_tokens": -1})
    answer = (await _post(sim, "/v1/chat/completions", {"model": CHAT, "messages": HELLO, "max_tokens": 2})).json()
    assert "usage" not in answer
    for bad in (
        {"overproduce_tokens": -1},
        {"omit_usage": 1},
        {"fake_usage": [1]},
        {"completions_max_tokens_only": "y"},
    ):
        response = await post_config(sim, **bad)
        assert response.status_code == 400 and next(iter(bad)) in response.json()["error"]["message"]
    assert (await get_json(sim, "/sim/config"))["overproduce_tokens"] == 4
