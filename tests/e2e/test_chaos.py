"""Chaos, black-box: node simulators and a proxy as processes; nodes are slowed, broken, killed.

Its own stack (three interchangeable nodes of one price, fast health probes, short ejections,
the ledger off so money never interferes) because the tests break nodes on purpose. Assertions
compare counts (requests each node served, failed client requests), never durations; every wait
is a bounded poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace

import grpc
import httpx
import openai
import pytest
from google.rpc import error_details_pb2, status_pb2

from atoma_proxy.generated.atoma.routing.v1 import node_admin_service_pb2 as admin_pb
from atoma_proxy.generated.atoma.routing.v1 import node_admin_service_pb2_grpc as admin_grpc
from tests.support.stack import IN_PROCESS, SimNode, Stack, StackFactory, Topology

pytestmark = pytest.mark.slow

CHAT = "atoma/chaos-chat"
LONG = "atoma/chaos-long"  # served by gamma only: a stream that is surely on the node we kill
ADMIN_MODEL = "atoma/chaos-admin"  # served by alpha's process, offered only through the admin API
HUP_MODEL = "atoma/chaos-hup"  # served by alpha's process, offered only after a configuration reload
ADMIN_TOKEN = "chaos-admin-token-0123456789"
MESSAGES = [{"role": "user", "content": "Hello there"}]
PRICE = 100_000
LONG_REPLY = {"ignore_eos": True}  # the simulator then generates exactly max_tokens
PACE = ("--tokens-per-second", "200", "--reply-tokens", "8")
# Alpha's process also serves the models the admin API and a reload offer.
ALPHA_ONLY = ("--chat-model", ADMIN_MODEL, "--chat-model", HUP_MODEL)
NODES = [
    SimNode("alpha", chat=(CHAT,), options=(*PACE, *ALPHA_ONLY), prices=(PRICE, PRICE)),
    SimNode("beta", chat=(CHAT,), options=PACE, prices=(PRICE, PRICE)),
    SimNode("gamma", chat=(CHAT, LONG), options=PACE, prices=(PRICE, PRICE)),
]
SETTINGS = {
    "core": {"health_interval": 0.25, "health_timeout": 1.0},
    "routing": {"health_max_backoff": 1.0, "ejection_time": 0.5, "max_ejection_time": 2.0, "metrics_interval": 0.5},
    "ledger": {"enabled": False},
    "accounts": {"admin_token": ADMIN_TOKEN},
}


@pytest.fixture(scope="module")
def chaos(stack_factory: StackFactory) -> Iterator[Stack]:
    with stack_factory(Topology(IN_PROCESS, "sqlite"), nodes=NODES, settings=SETTINGS, funds=0) as stack:
        yield stack


# Helpers ------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _client(chaos: Stack) -> AsyncIterator[openai.AsyncOpenAI]:
    # No SDK retries: a failed request must surface here, not be retried by the client.
    api = openai.AsyncOpenAI(base_url=chaos.base_url, api_key=chaos.api_key, max_retries=0, timeout=30)
    try:
        yield api
    finally:
        await api.close()


def _admin_headers() -> dict[str, str]:
    return {"authorization": f"Bearer {ADMIN_TOKEN}"}


async def _eventually(check: Callable[[], object], attempts: int = 200, delay: float = 0.05) -> None:
    """Polls `check` (sync or async) until it returns truthy; bounded."""
    for _ in range(attempts):
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(delay)
    raise AssertionError(f"condition never held: {check}")


async def _node_states(chaos: Stack) -> dict[str, dict]:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{chaos.facade_url}/v1/admin/nodes", headers=_admin_headers())
    assert response.status_code == 200, response.text
    return {n["node_id"]: n for n in response.json()["nodes"]}


async def _all_serving(chaos: Stack) -> None:
    async def ready() -> bool:
        states = await _node_states(chaos)
        return all(states[n]["healthy"] and states[n]["circuit_state"] != "CIRCUIT_STATE_OPEN" for n in chaos.nodes)

    await _eventually(ready)


async def _served(chaos: Stack) -> dict[str, int]:
    async with httpx.AsyncClient(timeout=10) as http:
        return {
            node_id: (await http.get(f"{url}/sim/stats")).json()["requests_total"]
            for node_id, url in chaos.nodes.items()
        }


async def _configure(chaos: Stack, node_id: str, **fields: object) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(f"{chaos.nodes[node_id]}/sim/config", json=fields)
    assert response.status_code == 200, response.text


async def _load(chaos: Stack, requests: int, concurrency: int) -> tuple[list[int], list[BaseException]]:
    """Non-streaming chat requests; returns the attempt counts of those served and the failures."""
    attempts: list[int] = []
    failures: list[BaseException] = []
    queue = iter(range(requests))

    async def worker(api: openai.AsyncOpenAI) -> None:
        for _ in queue:
            try:
                raw = await api.chat.completions.with_raw_response.create(model=CHAT, messages=MESSAGES)
                raw.parse()
                attempts.append(int(raw.headers["x-atoma-attempts"]))
            except openai.OpenAIError as error:
                failures.append(error)

    async with _client(chaos) as api:
        await asyncio.gather(*(worker(api) for _ in range(concurrency)))
    return attempts, failures


async def _fresh(chaos: Stack, node_id: str) -> None:
    """Removes the node and adds it again through the admin API: what the proxy learnt of it is forgotten,
    so one test's degraded node does not shape the next test's traffic."""
    body = {
        "node_id": node_id,
        "url": chaos.nodes[node_id],
        "models": next(node.models for node in NODES if node.id == node_id),
        "input_price_per_million": PRICE,
        "output_price_per_million": PRICE,
    }
    async with httpx.AsyncClient(base_url=chaos.facade_url, timeout=10) as http:
        assert (await http.delete(f"/v1/admin/nodes/{node_id}", headers=_admin_headers())).status_code == 200
        added = await http.post("/v1/admin/nodes", json=body, headers=_admin_headers())
    assert added.status_code == 200, added.text


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {node_id: after[node_id] - before[node_id] for node_id in before}


# Admin API ----------------------------------------------------------------------------------------


async def test_admin_adds_drains_and_removes_nodes_over_rest(chaos: Stack) -> None:
    alpha = chaos.nodes["alpha"]
    async with httpx.AsyncClient(base_url=chaos.facade_url, timeout=30) as http, _client(chaos) as api:
        with pytest.raises(openai.NotFoundError):
            await api.chat.completions.create(model=ADMIN_MODEL, messages=MESSAGES)

        body = {"node_id": "extra", "url": alpha, "models": [ADMIN_MODEL], "output_price_per_million": 7}
        added = await http.post("/v1/admin/nodes", json=body, headers=_admin_headers())
        assert added.status_code == 200, added.text
        node = added.json()["node"]
        assert node["serving_state"] == "NODE_SERVING_STATE_ACTIVE" and node["healthy"] is True
        assert node["source"] == "admin" and "api_key" not in node
        again = await http.post("/v1/admin/nodes", json=body, headers=_admin_headers())
        assert again.status_code == 409 and again.json()["error"]["code"] == "node_already_exists"

        raw = await api.chat.completions.with_raw_response.create(model=ADMIN_MODEL, messages=MESSAGES)
        assert raw.headers["x-atoma-node"] == "extra"

        # A stream running on the node when it is drained finishes normally.
        stream = await api.chat.completions.create(
            model=ADMIN_MODEL, messages=MESSAGES, stream=True, max_tokens=60, extra_body=LONG_REPLY
        )
        chunks = stream.__aiter__()
        first = await anext(chunks)
        drained = await http.post("/v1/admin/nodes/extra:drain", json={}, headers=_admin_headers())
        assert drained.status_code == 200, drained.text
        assert drained.json()["node"]["serving_state"] == "NODE_SERVING_STATE_DRAINING"
        rest = [chunk async for chunk in chunks]
        assert first.choices and rest[-1].choices[0].finish_reason == "length"
        with pytest.raises(openai.NotFoundError):  # no new request goes there
            await api.chat.completions.create(model=ADMIN_MODEL, messages=MESSAGES)

        removed = await http.delete("/v1/admin/nodes/extra", headers=_admin_headers())
        assert removed.status_code == 200 and removed.json()["node"]["node_id"] == "extra"
        assert "extra" not in await _node_states(chaos)
        missing = await http.delete("/v1/admin/nodes/extra", headers=_admin_headers())
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "node_not_found"

        wrong = await http.get("/v1/admin/nodes", headers={"authorization": "Bearer not-the-admin-token"})
        anonymous = await http.get("/v1/admin/nodes")
        user = await http.get("/v1/admin/nodes", headers={"authorization": f"Bearer {chaos.api_key}"})
    assert wrong.status_code == 403 and user.status_code == 403
    assert anonymous.status_code == 401


def _reason(error: grpc.aio.AioRpcError) -> str:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            info = error_details_pb2.ErrorInfo()
            status.details[0].Unpack(info)
            return info.reason
    return ""


async def test_admin_adds_drains_and_removes_nodes_over_grpc(chaos: Stack) -> None:
    metadata = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
    async with grpc.aio.insecure_channel(chaos.core_target) as channel:
        stub = admin_grpc.NodeAdminServiceStub(channel)
        request = admin_pb.AddNodeRequest(node_id="extra-grpc", url=chaos.nodes["alpha"], models=[ADMIN_MODEL])
        added = await stub.AddNode(request, metadata=metadata)
        assert added.node.serving_state == admin_pb.NODE_SERVING_STATE_ACTIVE
        states = await stub.ListNodeStates(admin_pb.ListNodeStatesRequest(), metadata=metadata)
        assert {"alpha", "beta", "gamma", "extra-grpc"} <= {n.node_id for n in states.nodes}
        alpha = next(n for n in states.nodes if n.node_id == "alpha")
        assert alpha.circuit_state in (admin_pb.CIRCUIT_STATE_CLOSED, admin_pb.CIRCUIT_STATE_HALF_OPEN)
        assert {m.model for m in alpha.model_states} == {CHAT}

        drained = await stub.DrainNode(admin_pb.DrainNodeRequest(node_id="extra-grpc"), metadata=metadata)
        assert drained.node.serving_state == admin_pb.NODE_SERVING_STATE_DRAINING
        removed = await stub.RemoveNode(admin_pb.RemoveNodeRequest(node_id="extra-grpc"), metadata=metadata)
        assert removed.node.node_id == "extra-grpc"

        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.DrainNode(admin_pb.DrainNodeRequest(node_id="extra-grpc"), metadata=metadata)
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await stub.AddNode(admin_pb.AddNodeRequest(node_id="bad", url="ftp://x", models=[CHAT]), metadata=metadata)
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await stub.ListNodeStates(admin_pb.ListNodeStatesRequest())
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND and _reason(unknown.value) == "NODE_NOT_FOUND"
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT and _reason(invalid.value) == "INVALID_REQUEST"
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_sighup_reloads_the_configured_nodes(chaos: Stack) -> None:
    original = chaos.config_path.read_text()
    extra = f"\n[[nodes]]\nid = 'hup'\nurl = '{chaos.nodes['alpha']}'\nmodels = ['{HUP_MODEL}']\n"
    try:
        dearer = [replace(node, prices=(PRICE + 1, PRICE + 1)) if node.id == "alpha" else node for node in NODES]
        chaos.write_config(replace(chaos.config, nodes=tuple(dearer)), extra)
        chaos.proxy.send_signal(signal.SIGHUP)

        async def reloaded() -> bool:
            states = await _node_states(chaos)
            return "hup" in states and int(states["alpha"]["input_price_per_million"]) == PRICE + 1

        await _eventually(reloaded)
        async with _client(chaos) as api:
            raw = await api.chat.completions.with_raw_response.create(model=HUP_MODEL, messages=MESSAGES)
        assert raw.headers["x-atoma-node"] == "hup"
    finally:
        chaos.config_path.write_text(original)
        chaos.proxy.send_signal(signal.SIGHUP)

    async def restored() -> bool:
        states = await _node_states(chaos)
        return "hup" not in states and int(states["alpha"]["input_price_per_million"]) == PRICE

    await _eventually(restored)  # dropped from the file: drained, then removed once idle


async def test_a_request_can_choose_its_strategy(chaos: Stack) -> None:
    async with _client(chaos) as api:
        raw = await api.chat.completions.with_raw_response.create(
            model=CHAT, messages=MESSAGES, extra_headers={"X-Atoma-Routing-Strategy": "round_robin"}
        )
        assert raw.http_response.status_code == 200
        with pytest.raises(openai.BadRequestError) as unknown:
            await api.chat.completions.create(
                model=CHAT, messages=MESSAGES, extra_headers={"X-Atoma-Routing-Strategy": "random"}
            )
    assert unknown.value.code == "invalid_request" and unknown.value.param == "x-atoma-routing-strategy"


# Degraded nodes -----------------------------------------------------------------------------------


async def test_a_slow_node_gets_less_traffic(chaos: Stack) -> None:
    await _fresh(chaos, "beta")
    await _all_serving(chaos)
    await _configure(chaos, "beta", ttft_ms=400)
    try:
        before = await _served(chaos)
        attempts, failures = await _load(chaos, requests=90, concurrency=6)
        served = _delta(before, await _served(chaos))
    finally:
        await _configure(chaos, "beta", ttft_ms=0)
    assert failures == [] and len(attempts) == 90
    assert served["beta"] < (served["alpha"] + served["gamma"]) / 4, served  # under half a healthy peer's


async def test_a_node_answering_429_gets_less_traffic_and_costs_no_request(chaos: Stack) -> None:
    await _fresh(chaos, "beta")
    await _all_serving(chaos)
    await _configure(chaos, "beta", error_rate=1.0, error_status=429)
    try:
        before = await _served(chaos)
        attempts, failures = await _load(chaos, requests=90, concurrency=6)
        served = _delta(before, await _served(chaos))
    finally:
        await _configure(chaos, "beta", error_rate=0.0, error_status=500)
    assert failures == [] and len(attempts) == 90  # every 429 was retried on another node
    assert max(attempts) >= 2
    assert served["beta"] < (served["alpha"] + served["gamma"]) / 4, served  # under half a healthy peer's


# A node dies --------------------------------------------------------------------------------------


async def test_a_killed_node_fails_no_request_and_is_used_again_once_back(chaos: Stack) -> None:
    await _fresh(chaos, "gamma")
    await _all_serving(chaos)
    gamma = chaos.sims["gamma"]
    async with _client(chaos) as api:
        long_stream = await api.chat.completions.create(
            model=LONG, messages=MESSAGES, stream=True, max_tokens=4000, extra_body=LONG_REPLY
        )
        chunks = long_stream.__aiter__()
        for _ in range(3):
            await anext(chunks)

        attempts: list[int] = []
        failures: list[BaseException] = []
        remaining = iter(range(240))

        # Round robin for this load (failover is the same for every strategy): it guarantees requests in
        # flight on gamma when it dies, whatever gamma's measurements happen to be.
        rotate = {"X-Atoma-Routing-Strategy": "round_robin"}

        async def worker() -> None:
            for _ in remaining:
                try:
                    raw = await api.chat.completions.with_raw_response.create(
                        model=CHAT, messages=MESSAGES, extra_headers=rotate
                    )
                    raw.parse()
                    attempts.append(int(raw.headers["x-atoma-attempts"]))
                except openai.OpenAIError as error:
                    failures.append(error)

        load = asyncio.gather(*(worker() for _ in range(12)))
        await _eventually(lambda: len(attempts) >= 40)
        gamma.kill()  # SIGKILL, with requests in flight on it
        await load

        with pytest.raises(openai.APIError):  # the stream on gamma ends with an error event
            async for _ in chunks:
                pass

    assert failures == []
    assert len(attempts) == 240
    assert max(attempts) >= 2  # requests on gamma, or sent to it before it was seen down, failed over

    gamma.start()  # same port, a fresh process (its counters start at 0)

    async def gamma_used() -> bool:
        _, failed = await _load(chaos, requests=12, concurrency=6)
        assert failed == []
        async with httpx.AsyncClient(timeout=10) as http:
            return (await http.get(f"{gamma.url}/sim/stats")).json()["requests_total"] > 0

    await _eventually(gamma_used, attempts=60, delay=0.1)
