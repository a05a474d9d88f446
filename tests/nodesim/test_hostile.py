"""The hostile-node misbehaviours: lying /metrics, garbage answers, oversized answers and endless events."""

from __future__ import annotations

import math

import httpx
import orjson
import pytest

from atoma_proxy.core.nodes.prometheus import parse_metrics_text
from atoma_proxy.nodesim.config import SimConfig, apply_runtime_update
from tests.nodesim.helpers import CHAT, EMBED, HELLO, StartSim, get_json, post_config

BODY = {"model": CHAT, "messages": HELLO, "max_tokens": 4}


async def _waiting(url: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{url}/metrics")).text
    values = [s.value for s in parse_metrics_text(text) if s.name == "vllm:num_requests_waiting"]
    assert len(values) >= 1
    return values[0]


@pytest.mark.parametrize(
    ("lie", "check"),
    [
        ("negative", lambda v: v == -1_000_000),
        ("nan", math.isnan),
        ("-inf", lambda v: v == -math.inf),
        ("huge", lambda v: v == 1e300),
    ],
)
async def test_metrics_lie_reports_the_chosen_waiting(start_sim: StartSim, lie: str, check) -> None:  # type: ignore[no-untyped-def]
    sim = await start_sim(metrics_lie=lie)
    assert check(await _waiting(sim.url))
    await post_config(sim, metrics_lie="")
    assert await _waiting(sim.url) == 0


@pytest.mark.parametrize(
    ("garbage", "valid_json"),
    [("not_json", False), ("html", False), ("non_utf8", False), ("usage_type", True)],
)
async def test_garbage_answers_with_status_200(start_sim: StartSim, garbage: str, valid_json: bool) -> None:
    sim = await start_sim(garbage=garbage)
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{sim.url}/v1/chat/completions", json=BODY)
        embedding = await client.post(f"{sim.url}/v1/embeddings", json={"model": EMBED, "input": "x"})
    assert response.status_code == embedding.status_code == 200
    if valid_json:
        assert isinstance(orjson.loads(response.content)["usage"], str)
    else:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(response.content)


async def test_garbage_mid_stream_follows_good_tokens(start_sim: StartSim) -> None:
    sim = await start_sim(garbage="not_json", garbage_after_tokens=2)
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{sim.url}/v1/chat/completions", json={**BODY, "stream": True})
    events = [e.removeprefix(b"data: ") for e in response.content.split(b"\n\n") if e]
    tokens = [orjson.loads(e) for e in events[:3]]  # the role chunk, then two tokens
    assert all(t["choices"][0]["delta"]["content"] for t in tokens[1:])
    assert events[3] == b"this is not json, sorry"
    assert events[-1] == b"[DONE]"


async def test_oversize_answer_and_endless_event(start_sim: StartSim) -> None:
    sim = await start_sim(oversize_bytes=300_000)
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{sim.url}/v1/chat/completions", json=BODY)
        assert len(response.content) == 300_000 and orjson.loads(response.content)["choices"]
        received = b""
        async with client.stream("POST", f"{sim.url}/v1/chat/completions", json={**BODY, "stream": True}) as stream:
            async for piece in stream.aiter_bytes():
                received += piece
                if len(received) >= 300_000:
                    break
    event = received[received.rindex(b"data: ") :]
    assert b"\n\n" not in event and len(event) > 250_000
    assert (await get_json(sim, "/sim/config"))["oversize_bytes"] == 300_000


def test_hostile_modes_are_checked() -> None:
    config = SimConfig()
    apply_runtime_update(config, {"garbage": "html", "garbage_after_tokens": 3, "metrics_lie": "nan"})
    assert (config.garbage, config.garbage_after_tokens, config.metrics_lie) == ("html", 3, "nan")
    for bad in ({"garbage": "lava"}, {"metrics_lie": 1}, {"oversize_bytes": -1}, {"garbage_after_tokens": 1.5}):
        with pytest.raises(ValueError):
            apply_runtime_update(config, bad)
    assert config.garbage == "html"
