"""Failover in the relay, over a transport scripted per node: what is retried, where, and when not."""

from __future__ import annotations

import asyncio
import itertools
import random
import time

import orjson
import pytest

from atoma_proxy.core.errors import InvalidRequest, NodeFailed, NodeRejectedRequest, NodeTimeout
from atoma_proxy.core.nodes.breaker import BreakerPolicy, CircuitState
from atoma_proxy.core.nodes.failover import FailoverPolicy
from atoma_proxy.core.nodes.health import HealthPoller
from atoma_proxy.core.nodes.registry import Node, NodeRegistry
from atoma_proxy.core.nodes.selection import StrategySelector
from atoma_proxy.core.nodes.transport import NodeUnreachable
from atoma_proxy.core.pipeline.call import InferenceCall
from atoma_proxy.core.pipeline.relay import InferenceRelay
from tests.core.nodes.support import (
    DONE,
    FINISH,
    REPLY,
    ROLE,
    TOKEN,
    USAGE,
    FakeClock,
    Hang,
    ScriptedTransport,
    make_node,
    relay_stream,
    relay_unary,
)

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _relay(
    transport: ScriptedTransport,
    *node_ids: str,
    strategy: str = "round_robin",
    policy: FailoverPolicy | None = None,
    clock: FakeClock | None = None,
) -> tuple[InferenceRelay, dict[str, Node]]:
    clock = clock or FakeClock()
    registry = NodeRegistry([make_node(i) for i in node_ids], breaker_policy=BreakerPolicy(), clock=clock)
    selector = StrategySelector(strategy, rng=random.Random(0), clock=clock)
    poller = HealthPoller(registry, transport, interval=5.0, clock=clock)  # told of the nodes nothing listens on
    relay = InferenceRelay(
        registry,
        selector,
        transport,
        policy=policy or FailoverPolicy(same_node_pause=0),
        clock=clock,
        on_unreachable=poller.unreachable,
    )
    return relay, {n.id: n for n in registry.nodes()}


async def _stream(relay: InferenceRelay, call: InferenceCall, wants_usage: bool = True) -> list[bytes]:
    batches = relay_stream(relay, call, "m", "/v1/chat/completions", dict(BODY), client_wants_usage=wants_usage)
    return [chunk async for batch in batches for chunk in batch]


def _no_node_twice_in_a_row(calls: list[str]) -> bool:
    return all(x != y for x, y in itertools.pairwise(calls))


async def test_a_failed_unary_attempt_is_retried_on_another_node() -> None:
    transport = ScriptedTransport(posts={"a": [NodeFailed("a answered 503")], "b": [REPLY]})
    relay, nodes = _relay(transport, "a", "b")
    call = InferenceCall(request_id="r")
    assert await relay_unary(relay, call, "m", "/v1/chat/completions", BODY) == REPLY
    assert transport.calls == ["a", "b"]
    assert call.attempts == 2 and call.node is nodes["b"]
    assert dict(call.metadata())["x-atoma-node"] == "b" and dict(call.metadata())["x-atoma-attempts"] == "2"
    assert call.usage == {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7}
    assert nodes["a"].in_flight == nodes["b"].in_flight == 0
    assert nodes["a"].model_stats("m").failures == 1 and nodes["b"].model_stats("m").successes == 1


@pytest.mark.parametrize("error", [NodeFailed("429"), NodeTimeout("slow"), NodeUnreachable("refused")])
async def test_failures_timeouts_and_dead_nodes_are_retried(error: Exception) -> None:
    transport = ScriptedTransport(posts={"a": [error], "b": [REPLY]})
    relay, nodes = _relay(transport, "a", "b")
    await relay_unary(relay, InferenceCall(request_id="r"), "m", "/p", BODY)
    assert transport.calls == ["a", "b"]
    assert nodes["a"].healthy is not isinstance(error, NodeUnreachable)  # nothing listens there: skipped at once


async def test_a_node_refusing_the_request_is_not_retried() -> None:
    transport = ScriptedTransport(posts={"a": [NodeRejectedRequest("max_tokens too large")], "b": [REPLY]})
    relay, nodes = _relay(transport, "a", "b")
    call = InferenceCall(request_id="r")
    with pytest.raises(NodeRejectedRequest):
        await relay_unary(relay, call, "m", "/p", BODY)
    assert transport.calls == ["a"] and call.attempts == 1
    assert nodes["a"].breaker.state is CircuitState.CLOSED and nodes["a"].model_stats("m").failures == 0


