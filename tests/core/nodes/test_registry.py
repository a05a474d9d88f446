"""The live registry: add, drain and remove nodes while requests run on them; configuration reload."""

from __future__ import annotations

import asyncio
import random

import pytest

from atoma_proxy.config import NodeConfig
from atoma_proxy.core.errors import ModelNotFound
from atoma_proxy.core.nodes.failover import FailoverPolicy
from atoma_proxy.core.nodes.registry import ADMIN, NodeRegistry
from atoma_proxy.core.nodes.selection import StrategySelector
from atoma_proxy.core.pipeline.call import InferenceCall
from atoma_proxy.core.pipeline.relay import InferenceRelay
from tests.core.nodes.support import REPLY, Hang, ScriptedTransport, make_node, relay_unary

BODY = {"model": "m", "prompt": ["hi"]}


def _relay(registry: NodeRegistry, transport: ScriptedTransport) -> InferenceRelay:
    selector = StrategySelector("round_robin", rng=random.Random(0))
    return InferenceRelay(registry, selector, transport, policy=FailoverPolicy(same_node_pause=0))


async def _hold_request_on_a(registry: NodeRegistry, transport: ScriptedTransport) -> tuple[asyncio.Task[bytes], Hang]:
    hang = Hang()
    transport.posts["a"] = [hang, REPLY]
    task = asyncio.create_task(
        relay_unary(_relay(registry, transport), InferenceCall(request_id="held"), "m", "/p", BODY)
    )
    await hang.reached.wait()
    return task, hang


async def test_a_drained_node_finishes_its_requests_and_gets_no_new_ones() -> None:
    registry = NodeRegistry([make_node("a"), make_node("b")])
    transport = ScriptedTransport(posts={"b": [REPLY]})
    held, hang = await _hold_request_on_a(registry, transport)
    a = registry.drain("a")
    assert a.draining and a.in_flight == 1
    relay = _relay(registry, transport)
    for i in range(4):
        await relay_unary(relay, InferenceCall(request_id=f"r{i}"), "m", "/p", BODY)
    assert transport.calls == ["a", "b", "b", "b", "b"]
    hang.release.set()
    assert await held == REPLY  # the request on the drained node completed normally
    assert a.in_flight == 0
    assert [n.id for n in registry.nodes()] == ["a", "b"]  # drained, still listed until removed


async def test_a_removed_node_is_gone_for_new_requests_but_running_ones_finish() -> None:
    registry = NodeRegistry([make_node("a"), make_node("b")])
    transport = ScriptedTransport(posts={"b": [REPLY]})
    held, hang = await _hold_request_on_a(registry, transport)
    removed = registry.remove("a")
    assert registry.get("a") is None and [n.id for n in registry.candidates("m")] == ["b"]
    await relay_unary(_relay(registry, transport), InferenceCall(request_id="new"), "m", "/p", BODY)
    hang.release.set()
    assert await held == REPLY
    assert removed.in_flight == 0
    with pytest.raises(KeyError):
        registry.remove("a")


def test_candidates_in_order_of_addition_and_an_unknown_model_refused() -> None:
    registry = NodeRegistry([make_node("a", price=1), make_node("b", price=2)])
    assert [n.id for n in registry.candidates("m")] == ["a", "b"]
    assert set(registry.models()) == {"m"}
    with pytest.raises(ModelNotFound):
        registry.candidates("other")


def test_ids_are_unique_except_to_replace_a_draining_node() -> None:
    registry = NodeRegistry([make_node("a", price=1)])
    with pytest.raises(ValueError, match="duplicate"):
        registry.add(make_node("a", price=2))
    registry.drain("a")
    replacement = registry.add(make_node("a", price=3))
    assert registry.get("a") is replacement and not replacement.draining
    assert registry.candidates("m") == [replacement]


def test_models_of_draining_nodes_are_no_longer_offered() -> None:
    registry = NodeRegistry([make_node("a", models=("m", "only-a")), make_node("b")])
    registry.drain("a")
    assert set(registry.models()) == {"m"}
    with pytest.raises(ModelNotFound):
        registry.candidates("only-a")


def _config(node_id: str, price: int = 10, models: tuple[str, ...] = ("m",)) -> NodeConfig:
    return NodeConfig(
        id=node_id,
        url=f"http://{node_id}:8000/",
        models=list(models),
        input_price_per_million=price,
        output_price_per_million=price,
    )


def test_reload_adds_updates_and_drains_configured_nodes_only() -> None:
    registry = NodeRegistry.from_config([_config("keep", 10), _config("gone"), _config("paused")])
    registry.add(make_node("ops", source=ADMIN))
    registry.drain("paused")  # an operator's drain outlives reloads
    keep = registry.get("keep")
    assert keep is not None
    keep.in_flight = 0
    gone = registry.get("gone")
    assert gone is not None
    gone.in_flight = 1  # a request still running there

    report = registry.reload([_config("keep", 99, ("m", "m2")), _config("new"), _config("paused")])

    assert report.added == ["new"] and report.drained == ["gone"] and set(report.updated) == {"keep", "paused"}
    assert registry.get("keep") is keep and keep.input_price_per_million == 99 and keep.models == {"m", "m2"}
    assert gone.draining and registry.get("gone") is gone  # removed only once idle
    paused = registry.get("paused")
    assert paused is not None and paused.draining
    ops = registry.get("ops")
    assert ops is not None and not ops.draining  # added at runtime: not the file's business
    gone.in_flight = 0
    assert registry.prune_idle() == ["gone"] and registry.get("gone") is None


def test_a_node_back_in_the_file_is_undrained() -> None:
    registry = NodeRegistry.from_config([_config("a"), _config("b")])
    b = registry.get("b")
    assert b is not None
    b.in_flight = 1  # busy, so the reload drains it without removing it
    registry.reload([_config("a")])
    assert b.draining
    registry.reload([_config("a"), _config("b", 5)])
    assert registry.get("b") is b and not b.draining and b.input_price_per_million == 5


def test_the_responses_api_is_a_node_capability_off_by_default_and_reloaded() -> None:
    registry = NodeRegistry.from_config([_config("a"), _config("b").model_copy(update={"apis": ["chat", "responses"]})])
    a, b = registry.get("a"), registry.get("b")
    assert a is not None and b is not None
    assert not a.serves_responses and b.serves_responses
    registry.reload([_config("a").model_copy(update={"apis": ["chat", "responses"]}), _config("b")])
    assert a.serves_responses and not b.serves_responses
    with pytest.raises(ValueError, match="apis"):
        NodeConfig(id="c", url="http://c", models=["m"], apis=["assistants"])
