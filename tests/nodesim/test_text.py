"""Deterministic generation: one token a piece, the same reply for the same request."""

from __future__ import annotations

from atoma_proxy.nodesim.text import PIECES, generate_pieces, generation_seed
from atoma_proxy.sim_words import count_tokens


def test_generated_pieces_are_one_token_each_and_deterministic() -> None:
    seed = generation_seed("model", [{"role": "user", "content": "x"}], None, 0)
    pieces = generate_pieces(seed, 50)
    assert pieces == generate_pieces(seed, 50)
    assert all(piece in PIECES and piece.startswith(" ") for piece in pieces)
    assert count_tokens("".join(pieces)) == 50
    assert generate_pieces(seed, 10) == pieces[:10]  # a capped reply is a prefix of the full one
    assert generate_pieces(generation_seed("model", "y", None, 0), 50) != pieces


def test_generation_seed_is_stable_across_processes() -> None:
    # A fixed value: the seed must not depend on PYTHONHASHSEED or the process.
    assert generation_seed("a", 1) == generation_seed("a", 1)
    assert generation_seed("a", 1) != generation_seed("a", 2)
    assert isinstance(generation_seed("a"), int) and 0 <= generation_seed("a") < 2**64
