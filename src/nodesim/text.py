"""Deterministic tokenizer and text generator, so usage numbers are exact and replies reproducible.

Tokenizer rule (`count_tokens`): a token is a run of word characters (regex `\\w+`) or a single
character that is neither a word character nor whitespace (`[^\\w\\s]`). Whitespace is free.
So "Hello, world!" is 4 tokens: `Hello` `,` `world` `!`.

Generated text is a sequence of vocabulary words, each with a leading space (" word"): one
generated token is one such piece, and count_tokens of the joined reply equals the number of
pieces. The words are drawn from a PRNG seeded with a hash of the prompt and the parameters that
should change the reply (model, request `seed`, choice index), so the same request gives the same
text on every node and every run.

Prompt accounting for chat (`chat_prompt_tokens`), modelled on OpenAI's chat format overhead:
every message costs 3 tokens plus the tokens of its text (a string `content`, or the `text` of
each `{"type": "text"}` part; images, audio and tool calls are free), and the reply priming costs
3 more. Completions prompts cost their tokens; a token-array prompt costs its length.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Any

import orjson

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")

TOKENS_PER_MESSAGE = 3
REPLY_PRIMING_TOKENS = 3

_WORDS = (
    "the of and to in is that it for as with was on be by this are from at or an not have which one "
    "all were when we there can more if has will their so some would what about into them only other "
    "time these two may then first any like now over such our even most made after also did many "
    "before must through back years where much your way well down should because each just those "
    "people how too little state good very make world still own see men work long get here between "
    "both life being under never day same another know while last might great old year off come "
    "since against go came right used take three node token model proxy route stream answer signal "
    "river light stone cloud garden market engine window silver quiet bright simple steady rapid"
).split()

# The generated pieces: one token each, with the leading space.
PIECES: tuple[str, ...] = tuple(" " + word for word in _WORDS)
# Each piece as a JSON string literal (b'" word"'), for building SSE chunks without re-encoding.
PIECE_JSON: dict[str, bytes] = {piece: orjson.dumps(piece) for piece in PIECES}


def count_tokens(text: str) -> int:
    """Number of tokens in `text` under the module's rule (see the module docstring)."""
    return len(_TOKEN_RE.findall(text))


def generation_seed(*parts: Any) -> int:
    """A stable 64-bit seed from JSON-serialisable parts (stable across processes, unlike hash())."""
    digest = hashlib.blake2b(orjson.dumps(parts), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def generate_pieces(seed: int, count: int) -> list[str]:
    """`count` generated tokens (" word" pieces), fully determined by `seed`."""
    if count <= 0:
        return []
    return random.Random(seed).choices(PIECES, k=count)


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