async def test_attempts_are_bounded_and_never_hit_one_node_twice_in_a_row() -> None:
    transport = ScriptedTransport(posts={"a": [NodeFailed("a down")], "b": [NodeFailed("b down")]})
    relay, _ = _relay(transport, "a", "b", policy=FailoverPolicy(max_attempts=4, same_node_pause=0))
    call = InferenceCall(request_id="r")
    with pytest.raises(NodeFailed, match="down"):
        await relay_unary(relay, call, "m", "/p", BODY)
    assert len(transport.calls) == 4 and call.attempts == 4
    assert _no_node_twice_in_a_row(transport.calls)


async def test_the_only_node_is_tried_again() -> None:
    transport = ScriptedTransport(posts={"a": [NodeFailed("blip"), REPLY]})
    relay, _ = _relay(transport, "a")
    call = InferenceCall(request_id="r")
    assert await relay_unary(relay, call, "m", "/p", BODY) == REPLY
    assert transport.calls == ["a", "a"] and call.attempts == 2


async def test_no_retry_past_the_deadline() -> None:
    clock = FakeClock()
    transport = ScriptedTransport(posts={"a": [NodeFailed("a down")], "b": [REPLY]})
    relay, _ = _relay(transport, "a", "b", clock=clock)
    expired = InferenceCall(request_id="r", deadline=clock.now)
    with pytest.raises(NodeFailed):
        await relay_unary(relay, expired, "m", "/p", BODY)
    assert transport.calls == ["a"]
    relay, _ = _relay(transport, "a", "b", clock=clock)
    in_time = InferenceCall(request_id="r2", deadline=clock.now + 5)
    transport.calls.clear()
    await relay_unary(relay, in_time, "m", "/p", BODY)
    assert transport.calls == ["a", "b"] and in_time.attempts == 2


async def test_a_stream_failing_before_its_first_token_is_retried_invisibly() -> None:
    transport = ScriptedTransport(
        streams={
            "a": [[ROLE, NodeFailed("a dropped the connection")]],
            "b": [[ROLE, TOKEN, TOKEN, FINISH, USAGE, DONE]],
        }
    )
    relay, nodes = _relay(transport, "a", "b")
    call = InferenceCall(request_id="r")
    chunks = await _stream(relay, call)
    assert chunks == [ROLE, TOKEN, TOKEN, FINISH, USAGE]  # b's stream only: a's role chunk was held back
    assert call.delivered == 2 and call.attempts == 2 and call.node is nodes["b"]
    assert transport.closed == ["a", "b"]
    assert nodes["a"].in_flight == nodes["b"].in_flight == 0


async def test_nothing_is_retried_once_a_token_reached_the_client() -> None:
    transport = ScriptedTransport(streams={"a": [[ROLE, TOKEN, TOKEN, NodeFailed("a died mid-stream")]], "b": [[DONE]]})
    relay, nodes = _relay(transport, "a", "b")
    call = InferenceCall(request_id="r")
    received: list[bytes] = []
    with pytest.raises(NodeFailed, match="mid-stream"):
        async for batch in relay_stream(relay, call, "m", "/p", dict(BODY), client_wants_usage=True):
            received.extend(batch)
    assert received == [ROLE, TOKEN, TOKEN]
    assert call.delivered == 2  # the tokens delivered, for metering
    assert transport.calls == ["a"] and call.attempts == 1
    assert nodes["a"].model_stats("m").failures == 1 and nodes["a"].in_flight == 0


async def test_a_stream_ending_without_done_after_tokens_is_a_failure_not_a_retry() -> None:
    transport = ScriptedTransport(streams={"a": [[ROLE, TOKEN]], "b": [[TOKEN, DONE]]})
    relay, _ = _relay(transport, "a", "b")
    with pytest.raises(NodeFailed, match=r"before \[DONE\]"):
        await _stream(relay, InferenceCall(request_id="r"))
    assert transport.calls == ["a"]


async def test_a_stream_refused_by_the_node_is_not_retried() -> None:
    transport = ScriptedTransport(streams={"a": [[NodeRejectedRequest("bad")]], "b": [[TOKEN, DONE]]})
    relay, _ = _relay(transport, "a", "b")
    with pytest.raises(NodeRejectedRequest):
        await _stream(relay, InferenceCall(request_id="r"))
    assert transport.calls == ["a"]


