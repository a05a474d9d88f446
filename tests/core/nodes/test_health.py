"""Active health probes: exponential backoff for failing nodes, recovery, pruning."""

from __future__ import annotations

import itertools

from atoma_proxy.core.nodes.health import HealthPoller
from atoma_proxy.core.nodes.registry import NodeRegistry
from tests.core.nodes.support import FakeClock, ScriptedTransport, make_node


async def test_failing_nodes_are_probed_with_exponential_backoff_and_recover() -> None:
    clock = FakeClock()
    registry = NodeRegistry([make_node("up"), make_node("down")], clock=clock)
    transport = ScriptedTransport(healthy={"up": True, "down": False})
    poller = HealthPoller(registry, transport, interval=1.0, max_backoff=4.0, clock=clock)
    down = registry.get("down")
    assert down is not None
    down.model_stats("m").record_failure(clock())

    probed_down_at = []
    for _ in range(200):  # 20 simulated seconds in 0.1 s steps
        transport.probes.clear()
        await poller.probe_due()
        if "down" in transport.probes:
            probed_down_at.append(round(clock(), 1))
        clock.advance(0.1)
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(probed_down_at)]
    assert gaps[:4] == [1.0, 2.0, 4.0, 4.0]  # 1, 2, 4, then capped at max_backoff
    assert not down.healthy

    transport.healthy["down"] = True
    clock.advance(4.0)
    await poller.probe_due()
    assert down.healthy
    assert down.model_stats("m").error_rate(clock()) == 0  # the outage's errors are forgotten
    assert poller.next_delay("down") == 1.0


async def test_nodes_drained_by_a_reload_are_removed_once_idle() -> None:
    registry = NodeRegistry([make_node("a"), make_node("b")])
    registry.drain("b", remove_when_idle=True)
    poller = HealthPoller(registry, ScriptedTransport(), interval=1.0)
    await poller.probe_due()
    assert [n.id for n in registry.nodes()] == ["a"]
