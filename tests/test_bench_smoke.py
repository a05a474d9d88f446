"""Smoke tests of the benchmark's load generator (bench/loadgen.py) against an in-process node simulator,
of its report, and of the profiler's CPU pinning.

It checks that the generator counts what it measures, never how fast anything is (speed is measured
by `make bench`, not asserted in tests).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from atoma_proxy.nodesim.config import SimConfig
from atoma_proxy.nodesim.server import start_node_sim
from bench.loadgen import LoadSpec, run_async, summarize
from bench.run import pinned_apart


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


def _run(stack: str, mode: str, concurrency: int, rps: float, servers: dict[str, float]) -> dict[str, object]:
    load = {
        "rps": rps,
        "p50_ms": 5.0,
        "p99_ms": 9.0,
        "ttft_p50_ms": 2.0 if mode == "stream" else None,
        "ttft_p99_ms": None,
        "ok": int(rps * 5),
        "errors": {},
        "client_cpu_util": 0.5,
        "window_s": 5.0,
    }
    # cpu_util such that each server spends `ms` CPU per request.
    return {
        "mode": mode,
        "concurrency": concurrency,
        "stack": stack,
        "load": load,
        "servers": {name: {"peak_rss_mb": 100.0, "cpu_util": ms * rps / 1000} for name, ms in servers.items()},
    }


def test_report_checks_each_topology_against_litellm_of_as_many_processes() -> None:
    from bench.report import aggregate, target_checks

    runs = []
    for mode in ("nonstream", "stream"):
        runs += [
            _run("direct", mode, 32, 3000, {"node": 0.3}),
            _run("atoma1", mode, 32, 1200, {"serve": 0.8}),
            _run("atoma", mode, 32, 900, {"core": 1.0, "facade": 0.5}),
            _run("litellm1", mode, 32, 100, {"litellm": 10}),
            _run("litellm", mode, 32, 200, {"litellm": 10}),
        ]
    checks = {check.name: check for check in target_checks(aggregate(runs), {})}

    one = checks["[atoma1] nonstream throughput at c=32 >= 10x LiteLLM (litellm1, as many processes)"]
    split = checks["[atoma] nonstream throughput at c=32 >= 10x LiteLLM (litellm, as many processes)"]
    assert (one.status, split.status) == ("PASS", "MISS")  # 12x the 1-worker LiteLLM; 4.5x the 2-worker one
    assert "1200 vs 100.0" in one.detail and "900 vs 200.0" in split.detail
    cpu = checks["[atoma] nonstream proxy CPU at c=32 <= 1 ms per request (all its processes)"]
    assert (cpu.status, cpu.detail) == ("MISS", "1.50 ms")  # core and facade summed
    assert checks["[atoma1] stream proxy CPU at c=32 <= 1.5 ms per request (all its processes)"].status == "PASS"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning apart needs two CPUs")
def test_profiling_pinned_apart_gives_the_proxy_a_cpu_and_puts_every_affinity_back() -> None:
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        before_server, before_me = os.sched_getaffinity(server.pid), os.sched_getaffinity(0)
        last = max(before_me)
        with pinned_apart([server.pid]) as pinning:
            assert os.sched_getaffinity(server.pid) == {last}
            assert last not in os.sched_getaffinity(0)  # the harness, and so the load generator it starts
            assert pinning.startswith(f"pinned: the proxy on CPU {last}")
        assert os.sched_getaffinity(server.pid) == before_server
        assert os.sched_getaffinity(0) == before_me
    finally:
        server.kill()
        server.wait()


def test_instruction_totals_are_summed_over_the_threads_callgrind_lists() -> None:
    from bench.instructions import parse_totals

    report = """PID 24011: /work/main/.venv/bin/python -m atoma_proxy.cli serve --no-migrate

  Totals:         Ir
   Th 1  985,533,533
   Th 2       19,685
   Th 5          432
"""
    assert parse_totals(report) == 985_533_533 + 19_685 + 432
    assert parse_totals("  No information available as instrumentation is switched off.") == 0
