"""Deterministic text generation, so replies are reproducible; tokens are counted by `atoma_proxy.sim_words`.

Generated text is a sequence of vocabulary words, each with a leading space (" word"): one
generated token is one such piece, and `count_tokens` of the joined reply equals the number of
pieces. The words are drawn from a PRNG seeded with a hash of the prompt and the parameters that
should change the reply (model, request `seed`, choice index), so the same request gives the same
text on every node and every run.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import orjson

__all__ = ["PIECES", "PIECE_JSON", "generate_pieces", "generation_seed"]

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


def generation_seed(*parts: Any) -> int:
    """A stable 64-bit seed from JSON-serialisable parts (stable across processes, unlike hash())."""
    digest = hashlib.blake2b(orjson.dumps(parts), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def generate_pieces(seed: int, count: int) -> list[str]:
    """`count` generated tokens (" word" pieces), fully determined by `seed`."""
    if count <= 0:
        return []
    return random.Random(seed).choices(PIECES, k=count)
