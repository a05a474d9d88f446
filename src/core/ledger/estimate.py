"""The most a request may use and cost, known before any node is called: the one estimate.

    estimator = Estimator(tokenizers, default_max_completion_tokens=4096)
    estimate = estimator.estimate(RequestKind.CHAT, model, body)   # the rate limiter and the ledger both use it
    amount = max_cost(estimate, highest_price(...), price_per_image)

Prompt tokens come from the model's `PromptCounter` (exact, or a conservative bound: see
`token_counting`). Output tokens are the request's output cap times `n` (and, for completions,
times the number of prompts). The cap is the smallest of the caps the client gave
(`max_completion_tokens`, `max_tokens`), else `ledger.default_max_completion_tokens`; the node is
told exactly that cap (`node_requests.put_output_cap`) and held to it (`node_limits`). Embeddings
have no output. Images cost `n * price_per_image`.

The body is the node-ready JSON (`node_requests`), so the estimate sees exactly what the node will
(extra fields included), and `n` and the caps cannot differ between what is priced and what runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import orjson

from atoma_proxy.core.ledger.pricing import TokenPrice, token_cost
from atoma_proxy.core.ledger.token_counting import PromptCounter, Tokenizers
from atoma_proxy.core.node_limits import RequestLimits

__all__ = [
    "Estimate",
    "Estimator",
    "RequestKind",
    "estimate_chat",
    "estimate_completion",
    "estimate_embeddings",
    "estimate_images",
    "max_cost",
    "output_cap",
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
    output_cap: int = 0  # generated tokens per choice (completion_tokens = output_cap * choices)
    choices: int = 1

    @property
    def tokens(self) -> int:
        """Prompt plus output tokens: the compute units a stack must hold for the request."""
        return self.prompt_tokens + self.completion_tokens

    def limits(self) -> RequestLimits:
        """What the node may produce and claim for this request (see `node_limits`)."""
        return RequestLimits(self.output_cap, self.choices, self.prompt_tokens)


def output_cap(body: dict[str, Any], default: int) -> int:
    """The output cap per choice: the smallest cap the client gave, else `default`."""
    caps = [
        value
        for value in (body.get("max_completion_tokens"), body.get("max_tokens"))
        if isinstance(value, int) and not isinstance(value, bool) and value > 0
    ]
    return min(caps, default=default)


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
    cap, choices = output_cap(body, default_max_completion_tokens), _count(body, "n")
    return Estimate(
        RequestKind.CHAT,
        prompt_tokens=counter.chat(body),
        prompt_exact=counter.exact,
        completion_tokens=cap * choices,
        output_cap=cap,
        choices=choices,
    )


def estimate_completion(
    body: dict[str, Any], counter: PromptCounter, *, default_max_completion_tokens: int
) -> Estimate:
    prompts = _items(body.get("prompt"))
    cap, choices = output_cap(body, default_max_completion_tokens), _count(body, "n") * max(len(prompts), 1)
    return Estimate(
        RequestKind.COMPLETION,
        prompt_tokens=sum(counter.item(p) for p in prompts),
        prompt_exact=counter.exact,
        completion_tokens=cap * choices,
        output_cap=cap,
        choices=choices,
    )


def estimate_embeddings(body: dict[str, Any], counter: PromptCounter) -> Estimate:
    inputs = _items(body.get("input"))
    return Estimate(
        RequestKind.EMBEDDINGS, prompt_tokens=sum(counter.item(i) for i in inputs), prompt_exact=counter.exact
    )


def estimate_images(body: dict[str, Any], counter: PromptCounter) -> Estimate:
    prompt = body.get("prompt")
    tokens = counter.item(prompt) if isinstance(prompt, str) else 0
    return Estimate(RequestKind.IMAGES, prompt_tokens=tokens, prompt_exact=counter.exact, images=_count(body, "n"))


def max_cost(estimate: Estimate, price: TokenPrice, price_per_image: int) -> int:
    """Micro-USD to reserve: the estimate at `price` (the highest among the candidate nodes)."""
    if estimate.kind is RequestKind.IMAGES:
        return estimate.images * price_per_image
    return token_cost(estimate.prompt_tokens, estimate.completion_tokens, price)


class Estimator:
    """The estimate of every request kind, with the model's prompt counter (token_counting.py)."""

    def __init__(self, tokenizers: Tokenizers | None = None, *, default_max_completion_tokens: int = 4096) -> None:
        self.tokenizers = tokenizers or Tokenizers()
        self.default_max_completion_tokens = default_max_completion_tokens

    def estimate(self, kind: RequestKind, model: str, body: dict[str, Any]) -> Estimate:
        counter = self.tokenizers.for_model(model)
        cap = self.default_max_completion_tokens
        if kind is RequestKind.CHAT:
            return estimate_chat(body, counter, default_max_completion_tokens=cap)
        if kind is RequestKind.COMPLETION:
            return estimate_completion(body, counter, default_max_completion_tokens=cap)
        if kind is RequestKind.EMBEDDINGS:
            return estimate_embeddings(body, counter)
        return estimate_images(body, counter)

    def generated(self, model: str, answer: bytes) -> int:
        """Generated tokens of a non-streamed answer that reported no usage: its choices' text, counted
        by the model's tokenizer, else bounded by its UTF-8 bytes (`token_counting`)."""
        try:
            parsed = orjson.loads(answer)
        except orjson.JSONDecodeError:
            return 0
        choices = parsed.get("choices") if isinstance(parsed, dict) else None
        if not isinstance(choices, list):
            return 0
        counter = self.tokenizers.for_model(model)
        return sum(counter.generated(text) for choice in choices for text in _generated_texts(choice))


def _generated_texts(choice: Any) -> list[str]:
    """The generated text of one choice of a non-streamed answer: its text, content, reasoning and tool calls."""
    if not isinstance(choice, dict):
        return []
    texts = [choice.get("text")]
    message = choice.get("message")
    if isinstance(message, dict):
        texts += [message.get("content"), message.get("reasoning_content"), message.get("reasoning")]
        if message.get("tool_calls"):
            texts.append(orjson.dumps(message["tool_calls"]).decode())
    return [text for text in texts if isinstance(text, str) and text]
