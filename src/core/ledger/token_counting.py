"""Counting a request's prompt tokens before a node is called.

Three counters, chosen per model by the `[[tokenizers]]` configuration:

* `SimWordsCounter` (`kind = "sim-words"`): the node simulator's own rule
  (`atoma_proxy.sim_words`), so estimates for simulated models are exact. Exact.
* `HuggingFaceCounter` (`kind = "huggingface"`, `path = "tokenizer.json"`): the model's tokenizer,
  loaded from a local file with the `tokenizers` package (never downloaded). Completions and
  embeddings inputs are encoded with special tokens, as vLLM does; a chat prompt is the special
  tokens once, each message's text plus OpenAI's chat overhead (3 tokens per message, 3 for the
  reply priming), images at `IMAGE_PART_TOKENS` each. Counted as exact (the operator says it is the model's tokenizer),
  although a chat template may add a few tokens this does not see.
* `ByteBoundCounter` (no tokenizer configured): a conservative upper bound. Every token of a
  byte-level BPE or byte-fallback tokenizer covers at least one UTF-8 byte of the text, so the
  byte count bounds the text's tokens; `BOUND_MESSAGE_OVERHEAD` per message covers the chat
  template's role markers, `BOUND_PROMPT_OVERHEAD` the reply priming and BOS, and the JSON of
  anything else a template renders (tool definitions, tool calls, non-text parts other than
  images) counts at one token per byte. Not exact.

A token-id array (completions and embeddings) counts its length under every counter. The same
counters count a non-streamed answer's generated text when its node reported no usage
(`generated`): exactly, or by the byte bound.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import orjson

from atoma_proxy import sim_words
from atoma_proxy.config import TokenizerConfig

__all__ = [
    "BOUND_MESSAGE_OVERHEAD",
    "BOUND_PROMPT_OVERHEAD",
    "IMAGE_PART_TOKENS",
    "ByteBoundCounter",
    "HuggingFaceCounter",
    "PromptCounter",
    "SimWordsCounter",
    "Tokenizers",
]

#: Tokens reserved for one image content part (a 1024x1024 image is 765 tokens at OpenAI's high
#: detail and 1,369 for Qwen2-VL at its default resolution; 2,048 leaves room above both).
IMAGE_PART_TOKENS = 2048
#: Bound of the chat template's tokens around one message (role markers, separators).
BOUND_MESSAGE_OVERHEAD = 8
#: Bound of the tokens a prompt gets besides its messages (BOS, reply priming).
BOUND_PROMPT_OVERHEAD = 8
# OpenAI's chat accounting, which the simulator and the HF counter follow.
_TOKENS_PER_MESSAGE = 3
_REPLY_PRIMING = 3
# Request fields a chat template renders into the prompt besides the messages.
_TEMPLATE_FIELDS = ("tools", "functions")
_MESSAGE_SKIP = frozenset({"role", "content"})


class PromptCounter(Protocol):
    """Prompt tokens of a node-ready request body."""

    #: True when the count is the node's own (not merely a bound).
    exact: bool

    def chat(self, body: dict[str, Any]) -> int:
        """Prompt tokens of a chat completion body (its `messages`, and what the template adds)."""
        ...

    def item(self, item: str | list[int]) -> int:
        """Tokens of one completions prompt or embeddings input."""
        ...

    def generated(self, text: str) -> int:
        """Tokens of generated text (no special tokens)."""
        ...


class SimWordsCounter:
    """The node simulator's tokenizer: exact for simulated nodes."""

    exact = True

    def chat(self, body: dict[str, Any]) -> int:
        return sim_words.chat_prompt_tokens(body.get("messages") or [])

    def item(self, item: str | list[int]) -> int:
        return sim_words.prompt_tokens(item)

    def generated(self, text: str) -> int:
        return sim_words.count_tokens(text)


class HuggingFaceCounter:
    """A Hugging Face `tokenizer.json` (local file)."""

    exact = True

    def __init__(self, path: str | Path) -> None:
        from tokenizers import Tokenizer  # imported here: only deployments with tokenizers configured pay for it

        self._tokenizer = Tokenizer.from_file(str(path))
        # What the tokenizer adds to a sequence (BOS, EOS): once per prompt, not once per message.
        self._special = len(self._tokenizer.encode("", add_special_tokens=True).ids)

    def _text(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids) if text else 0

    def chat(self, body: dict[str, Any]) -> int:
        total = _REPLY_PRIMING + self._special
        for message in body.get("messages") or []:
            total += _TOKENS_PER_MESSAGE
            total += sum(self._text(text) for text in _texts(message.get("content")))
            total += IMAGE_PART_TOKENS * _image_parts(message.get("content"))
            extra = {k: v for k, v in message.items() if k not in _MESSAGE_SKIP}
            if "tool_calls" in extra:
                total += self._text(orjson.dumps(extra["tool_calls"]).decode())
        for name in _TEMPLATE_FIELDS:
            if name in body:
                total += self._text(orjson.dumps(body[name]).decode())
        return total

    def item(self, item: str | list[int]) -> int:
        return self._text(item) + self._special if isinstance(item, str) else len(item)

    def generated(self, text: str) -> int:
        return self._text(text)


class ByteBoundCounter:
    """An upper bound without a tokenizer (see the module docstring)."""

    exact = False

    def chat(self, body: dict[str, Any]) -> int:
        total = BOUND_PROMPT_OVERHEAD
        for message in body.get("messages") or []:
            total += BOUND_MESSAGE_OVERHEAD
            content = message.get("content")
            total += sum(len(text.encode()) for text in _texts(content))
            total += IMAGE_PART_TOKENS * _image_parts(content)
            if isinstance(content, list):
                others = [p for p in content if not isinstance(p, dict) or p.get("type") not in ("text", "image_url")]
                total += len(orjson.dumps(others)) if others else 0
            extra = {k: v for k, v in message.items() if k not in _MESSAGE_SKIP}
            total += len(orjson.dumps(extra)) if extra else 0
        for name in _TEMPLATE_FIELDS:
            if name in body:
                total += len(orjson.dumps(body[name]))
        return total

    def item(self, item: str | list[int]) -> int:
        return len(item.encode()) + BOUND_PROMPT_OVERHEAD if isinstance(item, str) else len(item)

    def generated(self, text: str) -> int:
        return len(text.encode())


def _texts(content: Any) -> Iterable[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                yield part["text"]


def _image_parts(content: Any) -> int:
    if not isinstance(content, list):
        return 0
    return sum(1 for part in content if isinstance(part, dict) and part.get("type") == "image_url")


class Tokenizers:
    """The counter of each configured model; `ByteBoundCounter` for the others."""

    def __init__(self, counters: dict[str, PromptCounter] | None = None) -> None:
        self._counters = dict(counters or {})
        self._bound = ByteBoundCounter()

    @classmethod
    def from_config(cls, configs: Iterable[TokenizerConfig]) -> Tokenizers:
        """Load every configured tokenizer now, so a missing file stops the core at start, not a request."""
        counters: dict[str, PromptCounter] = {}
        for config in configs:
            if config.kind == "sim-words":
                counters[config.model] = SimWordsCounter()
            else:
                assert config.path is not None  # the configuration's validator requires it
                try:
                    counters[config.model] = HuggingFaceCounter(config.path)
                except Exception as error:
                    message = f"cannot load the tokenizer of {config.model!r} from {config.path}: {error}"
                    raise ValueError(message) from error
        return cls(counters)

    def for_model(self, model: str) -> PromptCounter:
        return self._counters.get(model, self._bound)
