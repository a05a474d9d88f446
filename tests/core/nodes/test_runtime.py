"""The node runtime reloads what its owner's `load_nodes` returns: it never reads the configuration itself."""

from __future__ import annotations

import pytest

from atoma_proxy.config import NodeConfig, Settings
from atoma_proxy.core.nodes.runtime import STATIC, NodeRuntime
from tests.core.nodes.support import ScriptedTransport


def _config(node_id: str, *models: str) -> NodeConfig:
    return NodeConfig(id=node_id, url=f"http://{node_id}", models=list(models or ("m",)))


def test_reload_applies_what_load_nodes_returns_and_leaves_static_nodes_alone() -> None:
    files = [[_config("a")], [_config("a", "m", "new"), _config("c")]]
    calls: list[int] = []

    def load_nodes() -> list[NodeConfig]:
        calls.append(1)
        return files[min(len(calls), 2) - 1]

    runtime = NodeRuntime(Settings(nodes=[_config("a"), _config("sim")]), ScriptedTransport(), load_nodes=load_nodes)
    assert runtime.registry.get("sim").source == STATIC  # given, but never named by the configuration
    report = runtime.reload()
    assert (report.added, report.updated, report.drained) == (["c"], ["a"], [])
    assert "new" in runtime.registry.models()
    assert not runtime.registry.get("sim").draining
    assert len(calls) == 2


def test_without_load_nodes_there_is_nothing_to_reload() -> None:
    runtime = NodeRuntime(Settings(nodes=[_config("a")]), ScriptedTransport())
    assert runtime.registry.get("a").source != STATIC
    runtime.reload_on_sighup()  # a no-op
    with pytest.raises(RuntimeError):
        runtime.reload()
