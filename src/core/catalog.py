"""What the network offers, per model: kind, context length, the nodes serving it and their price range.

ListModels and GetModel answer from here; `check_kind` refuses a request of the wrong kind (embeddings
of a chat model) before anything is reserved or any node called. Kinds, context lengths and `created`
come from the configuration's `[[models]]` (a node's `context_lengths` override the model's: the
smallest over its nodes is reported); prices are the live registry's, draining nodes excluded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal

from atoma_proxy.config import ModelConfig, NodeConfig
from atoma_proxy.core.errors import InvalidRequest
from atoma_proxy.core.ledger.estimate import RequestKind
from atoma_proxy.core.nodes.registry import Node, NodeRegistry
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb

__all__ = ["ModelCatalog", "usd"]

# The model kind that serves each request kind (a chat model serves legacy completions too).
_SERVED_BY = {
    RequestKind.CHAT: "chat",
    RequestKind.COMPLETION: "chat",
    RequestKind.EMBEDDINGS: "embeddings",
    RequestKind.IMAGES: "images",
}
_NOUNS = {"chat": "chat completions", "embeddings": "embeddings", "images": "images"}


def usd(micro_usd: int) -> str:
    """Micro-USD as a decimal USD string without float rounding: 1_500_000 -> "1.5", 100 -> "0.0001"."""
    text = format(Decimal(micro_usd).scaleb(-6), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _range(values: list[int]) -> pb.PriceRange:
    low, high = min(values, default=0), max(values, default=0)
    return pb.PriceRange(min_micro_usd=low, max_micro_usd=high, min_usd=usd(low), max_usd=usd(high))


class ModelCatalog:
    def __init__(
        self,
        registry: NodeRegistry,
        models: Iterable[ModelConfig] = (),
        nodes: Iterable[NodeConfig] = (),
        image_price: Callable[[Node], int] = lambda node: 0,
    ) -> None:
        self._registry = registry
        self._models: Mapping[str, ModelConfig] = {m.id: m for m in models}
        self._context: Mapping[str, Mapping[str, int]] = {n.id: n.context_lengths for n in nodes}
        self._image_price = image_price

    def kind(self, model: str) -> str | None:
        config = self._models.get(model)
        return config.kind if config is not None else None

    def check_kind(self, model: str, kind: RequestKind) -> None:
        """InvalidRequest (param `model`) when the model is configured as another kind than the request's."""
        actual, wanted = self.kind(model), _SERVED_BY[kind]
        if actual is None or actual == wanted:
            return
        others = sorted(m for m, c in self._models.items() if c.kind == wanted and m in self._registry.models())
        hint = f" Models that serve {_NOUNS[wanted]}: {', '.join(others)}." if others else ""
        raise InvalidRequest(
            f"The model `{model}` does not serve {_NOUNS[wanted]}: it is a{'n' if actual == 'images' else ''} "
            f"{actual} model.{hint}",
            param="model",
        )

    def model(self, model: str) -> pb.Model:
        """The model's entry; ModelNotFound when no node serves it."""
        return self._entry(model, self._registry.candidates(model))

    def models(self) -> list[pb.Model]:
        """Every model at least one (non-draining) node serves, by id."""
        return [self._entry(model, self._registry.candidates(model)) for model in sorted(self._registry.models())]

    def _entry(self, model: str, nodes: list[Node]) -> pb.Model:
        config = self._models.get(model)
        kind = (config.kind or "") if config is not None else ""
        default_context = config.context_length if config is not None else None
        contexts = [self._context.get(n.id, {}).get(model, default_context) for n in nodes]
        known = [c for c in contexts if c]
        pricing = pb.ModelPricing(
            input_per_million=_range([n.input_price_per_million for n in nodes]),
            output_per_million=_range([n.output_price_per_million for n in nodes]),
            per_image=_range([self._image_price(n) for n in nodes] if kind in ("", "images") else []),
        )
        return pb.Model(
            id=model,
            object="model",
            created=config.created if config is not None else 0,
            owned_by="atoma",
            kind=kind,
            context_length=min(known, default=0),
            pricing=pricing,
            nodes=sorted(n.id for n in nodes),
        )