async def test_a_node_silent_past_the_first_token_timeout_is_replaced() -> None:
    hang = Hang()
    transport = ScriptedTransport(streams={"a": [[ROLE, hang]], "b": [[TOKEN, DONE]]})
    relay, nodes = _relay(transport, "a", "b", policy=FailoverPolicy(first_token_timeout=0.05))
    call = InferenceCall(request_id="r")
    assert await _stream(relay, call) == [TOKEN]
    assert transport.calls == ["a", "b"] and transport.closed[0] == "a"
    assert nodes["a"].model_stats("m").failures == 1


async def test_the_first_token_wait_ends_at_the_deadline() -> None:
    transport = ScriptedTransport(streams={"a": [[Hang()]], "b": [[TOKEN, DONE]]})
    relay, _ = _relay(transport, "a", "b", policy=FailoverPolicy(first_token_timeout=30), clock=None)
    # The relay's clock must agree with asyncio's for the deadline: use the real monotonic clock.
    relay.clock = time.monotonic
    call = InferenceCall(request_id="r", deadline=time.monotonic() + 0.05)
    with pytest.raises(NodeTimeout):
        await _stream(relay, call)
    assert transport.calls == ["a"]  # out of time: no second attempt


async def test_repeated_failures_eject_a_node_until_its_trial_succeeds() -> None:
    clock = FakeClock()
    transport = ScriptedTransport(posts={"a": [NodeFailed("a down")], "b": [REPLY]})
    relay, nodes = _relay(transport, "a", "b", clock=clock)
    for i in range(6):
        await relay_unary(relay, InferenceCall(request_id=f"r{i}"), "m", "/p", BODY)
    assert nodes["a"].breaker.state is CircuitState.OPEN
    transport.calls.clear()
    for i in range(4):
        await relay_unary(relay, InferenceCall(request_id=f"s{i}"), "m", "/p", BODY)
    assert transport.calls == ["b"] * 4  # ejected: round robin skips it
    clock.advance(1.0)
    transport.posts["a"] = [REPLY]
    transport.calls.clear()
    for i in range(4):
        await relay_unary(relay, InferenceCall(request_id=f"t{i}"), "m", "/p", BODY)
    assert "a" in transport.calls  # the trial succeeded: back in rotation
    assert nodes["a"].breaker.state is CircuitState.CLOSED
    assert nodes["a"].model_stats("m").error_rate(clock()) == 0  # the outage's errors are forgotten


async def test_streams_are_measured_passively() -> None:
    clock = FakeClock()
    transport = ScriptedTransport(streams={"a": [[ROLE, TOKEN, TOKEN, TOKEN, FINISH, USAGE, DONE]]})
    relay, nodes = _relay(transport, "a", clock=clock)
    await _stream(relay, InferenceCall(request_id="r"))
    stats = nodes["a"].model_stats("m")
    assert stats.successes == 1 and stats.in_flight == 0
    assert stats.ttft.value == 0.0 and stats.tpot.value == 0.0  # the fake clock never moved
    assert stats.output_tokens.value == 2  # from the usage chunk


async def test_a_cancelled_request_frees_its_slot_without_blaming_the_node() -> None:
    hang = Hang()
    transport = ScriptedTransport(posts={"a": [hang]})
    relay, nodes = _relay(transport, "a")
    task = asyncio.create_task(relay_unary(relay, InferenceCall(request_id="r"), "m", "/p", BODY))
    await hang.reached.wait()
    assert nodes["a"].in_flight == 1 and nodes["a"].model_stats("m").in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert nodes["a"].in_flight == 0
    assert nodes["a"].model_stats("m").failures == 0


async def test_an_unknown_strategy_is_refused_before_any_node_is_called() -> None:
    transport = ScriptedTransport(posts={"a": [REPLY]})
    relay, _ = _relay(transport, "a")
    with pytest.raises(InvalidRequest):
        await relay_unary(relay, InferenceCall(request_id="r", strategy="random"), "m", "/p", BODY)
    assert transport.calls == []


async def test_a_pinned_request_stays_on_its_node() -> None:
    transport = ScriptedTransport(posts={"a": [REPLY], "b": [NodeFailed("b blip"), REPLY]})
    relay, _ = _relay(transport, "a", "b")
    call = InferenceCall(request_id="r", pinned_node_id="b")  # a stack's node
    await relay_unary(relay, call, "m", "/p", BODY)
    assert transport.calls == ["b", "b"]


