"""Queueing, injected errors, hangs, drops and client cancellation."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from atoma_proxy.nodesim import RunningNodeSim
from atoma_proxy.sim_words import count_tokens
from tests.nodesim.helpers import CHAT, EMBED, HELLO, StartSim, get_json, openai_client, post_config, wait_for_stats

SLOW_STREAM = {"tokens_per_second": 50, "reply_tokens": 10_000}  # would stream for minutes


async def test_injected_429_is_a_rate_limit_error(start_sim: StartSim) -> None:
    sim = await start_sim(error_rate=1, error_status=429)
    async with openai_client(sim) as client:
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model=CHAT, messages=HELLO)
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "1"
    stats = await get_json(sim, "/sim/stats")
    assert (stats["errors_injected"], stats["completed"], stats["requests_total"]) == (1, 0, 1)


async def test_faults_can_be_changed_live(sim: RunningNodeSim) -> None:
    response = await post_config(sim, error_rate=1, error_status=503)
    assert response.status_code == 200 and response.json()["error_status"] == 503
    async with openai_client(sim) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.embeddings.create(model=EMBED, input="x")
        assert caught.value.status_code == 503
        await post_config(sim, error_rate=0)
        assert (await client.embeddings.create(model=EMBED, input="x")).data
    bad = await post_config(sim, error_rate=3)
    assert bad.status_code == 400 and "error_rate" in bad.json()["error"]["message"]
    unknown = await post_config(sim, reply_tokens=3)
    assert unknown.status_code == 400
    assert (await get_json(sim, "/sim/config"))["error_rate"] == 0


async def test_error_draws_follow_the_rate_and_seed(start_sim: StartSim) -> None:
    outcomes = []
    for _ in range(2):
        sim = await start_sim(error_rate=0.5, seed=7)
        statuses = []
        async with httpx.AsyncClient() as client:
            for _ in range(40):
                body = {"model": CHAT, "messages": HELLO, "max_tokens": 1}
                statuses.append((await client.post(f"{sim.url}/v1/chat/completions", json=body)).status_code)
        outcomes.append(statuses)
    assert outcomes[0] == outcomes[1]  # same seed, same faults
    assert set(outcomes[0]) == {200, 500}


async def test_requests_beyond_max_concurrency_wait_in_line(start_sim: StartSim) -> None:
    sim = await start_sim(max_concurrency=1, ttft_ms=500)
    async with openai_client(sim) as client:
        first = asyncio.create_task(client.chat.completions.create(model=CHAT, messages=HELLO))
        second = asyncio.create_task(client.embeddings.create(model=EMBED, input="queued too"))
        busy = await wait_for_stats(sim, lambda s: s["waiting"] == 1)
        assert busy["in_flight"] == 1
        metrics = await _metrics_text(sim)
        waiting = [line for line in metrics.splitlines() if line.startswith("vllm:num_requests_waiting{")]
        assert sum(float(line.split()[-1]) for line in waiting) == 1
        assert "vllm:kv_cache_usage_perc{" in metrics
        await asyncio.gather(first, second)
    stats = await get_json(sim, "/sim/stats")
    assert (stats["completed"], stats["in_flight"], stats["waiting"], stats["cancelled"]) == (2, 0, 0, 0)


async def test_cancelled_waiter_frees_its_place(start_sim: StartSim) -> None:
    sim = await start_sim(max_concurrency=1, hang_rate=1)
    async with openai_client(sim) as client:
        running = asyncio.create_task(client.chat.completions.create(model=CHAT, messages=HELLO))
        await wait_for_stats(sim, lambda s: s["in_flight"] == 1)
        queued = asyncio.create_task(client.chat.completions.create(model=CHAT, messages=HELLO))
        await wait_for_stats(sim, lambda s: s["waiting"] == 1)
        queued.cancel()
        stats = await wait_for_stats(sim, lambda s: s["cancelled"] == 1)
        assert (stats["waiting"], stats["in_flight"], stats["hung"]) == (0, 1, 1)
        running.cancel()
        stats = await wait_for_stats(sim, lambda s: s["cancelled"] == 2)
    assert (stats["waiting"], stats["in_flight"], stats["hung"], stats["completed"]) == (0, 0, 1, 0)


async def test_hang_until_the_client_cancels(start_sim: StartSim) -> None:
    sim = await start_sim(hang_rate=1, max_concurrency=1)
    async with openai_client(sim) as client:
        request = asyncio.create_task(client.chat.completions.create(model=CHAT, messages=HELLO))
        stats = await wait_for_stats(sim, lambda s: s["hung"] == 1)
        assert (stats["in_flight"], stats["cancelled"]) == (1, 0)  # a hung request holds its slot
        assert not request.done()
        request.cancel()
        stats = await wait_for_stats(sim, lambda s: s["cancelled"] == 1)
    assert (stats["in_flight"], stats["completed"]) == (0, 0)
    await post_config(sim, hang_rate=0)  # the freed slot serves the next request
    async with openai_client(sim) as client:
        assert (await client.chat.completions.create(model=CHAT, messages=HELLO)).choices


async def test_httpx_closing_a_stream_early_counts_as_cancelled(start_sim: StartSim) -> None:
    sim = await start_sim(max_concurrency=1, **SLOW_STREAM)
    body = {"model": CHAT, "messages": HELLO, "stream": True}
    tokens = 0
    async with (
        httpx.AsyncClient() as client,
        client.stream("POST", f"{sim.url}/v1/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if '"content":" ' in line:
                tokens += 1
                if tokens == 3:
                    break
    stats = await wait_for_stats(sim, lambda s: s["cancelled"] == 1)
    assert (stats["in_flight"], stats["completed"], stats["dropped"]) == (0, 0, 0)
    metrics = await _metrics_text(sim)
    assert 'atoma_sim_requests_cancelled_total{model_name="atoma/sim-chat"} 1.0' in metrics


async def test_sdk_closing_a_stream_early_counts_as_cancelled(start_sim: StartSim) -> None:
    sim = await start_sim(**SLOW_STREAM)
    async with openai_client(sim) as client:
        stream = await client.chat.completions.create(model=CHAT, messages=HELLO, stream=True)
        async with stream:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    break
    stats = await wait_for_stats(sim, lambda s: s["cancelled"] == 1)
    assert (stats["in_flight"], stats["completed"]) == (0, 0)


async def test_drop_mid_stream_breaks_the_clients_stream(start_sim: StartSim) -> None:
    sim = await start_sim(drop_rate=1, drop_after_tokens=2)
    received: list[str] = []
    async with openai_client(sim) as client:
        stream = await client.chat.completions.create(model=CHAT, messages=HELLO, stream=True)
        with pytest.raises(openai.APIConnectionError):  # the SDK wraps the truncated chunked body
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    received.append(chunk.choices[0].delta.content)
    assert sum(count_tokens(content) for content in received) == 2
    stats = await wait_for_stats(sim, lambda s: s["dropped"] == 1)
    assert (stats["completed"], stats["cancelled"], stats["in_flight"]) == (0, 0, 0)


async def test_drop_without_streaming_closes_without_a_response(start_sim: StartSim) -> None:
    sim = await start_sim(drop_rate=1)
    async with openai_client(sim) as client:
        with pytest.raises(openai.APIConnectionError):
            await client.chat.completions.create(model=CHAT, messages=HELLO)
    stats = await wait_for_stats(sim, lambda s: s["dropped"] == 1)
    assert (stats["completed"], stats["cancelled"], stats["in_flight"]) == (0, 0, 0)


async def test_ttft_and_pace_shape_the_stream(start_sim: StartSim) -> None:
    # No timing assertions: the stream must still be complete and exact when paced.
    sim = await start_sim(ttft_ms=20, tokens_per_second=200, reply_tokens=5)
    async with openai_client(sim) as client:
        stream = await client.chat.completions.create(
            model=CHAT, messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert count_tokens(content) == 5
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


async def _metrics_text(sim: RunningNodeSim) -> str:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{sim.url}/metrics")).text
