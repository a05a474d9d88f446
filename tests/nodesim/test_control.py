"""Health, the request log, metrics and the /sim control API."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from atoma_proxy.nodesim import RunningNodeSim, build_app
from atoma_proxy.nodesim.config import SimConfig
from tests.nodesim.helpers import CHAT, HELLO, get_json, openai_client

VLLM_NAMES = {
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:gpu_cache_usage_perc",
    "vllm:kv_cache_usage_perc",
    "vllm:time_to_first_token_seconds",
    "vllm:time_per_output_token_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:prompt_tokens",
    "vllm:generation_tokens",
    "vllm:request_success",
    "atoma_sim_requests_cancelled",
}


async def test_health(sim: RunningNodeSim) -> None:
    assert await get_json(sim, "/health") == {"status": "ok"}


async def test_request_log_keeps_unknown_fields_unchanged(sim: RunningNodeSim) -> None:
    body = {
        "model": CHAT,
        "messages": [{"role": "user", "content": "hi", "x_extra": {"deep": [1, 2.5, None, True]}}],
        "vendor_option": {"nested": ["a", {"b": 1}]},
        "top_k": 40,
        "temperature": 0.25,
        "max_tokens": 2,
    }
    async with httpx.AsyncClient() as client:
        await client.delete(f"{sim.url}/sim/requests")
        response = await client.post(
            f"{sim.url}/v1/chat/completions", json=body, headers={"X-Trace-Id": "abc", "Authorization": "Bearer k"}
        )
        assert response.status_code == 200
        await client.post(f"{sim.url}/v1/completions", content=b"not json")
        log = (await client.get(f"{sim.url}/sim/requests")).json()
        assert len(log) == 2
        assert log[0]["path"] == "/v1/chat/completions"
        assert log[0]["body"] == body
        assert log[0]["headers"]["x-trace-id"] == "abc"
        assert log[0]["headers"]["authorization"] == "Bearer k"
        assert log[1] == {"path": "/v1/completions", "headers": log[1]["headers"], "body": None}
        assert (await client.delete(f"{sim.url}/sim/requests")).status_code == 204
        assert (await client.get(f"{sim.url}/sim/requests")).json() == []


async def test_request_log_via_sdk_extra_body(sim: RunningNodeSim) -> None:
    async with openai_client(sim) as client:
        await client.chat.completions.create(
            model=CHAT,
            messages=HELLO,
            extra_body={"guided_json": {"type": "object"}, "repetition_penalty": 1.1},
            extra_headers={"X-Atoma-Test": "1"},
        )
    [entry] = (await get_json(sim, "/sim/requests"))[-1:]
    assert entry["body"]["guided_json"] == {"type": "object"}
    assert entry["body"]["repetition_penalty"] == 1.1
    assert entry["body"]["messages"] == HELLO
    assert entry["headers"]["x-atoma-test"] == "1"


async def test_request_log_keeps_the_last_100(sim: RunningNodeSim) -> None:
    async with httpx.AsyncClient() as client:
        for number in range(105):
            await client.post(f"{sim.url}/v1/embeddings", json={"model": "atoma/sim-embed", "input": str(number)})
    log = await get_json(sim, "/sim/requests")
    assert [entry["body"]["input"] for entry in log] == [str(n) for n in range(5, 105)]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


async def test_metrics_use_vllm_names_and_move(sim: RunningNodeSim) -> None:
    label = (("model_name", CHAT),)
    async with httpx.AsyncClient() as client:
        before_text = (await client.get(f"{sim.url}/metrics")).text
        async with openai_client(sim) as sdk:
            completion = await sdk.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=5)
        response = await client.get(f"{sim.url}/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert names >= VLLM_NAMES
    before, after = _samples(before_text), _samples(response.text)
    assert completion.usage is not None
    assert after[("vllm:prompt_tokens_total", label)] - before[("vllm:prompt_tokens_total", label)] == (
        completion.usage.prompt_tokens
    )
    assert after[("vllm:generation_tokens_total", label)] - before[("vllm:generation_tokens_total", label)] == 5
    success = ("vllm:request_success_total", (("finished_reason", "length"), ("model_name", CHAT)))
    assert after[success] - before[success] == 1
    for histogram in ("vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds"):
        assert after[(f"{histogram}_count", label)] - before[(f"{histogram}_count", label)] == 1
    assert after[("vllm:time_per_output_token_seconds_count", label)] == 1
    assert after[("vllm:num_requests_running", label)] == 0


def test_each_app_has_its_own_registry() -> None:
    first, second = build_app(SimConfig()), build_app(SimConfig())  # no duplicate-metric error
    assert first.state.sim.metrics.registry is not second.state.sim.metrics.registry