async def test_while_every_node_is_ejected_requests_fail_fast_as_node_failures() -> None:
    clock = FakeClock()
    transport = ScriptedTransport(posts={"a": [NodeFailed("a answered 500")]})
    relay, nodes = _relay(transport, "a", clock=clock)
    with pytest.raises(NodeFailed, match="answered 500"):  # 3 attempts on the only node: its own error
        await relay_unary(relay, InferenceCall(request_id="r1"), "m", "/p", BODY)
    assert nodes["a"].breaker.state is CircuitState.OPEN
    transport.calls.clear()
    with pytest.raises(NodeFailed, match="set aside") as fast:
        await relay_unary(relay, InferenceCall(request_id="r2"), "m", "/p", BODY)
    assert transport.calls == []  # not called while ejected
    assert fast.value.retry_after == pytest.approx(1.0)


GARBAGE = [
    b"this is not json",
    b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>",
    b'{"choices":[{"message":{"content":"\xff\xfe"}}]}',  # not UTF-8
    b'["a", "list"]',
    b'{"choices":[],"usage":"a lot"}',
    b'{"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":"5"}}',
]


@pytest.mark.parametrize("garbage", GARBAGE)
async def test_a_garbage_answer_is_a_node_failure_that_fails_over(garbage: bytes) -> None:
    transport = ScriptedTransport(posts={"a": [garbage], "b": [REPLY]})
    relay, nodes = _relay(transport, "a", "b")
    call = InferenceCall(request_id="r")
    assert await relay_unary(relay, call, "m", "/v1/chat/completions", BODY) == REPLY
    assert transport.calls == ["a", "b"] and call.usage == orjson.loads(REPLY)["usage"]
    assert nodes["a"].model_stats("m").failures == 1  # the breaker and the error rate count it
    alone, _ = _relay(ScriptedTransport(posts={"a": [garbage]}), "a")
    lonely = InferenceCall(request_id="r2")
    with pytest.raises(NodeFailed, match=r"Node a (sent|reported implausible usage)"):
        await relay_unary(alone, lonely, "m", "/v1/chat/completions", BODY)
    assert lonely.usage is None


@pytest.mark.parametrize("garbage", GARBAGE)
async def test_garbage_before_the_first_token_fails_over_invisibly(garbage: bytes) -> None:
    transport = ScriptedTransport(streams={"a": [[ROLE, garbage, TOKEN, DONE]], "b": [[ROLE, TOKEN, USAGE, DONE]]})
    relay, nodes = _relay(transport, "a", "b")
    call = InferenceCall(request_id="r")
    assert await _stream(relay, call) == [ROLE, TOKEN, USAGE]
    assert transport.calls == ["a", "b"] and nodes["a"].model_stats("m").failures == 1


async def test_garbage_mid_stream_ends_it_as_a_node_failure_charged_by_what_was_delivered() -> None:
    claimed = b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":900,"total_tokens":903}}'
    transport = ScriptedTransport(streams={"a": [[ROLE, TOKEN, claimed, b"<html>oops</html>", TOKEN, DONE]]})
    relay, nodes = _relay(transport, "a", "b")
    call = InferenceCall(request_id="r")
    received: list[bytes] = []
    with pytest.raises(NodeFailed, match="not JSON"):
        async for batch in relay_stream(relay, call, "m", "/p", dict(BODY), client_wants_usage=False):
            received.extend(batch)
    assert received == [ROLE, TOKEN]
    assert call.delivered == 1 and call.usage is None  # the failed node's usage claim is not trusted
    assert nodes["a"].model_stats("m").failures == 1 and transport.calls == ["a"]


async def test_a_node_error_event_is_a_node_failure_with_its_message_sanitized() -> None:
    error_event = b'{"error":{"message":"engine died: db password=hunter2","type":"InternalServerError","code":500}}'
    transport = ScriptedTransport(streams={"a": [[ROLE, error_event]], "b": [[ROLE, TOKEN, DONE]]})
    relay, nodes = _relay(transport, "a", "b")
    assert await _stream(relay, InferenceCall(request_id="r")) == [ROLE, TOKEN]  # before a token: failed over
    assert nodes["a"].model_stats("m").failures == 1
    alone, _ = _relay(ScriptedTransport(streams={"a": [[ROLE, TOKEN, error_event]]}), "a")
    with pytest.raises(NodeFailed) as caught:
        await _stream(alone, InferenceCall(request_id="r2"))
    assert caught.value.message == "Node a failed mid-stream: engine died: db password=[redacted]"
