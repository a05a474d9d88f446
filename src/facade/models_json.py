"""The JSON of /v1/models, /v1/models/{model} and /v1/quote: the core's messages in OpenAI's shapes.

OpenAI's model object (`id`, `object`, `created` as an integer, `owned_by`) plus fields OpenAI
clients ignore: `kind`, `context_length`, `nodes`, OpenRouter's `pricing` (USD per token and per
image, as decimal strings, at the cheapest node) and `price_range` (micro-USD and USD, lowest and
highest over the nodes serving the model).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb

__all__ = ["model_json", "quote_json"]


def _decimal(value: int, exponent: int) -> str:
    text = format(Decimal(value).scaleb(exponent), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _range(price: pb.PriceRange) -> dict[str, Any]:
    return {
        "min_micro_usd": price.min_micro_usd,
        "max_micro_usd": price.max_micro_usd,
        "min_usd": price.min_usd,
        "max_usd": price.max_usd,
    }


def model_json(model: pb.Model) -> dict[str, Any]:
    pricing = model.pricing
    return {
        "id": model.id,
        "object": model.object or "model",
        "created": model.created,
        "owned_by": model.owned_by,
        "kind": model.kind or None,
        "context_length": model.context_length or None,
        "nodes": list(model.nodes),
        # micro-USD per million tokens -> USD per token is 10^-12.
        "pricing": {
            "prompt": _decimal(pricing.input_per_million.min_micro_usd, -12),
            "completion": _decimal(pricing.output_per_million.min_micro_usd, -12),
            "image": _decimal(pricing.per_image.min_micro_usd, -6),
        },
        "price_range": {
            "input_per_million": _range(pricing.input_per_million),
            "output_per_million": _range(pricing.output_per_million),
            "per_image": _range(pricing.per_image),
        },
    }


def quote_json(quote: pb.EstimateCostResponse) -> dict[str, Any]:
    return {
        "object": "quote",
        "model": quote.model,
        "kind": quote.kind,
        "prompt_tokens": quote.prompt_tokens,
        "prompt_tokens_exact": quote.prompt_tokens_exact,
        "max_completion_tokens": quote.max_completion_tokens,
        "reserved_completion_tokens": quote.reserved_completion_tokens,
        "images": quote.images,
        "min_cost_micro_usd": quote.min_cost_micro_usd,
        "max_cost_micro_usd": quote.max_cost_micro_usd,
        "reserved_micro_usd": quote.reserved_micro_usd,
        "min_cost_usd": _decimal(quote.min_cost_micro_usd, -6),
        "max_cost_usd": _decimal(quote.max_cost_micro_usd, -6),
        "user_price": quote.user_price,
        "nodes": [
            {"node_id": n.node_id, "healthy": n.healthy, "cost_micro_usd": n.cost_micro_usd} for n in quote.nodes
        ],
    }
