"""CLI options, runtime updates and their validation."""

from __future__ import annotations

import argparse

import pytest

from atoma_proxy.nodesim.config import SimConfig, add_cli_arguments, apply_runtime_update, config_from_args


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    return parser.parse_args(argv)


def test_cli_defaults_match_simconfig_defaults() -> None:
    ns = parse()
    assert (ns.host, ns.port) == ("127.0.0.1", 8100)
    assert config_from_args(ns) == SimConfig()


def test_cli_options_reach_the_config() -> None:
    ns = parse(
        "--node-id", "n1", "--chat-model", "a", "--chat-model", "b", "--embedding-model", "e",
        "--image-model", "i", "--ttft-ms", "12.5", "--tokens-per-second", "40", "--max-concurrency", "3",
        "--reply-tokens", "7", "--error-rate", "0.25", "--error-status", "429", "--hang-rate", "0.1",
        "--drop-rate", "0.2", "--drop-after-tokens", "5", "--seed", "9", "--api-key", "k", "--port", "0",
    )  # fmt: skip
    config = config_from_args(ns)
    assert ns.port == 0
    assert config == SimConfig(
        node_id="n1",
        chat_models=["a", "b"],
        embedding_models=["e"],
        image_models=["i"],
        ttft_ms=12.5,
        tokens_per_second=40,
        max_concurrency=3,
        reply_tokens=7,
        error_rate=0.25,
        error_status=429,
        hang_rate=0.1,
        drop_rate=0.2,
        drop_after_tokens=5,
        seed=9,
        api_key="k",
    )


def test_runtime_update_changes_only_given_fields() -> None:
    config = SimConfig()
    apply_runtime_update(config, {"error_rate": 1, "error_status": 503, "max_concurrency": 2.0})
    assert (config.error_rate, config.error_status, config.max_concurrency) == (1, 503, 2)
    assert isinstance(config.max_concurrency, int)
    assert config.ttft_ms == 0


@pytest.mark.parametrize(
    "update",
    [
        {"error_rate": 1.5},
        {"error_status": 200},
        {"ttft_ms": -1},
        {"max_concurrency": 1.5},
        {"drop_rate": "high"},
        {"hang_rate": True},
        {"reply_tokens": 3},  # not a runtime field
        {"node_id": "x"},
        [1, 2],
    ],
)
def test_runtime_update_rejects_bad_values_atomically(update: object) -> None:
    config = SimConfig()
    with pytest.raises(ValueError):
        apply_runtime_update(config, {"ttft_ms": 5, **update} if isinstance(update, dict) else update)
    assert config == SimConfig()  # nothing applied, not even the valid ttft_ms


def test_constructor_validates() -> None:
    with pytest.raises(ValueError):
        SimConfig(error_rate=2)
    with pytest.raises(ValueError):
        SimConfig(reply_tokens=-1)
