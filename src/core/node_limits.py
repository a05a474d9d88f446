"""Holding a node to what the proxy reserved for: the output cap, and the usage it may claim.

    limits = RequestLimits(output_cap=5, choices=1, prompt_tokens=12)   # from the ledger's estimate
    usage = check_usage(node_usage, limits)        # raises ImplausibleUsage; None when there is none
    guard = StreamCap(limits)
    if guard.exceeded_by(chunk): ... relay guard.closing(chunk, ...) instead, and release the node

The node is told the cap (`node_requests.put_output_cap`), the ledger reserved for it, and a
client never receives more: a stream is cut at the cap (`StreamCap`), and a node's `usage` is
believed only when it is something the request could have produced (`check_usage`):

* `prompt_tokens`, `completion_tokens`, `total_tokens`, when present and not null, are integers
  (not bools, floats or strings) from 0 up to a limit;
* `completion_tokens` <= the output cap times the choices (what was reserved; beyond it the node
  over-produced);
* `prompt_tokens` <= `PROMPT_FACTOR` x the estimated prompt + `PROMPT_SLACK` (a tokenizer's count
  may miss a chat template's tokens, an image may cost more than the tokens it is estimated at);
* `total_tokens` <= those two limits together.

A Responses API node's usage names them `input_tokens`, `output_tokens`, `total_tokens`: with no
chat name present, those are read as the chat ones (the checked usage uses the chat names).

Without limits only the type and `MAX_USAGE_TOKENS` apply. Anything else is a node failure
(NODE_FAILED), never a charge. Stream tokens are counted as the meter counts them: one per chunk
that carries generated text (`pipeline.chunks.classify`), per choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from atoma_proxy.core.pipeline.chunks import SeenChunk

__all__ = [
    "MAX_USAGE_TOKENS",
    "PROMPT_FACTOR",
    "PROMPT_SLACK",
    "ImplausibleUsage",
    "Overproduction",
    "RequestLimits",
    "StreamCap",
    "check_usage",
]

#: A bound on any token count a node reports, whatever the request (fits every integer column).
MAX_USAGE_TOKENS = 2**31 - 1
PROMPT_FACTOR = 4
PROMPT_SLACK = 4096
_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")
_RESPONSES_FIELDS = ("input_tokens", "output_tokens", "total_tokens")


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """What one request may produce: the output cap per choice the node was told, and the estimated prompt."""

    output_cap: int  # generated tokens per choice
    choices: int  # n, times the prompts of a batched completion
    prompt_tokens: int  # the estimate: exact with a tokenizer, else a bound

    @property
    def max_completion_tokens(self) -> int:
        return self.output_cap * self.choices

    @property
    def max_prompt_tokens(self) -> int:
        return PROMPT_FACTOR * self.prompt_tokens + PROMPT_SLACK


class ImplausibleUsage(ValueError):
    """A node's `usage` that the request could not have produced."""


class Overproduction(ImplausibleUsage):
    """More generated tokens than the cap the node was told."""


def check_usage(usage: Any, limits: RequestLimits | None) -> dict[str, int] | None:
    """The token counts of a node's `usage` (only those it reported), checked; None when it reported none."""
    if usage is None:
        return None
    if not isinstance(usage, dict):
        raise ImplausibleUsage(f"`usage` is not an object: {type(usage).__name__}")
    said = _FIELDS  # the names the node used, for the error messages
    if not any(name in usage for name in _FIELDS[:2]) and any(name in usage for name in _RESPONSES_FIELDS[:2]):
        said = _RESPONSES_FIELDS
        usage = {chat: usage.get(name) for chat, name in zip(_FIELDS, _RESPONSES_FIELDS, strict=True)}
    bounds = (MAX_USAGE_TOKENS,) * 3
    if limits is not None:
        most_prompt, most_completion = limits.max_prompt_tokens, limits.max_completion_tokens
        bounds = (most_prompt, most_completion, most_prompt + most_completion)
    checked: dict[str, int] = {}
    for name, shown, bound in zip(_FIELDS, said, bounds, strict=True):
        value = usage.get(name)
        if value is None:
            continue
        if type(value) is not int or value < 0:
            raise ImplausibleUsage(f"`usage.{shown}` is not a token count: {str(value)[:40]!r}")
        if value > min(bound, MAX_USAGE_TOKENS):
            error = Overproduction if name == "completion_tokens" else ImplausibleUsage
            raise error(f"`usage.{shown}` is {value}, more than the request could produce ({bound})")
        checked[name] = value
    return checked


class StreamCap:
    """Counts a stream's generated tokens per choice, to stop relaying at the cap.

    A chunk with generated text counts one token for every choice it lists (for one choice, no
    parsing at all); a choice without an integer index in range counts against all of them
    together. The cap is exceeded when a choice would get more than `output_cap` tokens, or all of
    them together more than `max_completion_tokens`.
    """

    def __init__(self, limits: RequestLimits) -> None:
        self.limits = limits
        self.delivered = 0  # generated tokens relayed, all choices
        self._per_choice = [0] * limits.choices

    def exceeded_by(self, chunk: SeenChunk) -> bool:
        """Count a chunk with generated text; True when it would go past the cap (then not counted)."""
        limits = self.limits
        if self.delivered >= limits.max_completion_tokens:
            return True
        indices = [0] if limits.choices == 1 else _choice_indices(chunk, limits.choices)
        if any(self._per_choice[i] >= limits.output_cap for i in indices):
            return True
        for i in indices:
            self._per_choice[i] += 1
        self.delivered += 1
        return False

    def usage(self) -> dict[str, int]:
        """The usage of the stream as cut: the estimated prompt, the tokens relayed."""
        prompt = self.limits.prompt_tokens
        return {"prompt_tokens": prompt, "completion_tokens": self.delivered, "total_tokens": prompt + self.delivered}

    def closing(self, parsed: dict[str, Any], *, chat: bool, with_usage: bool) -> list[bytes]:
        """The chunks that end the stream in place of `parsed`: every choice finished with `length`, then the usage."""
        head = {key: parsed[key] for key in ("id", "object", "created", "model") if key in parsed}
        body: dict[str, Any] = {"delta": {}} if chat else {"text": ""}
        finish = [{"index": i, **body, "logprobs": None, "finish_reason": "length"} for i in range(self.limits.choices)]
        chunks = [orjson.dumps({**head, "choices": finish})]
        if with_usage:
            chunks.append(orjson.dumps({**head, "choices": [], "usage": self.usage()}))
        return chunks


def _choice_indices(chunk: SeenChunk, choices: int) -> list[int]:
    """The choices a chunk of a several-choice stream carries; all of them when it does not say."""
    indices = chunk.choices
    if not indices or any(not 0 <= i < choices for i in indices):
        return list(range(choices))
    return list(indices)
