"""The model catalog: kinds, context lengths, price ranges and the kind check (issue 14)."""

from __future__ import annotations

import pytest

from atoma_proxy.config import ModelConfig, NodeConfig
from atoma_proxy.core.auth import _refusal
from atoma_proxy.core.catalog import ModelCatalog, usd
from atoma_proxy.core.errors import InvalidRequest, ModelNotFound
from atoma_proxy.core.ledger.estimate import RequestKind
from atoma_proxy.core.nodes.registry import NodeRegistry
from atoma_proxy.core.validation import check_chat_completion
from atoma_proxy.generated.atoma.routing.v1 import chat_pb2 as chat_pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb

NODES = [
    NodeConfig(
        id="a", url="http://a", models=["chat", "embed"], input_price_per_million=100, output_price_per_million=400
    ),
    NodeConfig(
        id="b",
        url="http://b",
        models=["chat", "img"],
        input_price_per_million=600,
        output_price_per_million=2_000_000,
        context_lengths={"chat": 2048},
    ),
]
MODELS = [
    ModelConfig(id="chat", kind="chat", context_length=8192, created=1_700_000_000),
    ModelConfig(id="embed", kind="embeddings"),
    ModelConfig(id="img", kind="images"),
]


def _catalog() -> ModelCatalog:
    return ModelCatalog(NodeRegistry.from_config(NODES), MODELS, NODES, image_price=lambda n: 7 if n.id == "b" else 3)


def test_a_model_has_kind_context_nodes_and_price_ranges() -> None:
    model = _catalog().model("chat")
    assert (model.kind, model.created, model.context_length) == ("chat", 1_700_000_000, 2048)
    assert list(model.nodes) == ["a", "b"]
    assert (model.pricing.input_per_million.min_micro_usd, model.pricing.input_per_million.max_micro_usd) == (100, 600)
    assert (model.pricing.output_per_million.min_usd, model.pricing.output_per_million.max_usd) == ("0.0004", "2")
    assert model.pricing.per_image.max_micro_usd == 0  # a chat model: no image price


def test_image_prices_for_image_models_and_unconfigured_models_are_plain() -> None:
    catalog = _catalog()
    assert catalog.model("img").pricing.per_image.max_micro_usd == 7
    registry = NodeRegistry.from_config(NODES)
    bare = ModelCatalog(registry).model("chat")
    assert (bare.kind, bare.created, bare.context_length) == ("", 0, 0)
    assert [m.id for m in catalog.models()] == ["chat", "embed", "img"]


def test_unknown_model_is_not_found() -> None:
    with pytest.raises(ModelNotFound):
        _catalog().model("nope")


def test_a_request_of_another_kind_is_refused_naming_the_models_that_serve_it() -> None:
    catalog = _catalog()
    catalog.check_kind("chat", RequestKind.CHAT)
    catalog.check_kind("chat", RequestKind.COMPLETION)
    catalog.check_kind("unconfigured", RequestKind.EMBEDDINGS)  # no kind known: the node decides
    with pytest.raises(InvalidRequest) as raised:
        catalog.check_kind("chat", RequestKind.EMBEDDINGS)
    assert raised.value.metadata == {"param": "model"}
    assert "does not serve embeddings" in raised.value.message and "embed" in raised.value.message


@pytest.mark.parametrize(("micro", "text"), [(0, "0"), (1, "0.000001"), (1_500_000, "1.5"), (2_000_000, "2")])
def test_usd_strings_are_exact(micro: int, text: str) -> None:
    assert usd(micro) == text


@pytest.mark.parametrize("role", ["system", "developer", "user", "assistant", "tool", "function"])
def test_openai_roles_are_accepted(role: str) -> None:
    check_chat_completion(pb.ChatCompletionRequest(model="m", messages=[chat_pb.ChatMessage(role=role)]))


def test_an_unknown_role_is_invalid() -> None:
    request = pb.ChatCompletionRequest(
        model="m", messages=[chat_pb.ChatMessage(role="user"), chat_pb.ChatMessage(role="wizard")]
    )
    with pytest.raises(InvalidRequest) as raised:
        check_chat_completion(request)
    assert raised.value.metadata == {"param": "messages[1].role"}


def test_account_tokens_sent_as_api_keys_are_named() -> None:
    assert "access token" in _refusal("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln")
    assert "refresh token" in _refusal("rt-atoma-abc")
    assert _refusal("sk-atoma-nope") == "Incorrect API key provided."
