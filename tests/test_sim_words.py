"""The simulated models' tokenizer rule and prompt accounting."""

from __future__ import annotations

from atoma_proxy.sim_words import chat_prompt_tokens, count_tokens, prompt_tokens


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
