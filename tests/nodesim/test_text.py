"""The tokenizer rule, prompt accounting and deterministic generation."""

from __future__ import annotations

from atoma_proxy.nodesim.text import (
    PIECES,
    chat_prompt_tokens,
    count_tokens,
    generate_pieces,
    generation_seed,
    prompt_tokens,
)


def test_count_tokens_splits_words_and_punctuation() -> None:
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("  spaces\tare\nfree  ") == 3
    assert count_tokens("") == 0
    assert count_tokens("don't") == 3  # don ' t


def test_chat_prompt_tokens_counts_text_parts_and_overhead() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},  # 3 tokens
        {"role": "user", "content": [{"type": "text", "text": "Hi there"}, {"type": "image_url", "image_url": {}}]},
        {"role": "assistant", "content": None, "tool_calls": []},
    ]
    assert chat_prompt_tokens(messages) == 3 + (3 + 3) + (3 + 2) + (3 + 0)


def test_prompt_tokens_of_strings_and_token_arrays() -> None:
    assert prompt_tokens("one two three") == 3
    assert prompt_tokens([5, 6, 7, 8]) == 4


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
