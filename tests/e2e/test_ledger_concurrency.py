"""Three core processes share one PostgreSQL ledger: 520 concurrent requests, money for exactly 40.

    node-sim a, b ◀── core 1, core 2, core 3 ◀── generated stubs (this test)
                       one PostgreSQL database

Every request is priced exactly: the simulator's tokenizer counts the prompt (8 tokens), and
`ignore_eos` with `max_tokens = 5` makes the node generate exactly the cap, so each request
reserves and is charged the same R = ceil((8 * 1e6 + 5 * 2e6) / 1e6) = 18 micro-USD. With N * R
credited, the money admits exactly N requests whatever the interleaving: a reservation only
succeeds while at least R is available, and every admitted request consumes exactly R. Hence
exactly N succeed (the bound is tight: no settlement ever frees money for an extra one) and the
others are refused with INSUFFICIENT_FUNDS before any node is called.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from atoma_proxy.generated.atoma.routing.v1 import chat_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from tests.e2e._ledger import cores, funded_key, stored_ledger
from tests.e2e.conftest import CHAT
from tests.support.databases import temporary_database_sync
from tests.support.processes import free_port, running

pytestmark = pytest.mark.slow

ADMITTED = 40
REQUESTS = 520
COST = 18  # micro-USD of one request; see the module docstring


@dataclass(frozen=True)
class Cluster:
    targets: list[str]
    nodes: list[str]
    database_url: str


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("ledger-cluster")
    with ExitStack() as stack, temporary_database_sync("postgresql") as database_url:
        nodes = []
        for name in ("a", "b"):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            args = ["node-sim", "--port", str(port), "--node-id", name, "--chat-model", CHAT]
            stack.enter_context(running(args, ready_url=f"{url}/health", log=tmp / f"node-{name}.log"))
            nodes.append(url)
        config = tmp / "config.toml"
        config.write_text(
            "[core]\nhealth_interval = 0.5\n\n"
            f"[[tokenizers]]\nmodel = '{CHAT}'\nkind = 'sim-words'\n"
            + "".join(
                f"\n[[nodes]]\nid = '{name}'\nurl = '{url}'\nmodels = ['{CHAT}']\n"
                "input_price_per_million = 1000000\noutput_price_per_million = 2000000\n"
                for name, url in zip("ab", nodes, strict=True)
            )
        )
        targets = [f"127.0.0.1:{free_port()}" for _ in range(3)]
        envs = [
            {
                "ATOMA_CONFIG": str(config),
                "ATOMA_DATABASE__URL": database_url,
                "ATOMA_DATABASE__POOL_SIZE": "5",
                "ATOMA_CORE__LISTEN": target,
            }
            for target in targets
        ]
        stack.enter_context(cores(envs, [tmp / f"core-{i}.log" for i in range(3)]))
        yield Cluster(targets, nodes, database_url)


def _reason(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    assert status is not None, error
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    quota = [d for d in status.details if d.Is(error_details_pb2.QuotaFailure.DESCRIPTOR)]
    if info.reason == "INSUFFICIENT_FUNDS":
        assert len(quota) == 1 and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    return info.reason


def _node_requests(nodes: list[str]) -> int:
    return sum(httpx.get(f"{node}/sim/stats").json()["requests_total"] for node in nodes)


async def test_concurrent_requests_over_three_cores_never_overdraw(cluster: Cluster) -> None:
    email, key = await funded_key(cluster.database_url, ADMITTED * COST)
    metadata = (("authorization", f"Bearer {key}"),)
    node_requests_before = _node_requests(cluster.nodes)
    channels = [grpc.aio.insecure_channel(target) for target in cluster.targets]
    stubs = [pb_grpc.RoutingServiceStub(channel) for channel in channels]

    async def one(index: int) -> tuple[str, int]:
        request = pb.ChatCompletionRequest(
            model=CHAT,
            messages=[chat_pb2.ChatMessage(role="user", text="hello there")],
            max_tokens=5,
            stream=index % 2 == 0,
            extra_json='{"ignore_eos": true}',
        )
        try:
            events = [e async for e in stubs[index % 3].ChatCompletion(request, metadata=metadata, timeout=60)]
        except grpc.aio.AioRpcError as error:
            return _reason(error), 0
        end = events[-1].end
        assert end.usage.prompt_tokens == 8 and end.usage.completion_tokens == 5
        return "OK", end.cost_micro_usd

    try:
        outcomes = await asyncio.gather(*(one(i) for i in range(REQUESTS)))
    finally:
        for channel in channels:
            await channel.close()

    reasons = sorted({reason for reason, _ in outcomes})
    succeeded = [cost for reason, cost in outcomes if reason == "OK"]
    assert reasons == ["INSUFFICIENT_FUNDS", "OK"]
    assert len(succeeded) == ADMITTED
    assert set(succeeded) == {COST}
    # Refused requests never reached a node.
    assert _node_requests(cluster.nodes) - node_requests_before == ADMITTED

    ledger = await stored_ledger(cluster.database_url, email)
    assert ledger.held == 0 and ledger.reserved == 0
    assert len(ledger.records) == ADMITTED and {r.outcome for r in ledger.records} == {"ok"}
    assert ledger.debited == ledger.charged == ADMITTED * COST
    assert ledger.credited - ledger.debited == 0
