"""The simulated models' tokenizer: the rule the node simulator counts by, and the ledger's `sim-words` counter.

A neutral module so that both sides share one definition without the core importing the simulator.

Token rule (`count_tokens`): a token is a run of word characters (regex `\\w+`) or a single
character that is neither a word character nor whitespace (`[^\\w\\s]`). Whitespace is free.
So "Hello, world!" is 4 tokens: `Hello` `,` `world` `!`.

Prompt accounting for chat (`chat_prompt_tokens`), modelled on OpenAI's chat format overhead:
every message costs 3 tokens plus the tokens of its text (a string `content`, or the `text` of
each `{"type": "text"}` part; images, audio and tool calls are free), and the reply priming costs
3 more. Completions prompts cost their tokens; a token-array prompt costs its length.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "REPLY_PRIMING_TOKENS",
    "TOKENS_PER_MESSAGE",
    "chat_prompt_tokens",
    "count_tokens",
    "message_text_tokens",
    "prompt_tokens",
]

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")

TOKENS_PER_MESSAGE = 3
REPLY_PRIMING_TOKENS = 3


def count_tokens(text: str) -> int:
    """Number of tokens in `text` under the module's rule (see the module docstring)."""
    return len(_TOKEN_RE.findall(text))


def message_text_tokens(content: Any) -> int:
    """Tokens of a chat message's text: a string, or the text parts of a content-part list."""
    if isinstance(content, str):
        return count_tokens(content)
    total = 0
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                total += count_tokens(part["text"])
    return total


def chat_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Prompt tokens of a chat request: text + 3 per message, + 3 for the reply priming."""
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        total += TOKENS_PER_MESSAGE + message_text_tokens(message.get("content"))
    return total


def prompt_tokens(prompt: str | list[int]) -> int:
    """Tokens of one completions/embeddings input: a string is tokenized, a token array is counted."""
    return count_tokens(prompt) if isinstance(prompt, str) else len(prompt)
