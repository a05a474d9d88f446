"""/metrics of the facade and of the core move as requests are made; the overhead header and trailer."""

from __future__ import annotations

import grpc
import httpx
from prometheus_client.parser import text_string_to_metric_families

from atoma_proxy.generated.atoma.routing.v1 import chat_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from atoma_proxy.wire.metadata import OVERHEAD_MS as OVERHEAD_KEY
from tests.support.processes import free_port
from tests.telemetry.inprocess import MODEL, in_process_stack

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_of_both_processes_move_with_requests() -> None:
    async with in_process_stack() as stack, httpx.AsyncClient(timeout=30) as client:
        auth = {"authorization": f"Bearer {stack.api_key}"}
        before_core = _samples((await client.get(stack.metrics_url)).text)
        before_facade = _samples((await client.get(f"{stack.facade_url}/metrics")).text)

        chat = {"model": MODEL, "messages": [{"role": "user", "content": "one two three"}]}
        for stream in (False, True):
            response = await client.post(
                f"{stack.facade_url}/v1/chat/completions", headers=auth, json=chat | {"stream": stream}
            )
            assert response.status_code == 200, response.text
            assert float(response.headers["x-atoma-overhead-ms"]) >= 0
            assert float(response.headers["x-atoma-node-ms"]) > 0
        refused = await client.post(
            f"{stack.facade_url}/v1/chat/completions", headers={"authorization": "Bearer sk-atoma-wrong"}, json=chat
        )
        assert refused.status_code == 401

        core_text = (await client.get(stack.metrics_url)).text
        facade_text = (await client.get(f"{stack.facade_url}/metrics")).text
        assert (await client.get(stack.metrics_url.replace("/metrics", "/other"))).status_code == 404
    core, facade = _samples(core_text), _samples(facade_text)

    def moved(after: Samples, before: Samples, name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    # The core's own listener.
    assert moved(core, before_core, "atoma_chat_completions_num_requests_total", model=MODEL) == 2
    assert moved(core, before_core, "atoma_chat_completions_num_requests_total", model="other") == 1
    assert moved(core, before_core, "atoma_total_completed_requests_total", kind="chat") == 2
    assert moved(core, before_core, "atoma_total_failed_requests_total", kind="chat", reason="INVALID_API_KEY") == 1
    assert moved(core, before_core, "atoma_chat_completions_completions_tokens_total", model=MODEL) == 10
    assert moved(core, before_core, "atoma_chat_completions_input_tokens_total", model=MODEL) > 0
    assert moved(core, before_core, "atoma_spend_micro_usd_total", model=MODEL) > 0
    assert moved(core, before_core, "atoma_chat_completions_time_to_first_token_count", model=MODEL) == 1
    assert moved(core, before_core, "atoma_chat_completions_intra_token_generation_time_count", model=MODEL) == 1
    assert moved(core, before_core, "atoma_request_latency_seconds_count", kind="chat") == 3
    assert moved(core, before_core, "atoma_core_overhead_seconds_count") == 3
    assert moved(core, before_core, "atoma_node_attempts_total", node="sim-1", outcome="ok") == 2
    # Back where they were (other tests of this process may have left some behind).
    assert moved(core, before_core, "atoma_requests_in_flight", kind="chat") == 0
    assert moved(core, before_core, "atoma_ledger_reservations_held") == 0
    # Node state, read at scrape time.
    assert _value(core, "atoma_node_healthy", node="sim-1") == 1
    assert _value(core, "atoma_node_breaker_state", node="sim-1", state="closed") == 1
    assert _value(core, "atoma_node_breaker_state", node="sim-1", state="open") == 0
    assert _value(core, "atoma_node_score", node="sim-1", model=MODEL) > 0
    assert ("atoma_node_overproduced_total", (("model", MODEL), ("node", "sim-1"))) in core
    # The facade's route.
    route = "/v1/chat/completions"
    assert moved(facade, before_facade, "atoma_http_requests_total", route=route, status="200") == 2
    assert moved(facade, before_facade, "atoma_http_requests_total", route=route, status="401") == 1
    assert moved(facade, before_facade, "atoma_http_request_duration_seconds_count", route=route) == 3
    assert moved(facade, before_facade, "atoma_proxy_overhead_seconds_count") == 2
    # No per-user label, no key.
    for text in (core_text, facade_text):
        assert stack.api_key not in text and "telemetry@atoma.test" not in text
        assert all("user" not in dict(labels) for _, labels in _samples(text))


async def test_the_core_reports_its_overhead_in_the_trailing_metadata() -> None:
    async with in_process_stack() as stack, grpc.aio.insecure_channel(stack.core_target) as channel:
        chat = pb_grpc.RoutingServiceStub(channel).ChatCompletion(
            pb.ChatCompletionRequest(model=MODEL, messages=[chat_pb2.ChatMessage(role="user", text="hi")]),
            metadata=(("authorization", f"Bearer {stack.api_key}"),),
        )
        async for _ in chat:
            pass
        trailing = dict(await chat.trailing_metadata())
        assert float(trailing[OVERHEAD_KEY]) >= 0
        assert float(trailing["x-atoma-node-ms"]) > 0


async def test_a_list_of_cores_shares_the_facades_calls() -> None:
    """`ipv4:a,b` as core_target: the facade's channel sends calls to every core in turn (round_robin)."""
    from atoma_proxy.core.server import CoreServer
    from atoma_proxy.runner import FacadeServer

    async with in_process_stack() as stack:
        other_port = free_port()
        settings = stack.core.settings
        other = CoreServer(
            settings.model_copy(
                update={
                    "core": settings.core.model_copy(
                        update={"listen": f"127.0.0.1:{other_port}", "metrics_listen": None}
                    )
                }
            )
        )
        await other.start()
        target = f"ipv4:{stack.core_target},127.0.0.1:{other_port}"
        facade = FacadeServer(
            settings.model_copy(update={"facade": settings.facade.model_copy(update={"core_target": target})})
        )
        port = await facade.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                for _ in range(6):
                    response = await client.post(
                        "/v1/chat/completions",
                        headers={"authorization": f"Bearer {stack.api_key}"},
                        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
                    )
                    assert response.status_code == 200, response.text
        finally:
            await facade.stop()
            await other.stop(0)
        served = [core.registry.get("sim-1").model_stats(MODEL).successes for core in (stack.core, other)]
        assert sum(served) == 6 and min(served) > 0, served  # pick_first would send all six to one core
