"""Smoke test of the benchmark's load generator (bench/loadgen.py) against an in-process node simulator.

It checks that the generator counts what it measures, never how fast anything is (speed is measured
by `make bench`, not asserted in tests).
"""

from __future__ import annotations

import pytest

from atoma_proxy.nodesim.config import SimConfig
from atoma_proxy.nodesim.server import start_node_sim
from bench.loadgen import LoadSpec, run_async, summarize


@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
async def test_load_generator_counts_successful_requests_and_latencies(stream: bool) -> None:
    async with await start_node_sim(SimConfig(node_id="bench-smoke")) as node:
        spec = LoadSpec(url=f"{node.url}/v1/chat/completions", concurrency=4, duration=0.4, warmup=0.1, stream=stream)
        samples = await run_async(spec)
        served = node.state.stats.requests_total

    assert samples.errors == {}
    assert samples.latencies, "no request completed in the window"
    assert all(latency > 0 for latency in samples.latencies)
    assert served >= len(samples.latencies)
    assert samples.connections == 4  # one keep-alive connection per worker, reused
    if stream:
        assert len(samples.ttfts) == len(samples.latencies)
        assert all(0 < ttft <= latency for ttft, latency in zip(samples.ttfts, samples.latencies, strict=True))
        assert samples.streams_with_usage == len(samples.latencies)
    else:
        assert samples.ttfts == []
    summary = summarize(samples, spec)
    assert summary["ok"] == len(samples.latencies)
    assert summary["rps"] > 0
    assert summary["p50_ms"] is not None and summary["p50_ms"] <= summary["p99_ms"]


async def test_load_generator_counts_errors_not_latencies() -> None:
    config = SimConfig(node_id="bench-smoke-broken", error_rate=1.0, error_status=503)
    async with await start_node_sim(config) as node:
        spec = LoadSpec(url=f"{node.url}/v1/chat/completions", concurrency=2, duration=0.3, warmup=0.05)
        samples = await run_async(spec)

    assert samples.latencies == []
    assert samples.errors.get("http_503", 0) > 0
    assert set(samples.errors) == {"http_503"}
