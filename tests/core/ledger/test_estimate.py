"""Estimates: exact for the simulator, a true upper bound without a tokenizer, caps and prices as documented."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atoma_proxy.config import TokenizerConfig
from atoma_proxy.core.ledger import RequestKind, Tokenizers, TokenPrice, token_cost
from atoma_proxy.core.ledger.estimate import (
    estimate_chat,
    estimate_completion,
    estimate_embeddings,
    estimate_images,
    max_cost,
)
from atoma_proxy.core.ledger.pricing import highest_price
from atoma_proxy.core.ledger.token_counting import (
    IMAGE_PART_TOKENS,
    ByteBoundCounter,
    HuggingFaceCounter,
    SimWordsCounter,
)
from atoma_proxy.nodesim.config import SimConfig
from atoma_proxy.nodesim.embeddings import parse_embedding
from atoma_proxy.nodesim.parsing import parse_chat, parse_completion

CAP = 4096
texts = st.text(max_size=200)
parts = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, texts),
    st.just({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}),
)
messages = st.lists(
    st.builds(
        lambda role, content: {"role": role, "content": content},
        st.sampled_from(["system", "user", "assistant"]),
        st.one_of(texts, st.lists(parts, max_size=4)),
    ),
    min_size=1,
    max_size=6,
)


@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real byte-level BPE tokenizer.json, trained here on a small corpus (nothing is downloaded)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    corpus = ["the quick brown fox jumps over the lazy dog", "hello world, how are you?", "ledger micro usd"] * 50
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.json"
    tokenizer.save(str(path))
    return path


@settings(max_examples=60)
@given(messages=messages, n=st.integers(1, 4), max_tokens=st.one_of(st.none(), st.integers(1, 100)))
def test_sim_words_estimates_are_what_the_simulator_reports(
    messages: list[dict[str, Any]], n: int, max_tokens: int | None
) -> None:
    body: dict[str, Any] = {"model": "atoma/sim-chat", "messages": messages, "n": n}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    estimate = estimate_chat(body, SimWordsCounter(), default_max_completion_tokens=CAP)
    job = parse_chat(body, SimConfig())
    assert estimate.prompt_exact and estimate.prompt_tokens == job.prompt_tokens
    assert estimate.completion_tokens >= job.completion_tokens
    assert estimate.completion_tokens == (max_tokens or CAP) * n


@settings(max_examples=40)
@given(prompts=st.lists(st.one_of(texts.filter(bool), st.lists(st.integers(0, 999), min_size=1)), min_size=1))
def test_sim_words_completions_and_embeddings_are_exact(prompts: list[Any]) -> None:
    if not (all(isinstance(p, str) for p in prompts) or all(isinstance(p, list) for p in prompts)):
        prompts = [p for p in prompts if isinstance(p, str)] or [[1]]
    body = {"model": "atoma/sim-chat", "prompt": prompts, "max_tokens": 3}
    estimate = estimate_completion(body, SimWordsCounter(), default_max_completion_tokens=CAP)
    assert estimate.prompt_tokens == parse_completion(body, SimConfig()).prompt_tokens
    assert estimate.completion_tokens == 3 * len(prompts)
    embed = estimate_embeddings({"model": "atoma/sim-embed", "input": prompts}, SimWordsCounter())
    assert (
        embed.prompt_tokens
        == parse_embedding({"model": "atoma/sim-embed", "input": prompts}, SimConfig()).prompt_tokens
    )
    assert embed.completion_tokens == 0


@settings(max_examples=80)
@given(messages=messages, tools=st.one_of(st.none(), st.just([{"type": "function", "function": {"name": "f"}}])))
def test_the_byte_bound_is_never_below_a_real_tokenizer(
    tokenizer_json: Path, messages: list[dict[str, Any]], tools: list[Any] | None
) -> None:
    body: dict[str, Any] = {"messages": messages}
    if tools:
        body["tools"] = tools
    real = HuggingFaceCounter(tokenizer_json)
    bound = ByteBoundCounter()
    assert bound.chat(body) >= real.chat(body)
    for message in messages:
        if isinstance(message["content"], str):
            assert bound.item(message["content"]) >= real.item(message["content"])


def test_a_hugging_face_tokenizer_counts_its_own_tokens(tokenizer_json: Path) -> None:
    counter = Tokenizers.from_config([TokenizerConfig(model="m", path=str(tokenizer_json))]).for_model("m")
    assert counter.exact
    # "hello world" is two learnt pieces (plus the space merge) and the <s> the post-processor adds.
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(tokenizer_json)).encode("hello world").ids
    assert counter.item("hello world") == len(ids)
    assert counter.item([5, 6, 7]) == 3
    chat = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}
    assert counter.chat(chat) == 1 + 3 + 3 + IMAGE_PART_TOKENS  # <s> once, per message, priming, the image


def test_models_without_a_tokenizer_get_the_bound_and_missing_files_fail_at_start(tmp_path: Path) -> None:
    tokenizers = Tokenizers.from_config([TokenizerConfig(model="sim", kind="sim-words")])
    assert isinstance(tokenizers.for_model("sim"), SimWordsCounter)
    assert isinstance(tokenizers.for_model("other"), ByteBoundCounter)
    assert not tokenizers.for_model("other").exact
    with pytest.raises(ValueError, match="cannot load the tokenizer"):
        Tokenizers.from_config([TokenizerConfig(model="m", path=str(tmp_path / "missing.json"))])
    with pytest.raises(ValueError, match=r"tokenizer\.json is required"):
        TokenizerConfig(model="m")


def test_the_output_cap_is_the_smallest_cap_the_client_gave_else_the_default() -> None:
    counter = SimWordsCounter()
    base = {"messages": [{"role": "user", "content": "hi"}]}
    both = {**base, "max_completion_tokens": 9, "max_tokens": 5, "n": 2}
    estimate = estimate_chat(both, counter, default_max_completion_tokens=CAP)
    assert (estimate.output_cap, estimate.choices, estimate.completion_tokens) == (5, 2, 10)
    smaller_first = {**base, "max_completion_tokens": 3, "max_tokens": 5}
    assert estimate_chat(smaller_first, counter, default_max_completion_tokens=CAP).completion_tokens == 3
    assert estimate_chat({**base, "max_tokens": 5}, counter, default_max_completion_tokens=CAP).completion_tokens == 5
    assert estimate_chat(base, counter, default_max_completion_tokens=77).completion_tokens == 77
    body = {"prompt": ["a", "b", "c"], "n": 2}
    assert estimate_completion(body, counter, default_max_completion_tokens=10).completion_tokens == 60
    # Legacy completions: a `max_completion_tokens` (from extra_json) counts too, the smallest wins.
    legacy = {"prompt": "hi", "max_tokens": 5000, "max_completion_tokens": 1}
    estimate = estimate_completion(legacy, counter, default_max_completion_tokens=CAP)
    assert (estimate.output_cap, estimate.completion_tokens) == (1, 1)
    assert estimate.limits().max_completion_tokens == 1


def test_images_cost_n_times_the_price_per_image() -> None:
    assert estimate_images({"prompt": "x"}, ByteBoundCounter()).images == 1
    estimate = estimate_images({"prompt": "x", "n": 3}, ByteBoundCounter())
    assert (estimate.kind, estimate.images) == (RequestKind.IMAGES, 3)
    assert max_cost(estimate, TokenPrice(10**9, 10**9), 2_500) == 7_500


@given(
    prompt=st.integers(0, 10**9),
    completion=st.integers(0, 10**9),
    p_in=st.integers(0, 10**8),
    p_out=st.integers(0, 10**8),
)
def test_token_cost_is_the_exact_ceiling_in_integers(prompt: int, completion: int, p_in: int, p_out: int) -> None:
    cost = token_cost(prompt, completion, TokenPrice(p_in, p_out))
    exact = Fraction(prompt * p_in + completion * p_out, 1_000_000)
    assert isinstance(cost, int)
    assert cost - 1 < exact <= cost


def test_the_highest_price_takes_each_maximum() -> None:
    assert highest_price([TokenPrice(5, 1), TokenPrice(2, 9)]) == TokenPrice(5, 9)
    assert highest_price([]) == TokenPrice(0, 0)
