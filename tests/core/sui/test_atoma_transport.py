"""The relay talking the Atoma protocol to real node simulators over HTTP: requests signed and
accepted, tampered answers and chunks refused before they reach the caller, the node counted as failing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest

from atoma_proxy.config import CoreSettings
from atoma_proxy.core.errors import NodeFailed
from atoma_proxy.core.nodes.registry import Node, NodeRegistry
from atoma_proxy.core.nodes.selection import StrategySelector
from atoma_proxy.core.nodes.transport import HttpNodeTransport
from atoma_proxy.core.pipeline.call import InferenceCall
from atoma_proxy.core.pipeline.relay import InferenceRelay
from atoma_proxy.core.sui.atoma_transport import ATOMA, AtomaProtocol, RequestContext
from atoma_proxy.nodesim import RunningNodeSim, SimConfig, start_node_sim
from atoma_proxy.sui.crypto import SignatureScheme, SuiKeypair
from atoma_proxy.sui.node_protocol import verify_request, verify_response
from tests.core.nodes.support import relay_stream, relay_unary

MODEL = "atoma/sim-chat"
PROXY = SuiKeypair.generate(SignatureScheme.SECP256K1)
USER = RequestContext(user_id="1")
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Hello there, node"}], "temperature": 0.7}
STREAM = {**BODY, "stream": True}

StartSim = Callable[..., Awaitable[RunningNodeSim]]


@pytest.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    sims: list[RunningNodeSim] = []

    async def start(**fields: Any) -> RunningNodeSim:
        sim = await start_node_sim(SimConfig(chat_models=[MODEL], **fields))
        sims.append(sim)
        return sim

    yield start
    await asyncio.gather(*(sim.stop() for sim in sims))


@pytest.fixture
async def transport() -> AsyncIterator[HttpNodeTransport]:
    transport = HttpNodeTransport(CoreSettings(), {ATOMA: AtomaProtocol(PROXY)})
    yield transport
    await transport.aclose()


def _node(node_id: str, sim: RunningNodeSim, key: SuiKeypair | None, price: int = 1) -> Node:
    node = Node(node_id, sim.url, frozenset({MODEL}), price, price)
    node.protocol = "atoma"
    node.sui_address = key.address if key else None
    return node


def _relay(transport: HttpNodeTransport, *nodes: Node) -> InferenceRelay:
    return InferenceRelay(NodeRegistry(nodes), StrategySelector("cheapest"), transport)


async def _sent(sim: RunningNodeSim) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{sim.url}/sim/requests")).json()


async def test_signed_requests_are_accepted_and_answers_verified(start_sim: StartSim, transport) -> None:
    key = SuiKeypair.generate(SignatureScheme.SECP256R1)
    sim = await start_sim(protocol="atoma", sui_keystring=key.keystring(), allowed_signers=[PROXY.address])
    node = _node("a", sim, key)
    relay = _relay(transport, node)
    raw = await relay_unary(
        relay, InferenceCall(request_id="req-1", node_context=USER), MODEL, "/v1/chat/completions", dict(BODY)
    )
    assert verify_response(raw, signer=key.address).signer == key.address
    assert orjson.loads(raw)["usage"]["prompt_tokens"] > 0
    chunks = [
        c
        async for batch in relay_stream(
            relay,
            InferenceCall(request_id="req-2", node_context=USER),
            MODEL,
            "/v1/chat/completions",
            dict(STREAM),
            client_wants_usage=True,
        )
        for c in batch
    ]
    assert len(chunks) > 2 and all(verify_response(c, signer=key.address) for c in chunks)
    sent = await _sent(sim)
    assert [r["headers"]["x-request-id"] for r in sent] == ["req-1", "req-2"]
    for record in sent:
        # What the node received verifies against the proxy's address after re-serialization.
        body = orjson.dumps(record["body"])
        assert verify_request(body, record["headers"]["x-signature"], signer=PROXY.address)
    assert node.model_stats(MODEL).failures == 0


async def test_protocol_headers_from_the_context(start_sim: StartSim, transport) -> None:
    sim = await start_sim(protocol="atoma")
    node = _node("a", sim, None)
    context = RequestContext(user_id="42", stack_small_id=7, tx_digest="5Hq3")
    await transport.post(node, "/v1/chat/completions", orjson.dumps(BODY), request_id="r", context=context)
    headers = (await _sent(sim))[0]["headers"]
    assert (headers["x-user-id"], headers["x-stack-small-id"], headers["x-tx-digest"]) == ("42", "7", "5Hq3")


@pytest.mark.parametrize("fault", ["bad_hash_rate", "bad_signature_rate"])
async def test_a_tampered_answer_is_a_node_failure_and_another_node_serves(
    start_sim: StartSim, transport, fault: str
) -> None:
    bad_key, good_key = SuiKeypair.generate(), SuiKeypair.generate()
    bad = await start_sim(protocol="atoma", sui_keystring=bad_key.keystring(), **{fault: 1.0})
    good = await start_sim(protocol="atoma", sui_keystring=good_key.keystring())
    bad_node, good_node = _node("bad", bad, bad_key, price=1), _node("good", good, good_key, price=2)
    relay = _relay(transport, bad_node, good_node)
    call = InferenceCall(request_id="r", node_context=USER)
    raw = await relay_unary(relay, call, MODEL, "/v1/chat/completions", dict(BODY))
    assert [n.id for n in call.tried] == ["bad", "good"]
    assert verify_response(raw, signer=good_key.address)
    assert bad_node.model_stats(MODEL).failures == 1 and good_node.model_stats(MODEL).failures == 0


async def test_an_answer_signed_by_another_key_than_the_registered_one_fails(start_sim: StartSim, transport) -> None:
    sim = await start_sim(protocol="atoma")  # signs with a key of its own
    node = _node("a", sim, SuiKeypair.generate())
    with pytest.raises(NodeFailed, match="signed by"):
        await relay_unary(
            _relay(transport, node),
            InferenceCall(request_id="r", node_context=USER),
            MODEL,
            "/v1/chat/completions",
            dict(BODY),
        )
    assert node.model_stats(MODEL).failures >= 1


async def test_a_tampered_chunk_mid_stream_never_reaches_the_caller(start_sim: StartSim, transport) -> None:
    key = SuiKeypair.generate()
    sim = await start_sim(protocol="atoma", sui_keystring=key.keystring(), bad_hash_rate=1.0, tamper_from_chunk=3)
    node = _node("a", sim, key)
    received: list[bytes] = []
    with pytest.raises(NodeFailed, match="response_hash does not match"):
        async for batch in relay_stream(
            _relay(transport, node),
            InferenceCall(request_id="r", node_context=USER),
            MODEL,
            "/v1/chat/completions",
            dict(STREAM),
            client_wants_usage=True,
        ):
            received.extend(batch)
    assert received  # the stream had started: the failure ends it rather than switching nodes
    for chunk in received:
        verify_response(chunk, signer=key.address)  # every chunk relayed was a verified one
    assert node.model_stats(MODEL).failures == 1


async def test_plain_openai_nodes_pass_through_unsigned(start_sim: StartSim, transport) -> None:
    sim = await start_sim()
    node = Node("plain", sim.url, frozenset({MODEL}), 1, 1)
    raw = await relay_unary(
        _relay(transport, node),
        InferenceCall(request_id="r", node_context=USER),
        MODEL,
        "/v1/chat/completions",
        dict(BODY),
    )
    assert b"signature" not in raw
    assert "x-signature" not in (await _sent(sim))[0]["headers"]
