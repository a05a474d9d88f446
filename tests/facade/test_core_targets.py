"""`facade.core_targets`: the channel target and its balancing/retry service config."""

from __future__ import annotations

import json

import pytest

from atoma_proxy.config import FacadeSettings
from atoma_proxy.facade.core_targets import channel_target


def _config(options: tuple[tuple[str, str | int], ...]) -> dict[str, object]:
    return json.loads(str(dict(options)["grpc.service_config"]))


def test_several_cores_are_one_address_list_balanced_round_robin_over_healthy_cores() -> None:
    target, options = channel_target(["127.0.0.1:5001", "127.0.0.2:5002"])
    assert target == "ipv4:127.0.0.1:5001,127.0.0.2:5002"
    config = _config(options)
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert config["healthCheckConfig"] == {"serviceName": ""}
    policy = config["methodConfig"][0]["retryPolicy"]  # type: ignore[index]
    assert policy["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert dict(options)["grpc.enable_retries"] == 1


def test_names_are_resolved_and_ipv6_is_bracketed() -> None:
    target, _ = channel_target(["[::1]:5001", "[::1]:5002"])
    assert target == "ipv6:[::1]:5001,[::1]:5002"
    target, _ = channel_target(["localhost:5001", "127.0.0.1:5002"])
    assert target.startswith("ipv4:127.0.0.1:5001,") or target.startswith("ipv6:")


@pytest.mark.parametrize(
    "bad", [["127.0.0.1", "127.0.0.1:1"], ["unix:/tmp/x:1", "127.0.0.1:1"], ["127.0.0.1:1", "[::1]:2"]]
)
def test_bad_lists_are_refused_with_a_clear_error(bad: list[str]) -> None:
    with pytest.raises(ValueError, match="core_targets"):
        channel_target(bad)


def test_one_core_target_keeps_one_connection_without_health_checks() -> None:
    facade = FacadeSettings(core_target="dns:///core.internal:50051")
    assert facade.targets() == ["dns:///core.internal:50051"]
    target, options = channel_target(facade.targets(), balanced=bool(facade.core_targets))
    assert target == "dns:///core.internal:50051"
    config = _config(options)
    assert "loadBalancingConfig" not in config and "healthCheckConfig" not in config
    assert "methodConfig" in config
    several = FacadeSettings(core_targets=["a:1", "b:2"], core_target="ignored:3")
    assert several.targets() == ["a:1", "b:2"]
