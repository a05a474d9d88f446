"""Nodes that fail or lie: the core detects reordered, replayed and forged answers (specific errors,
nothing charged), and the clients re-lock on another node when one fails before answering."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from atoma_proxy.clients import AsyncConfidentialClient, ConfidentialError
from atoma_proxy.clients._confidential import RestTransport
from tests.e2e._ledger import stored_ledger
from tests.e2e.confidential.stack import NODE_ID, SHARED, TAMPERED, ConfidentialStack
from tests.e2e.confidential.test_grpc import _reason

MESSAGES = [{"role": "user", "content": "hello"}]
EMAIL = "conf@atoma.test"


@pytest.fixture
def tampering(conf: ConfidentialStack) -> Iterator[None]:
    yield
    conf.tamperer.mode = "pass"


@pytest.mark.parametrize(
    ("mode", "stream", "reason"),
    [
        ("reorder", True, "NODE_STREAM_INVALID"),
        ("replay", True, "NODE_STREAM_INVALID"),
        ("forge-usage", True, "NODE_SIGNATURE_INVALID"),
        ("forge-usage", False, "NODE_SIGNATURE_INVALID"),
    ],
)
async def test_a_lying_node_is_caught_by_the_core_and_charged_nothing(
    conf: ConfidentialStack, tampering: None, mode: str, stream: bool, reason: str
) -> None:
    async with AsyncConfidentialClient.rest(conf.facade_url, api_key=conf.api_key, max_attempts=1) as client:
        await client.chat_completion_create(model=TAMPERED, messages=MESSAGES, max_tokens=3)  # honest first
        conf.tamperer.mode = mode
        before = await stored_ledger(conf.database_url, EMAIL)
        with pytest.raises(ConfidentialError) as raised:
            if stream:
                async for _ in client.chat_completion(model=TAMPERED, messages=MESSAGES, max_tokens=3):
                    pass
            else:
                await client.chat_completion_create(model=TAMPERED, messages=MESSAGES, max_tokens=3)
    assert raised.value.reason == reason
    after = await stored_ledger(conf.database_url, EMAIL)
    assert (after.charged, after.debited) == (before.charged, before.debited)
    known = {r.request_id for r in before.records}
    new = [r for r in after.records if r.request_id not in known and r.model == TAMPERED]  # other tests' locks expire
    assert [(r.node_id, r.cost) for r in new] == [("evil", 0)] and after.held <= before.held


class LockFlakyFirst(RestTransport):
    """Steers the first lock to the failing node (as selection might), then lets the client choose."""

    def __init__(self, conf: ConfidentialStack) -> None:
        super().__init__(conf.facade_url, conf.api_key)
        self.nodes: list[str] = []

    async def lock(self, model, endpoint, max_num_tokens, timeout, exclude=()):  # type: ignore[no-untyped-def]  # noqa: ASYNC109
        exclude = [NODE_ID] if not self.nodes else exclude
        grant = await super().lock(model, endpoint, max_num_tokens, timeout, exclude)
        self.nodes.append(grant.node_id)
        return grant


@pytest.mark.parametrize("stream", [False, True])
async def test_a_node_failing_before_answering_is_retried_on_another_node(
    conf: ConfidentialStack, stream: bool
) -> None:
    before = await stored_ledger(conf.database_url, EMAIL)
    transport = LockFlakyFirst(conf)
    async with AsyncConfidentialClient(transport) as client:
        if stream:
            chunks = [c async for c in client.chat_completion(model=SHARED, messages=MESSAGES, max_tokens=2)]
            assert chunks[-1]["usage"]["completion_tokens"] == 2
        else:
            result = await client.chat_completion_create(model=SHARED, messages=MESSAGES, max_tokens=2)
            assert result.attempts == 2 and result.node_id == NODE_ID
    assert transport.nodes == ["flaky", NODE_ID]
    after = await stored_ledger(conf.database_url, EMAIL)
    failed = [
        r for r in after.records if r.request_id not in {b.request_id for b in before.records} and r.node_id == "flaky"
    ]
    assert len(failed) == 1 and failed[0].cost == 0


async def test_node_failure_over_grpc_is_node_failed(conf: ConfidentialStack) -> None:
    from atoma_proxy.confidential import envelope, wire
    from atoma_proxy.generated.atoma.routing.v1 import confidential_pb2 as cpb
    from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc

    async with grpc.aio.insecure_channel(conf.core_target) as channel:
        stub = pb_grpc.RoutingServiceStub(channel)
        metadata = (("authorization", f"Bearer {conf.api_key}"),)
        lock = await stub.LockNode(cpb.LockNodeRequest(model=SHARED, exclude_node_ids=[NODE_ID]), metadata=metadata)
        assert lock.node_id == "flaky"
        body = b'{"model": "conf/shared", "messages": [{"role": "user", "content": "hi"}]}'
        session = envelope.seal_request(body, lock.public_key, stack_small_id=lock.stack_small_id, model_name=SHARED)
        request = cpb.ConfidentialChatCompletionRequest(envelope=wire.envelope_to_proto(session.request))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in stub.ConfidentialChatCompletion(request, metadata=metadata):
                pass
    assert (raised.value.code(), _reason(raised.value)) == (grpc.StatusCode.UNAVAILABLE, "NODE_FAILED")
