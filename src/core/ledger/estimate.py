"""The most a request may cost, known before any node is called.

    estimate = estimate_chat(body, counter, default_max_completion_tokens=4096)
    amount = max_cost(estimate, highest_price(...), price_per_image)

Prompt tokens come from the model's `PromptCounter` (exact, or a conservative bound: see
`token_counting`). Output tokens are the request's cap, `max_completion_tokens`, else
`max_tokens`, else `ledger.default_max_completion_tokens`, times `n` (and, for completions, times
the number of prompts). Embeddings have no output. Images cost `n * price_per_image`.

The body is the node-ready JSON (`node_requests`), so the estimate sees exactly what the node will
(extra fields included), and `n` and the caps cannot differ between what is priced and what runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from atoma_proxy.core.ledger.pricing import TokenPrice, token_cost
from atoma_proxy.core.ledger.token_counting import PromptCounter

__all__ = [
    "Estimate",
    "RequestKind",
    "estimate_chat",
    "estimate_completion",
    "estimate_embeddings",
    "estimate_images",
    "max_cost",
]


class RequestKind(Enum):
    CHAT = "chat"
    COMPLETION = "completion"
    EMBEDDINGS = "embeddings"
    IMAGES = "images"


@dataclass(frozen=True, slots=True)
class Estimate:
    """Upper bounds of what a request uses (prompt_tokens is exact when `prompt_exact`)."""

    kind: RequestKind
    prompt_tokens: int
    prompt_exact: bool
    completion_tokens: int = 0
    images: int = 0

    @property
    def tokens(self) -> int:
        """Prompt plus output tokens: the compute units a stack must hold for the request."""
        return self.prompt_tokens + self.completion_tokens


def _output_cap(body: dict[str, Any], default: int) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default


def _count(body: dict[str, Any], name: str) -> int:
    value = body.get(name, 1)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def _items(value: Any) -> list[str | list[int]]:
    """OpenAI's prompt/input forms as a list of items (the body already holds a list)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(t, int) for t in value):
        return [value]
    return list(value) if isinstance(value, list) else []


def estimate_chat(body: dict[str, Any], counter: PromptCounter, *, default_max_completion_tokens: int) -> Estimate:
    return Estimate(
        RequestKind.CHAT,
        prompt_tokens=counter.chat(body),
        prompt_exact=counter.exact,
        completion_tokens=_output_cap(body, default_max_completion_tokens) * _count(body, "n"),
    )


def estimate_completion(
    body: dict[str, Any], counter: PromptCounter, *, default_max_completion_tokens: int
) -> Estimate:
    prompts = _items(body.get("prompt"))
    return Estimate(
        RequestKind.COMPLETION,
        prompt_tokens=sum(counter.item(p) for p in prompts),
        prompt_exact=counter.exact,
        completion_tokens=_output_cap(body, default_max_completion_tokens) * _count(body, "n") * max(len(prompts), 1),
    )


def estimate_embeddings(body: dict[str, Any], counter: PromptCounter) -> Estimate:
    inputs = _items(body.get("input"))
    return Estimate(
        RequestKind.EMBEDDINGS, prompt_tokens=sum(counter.item(i) for i in inputs), prompt_exact=counter.exact
    )


def estimate_images(body: dict[str, Any]) -> Estimate:
    return Estimate(RequestKind.IMAGES, prompt_tokens=0, prompt_exact=True, images=_count(body, "n"))


def max_cost(estimate: Estimate, price: TokenPrice, price_per_image: int) -> int:
    """Micro-USD to reserve: the estimate at `price` (the highest among the candidate nodes)."""
    if estimate.kind is RequestKind.IMAGES:
        return estimate.images * price_per_image
    return token_cost(estimate.prompt_tokens, estimate.completion_tokens, price)
