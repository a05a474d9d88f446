"""The limits a node is held to: which usage is believed, and where a stream is cut."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from atoma_proxy.core.node_limits import (
    MAX_USAGE_TOKENS,
    ImplausibleUsage,
    Overproduction,
    RequestLimits,
    StreamCap,
    check_usage,
)
from atoma_proxy.core.pipeline.chunks import ChunkKind, classify

LIMITS = RequestLimits(output_cap=5, choices=2, prompt_tokens=10)  # 10 completion, 4136 prompt at most


def _token(index: int, text: str = " hi") -> bytes:
    return orjson.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 7, "model": "m",
                         "choices": [{"index": index, "delta": {"content": text}}]})  # fmt: skip


def _exceeds(cap: StreamCap, chunk: bytes) -> bool:
    """As the relay asks: only a chunk classified as a token is counted against the cap."""
    seen = classify(orjson.loads(chunk))
    return seen.kind is ChunkKind.TOKEN and cap.exceeded_by(seen)


def test_plausible_usage_is_believed_and_reduced_to_its_token_counts() -> None:
    usage = {"prompt_tokens": 12, "completion_tokens": 10, "total_tokens": 22, "prompt_tokens_details": None}
    assert check_usage(usage, LIMITS) == {"prompt_tokens": 12, "completion_tokens": 10, "total_tokens": 22}
    assert check_usage({"completion_tokens": 3, "prompt_tokens": None}, LIMITS) == {"completion_tokens": 3}
    assert check_usage(None, LIMITS) is None
    assert check_usage({"prompt_tokens": 10**9}, None) == {"prompt_tokens": 10**9}  # metering off: type only


@pytest.mark.parametrize(
    "usage",
    [
        {"completion_tokens": 2**62},
        {"completion_tokens": -1},
        {"prompt_tokens": "5"},
        {"prompt_tokens": 5.0},
        {"completion_tokens": True},
        {"total_tokens": [1]},
        {"prompt_tokens": 4 * 10 + 4096 + 1},  # far above the estimated prompt
        {"total_tokens": 4136 + 10 + 1},
        "lots",
        [1, 2],
    ],
)
def test_usage_the_request_could_not_have_produced_is_implausible(usage: Any) -> None:
    with pytest.raises(ImplausibleUsage):
        check_usage(usage, LIMITS)


def test_completion_past_the_cap_is_overproduction_and_absurd_values_fail_without_limits() -> None:
    with pytest.raises(Overproduction, match="completion_tokens"):
        check_usage({"completion_tokens": 11}, LIMITS)
    with pytest.raises(ImplausibleUsage):
        check_usage({"completion_tokens": MAX_USAGE_TOKENS + 1}, None)
    with pytest.raises(ImplausibleUsage):
        check_usage({"prompt_tokens": -3}, None)


def test_a_stream_is_cut_at_the_cap_of_each_choice() -> None:
    cap = StreamCap(LIMITS)
    assert not _exceeds(cap, b'{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}')
    assert [_exceeds(cap, _token(0)) for _ in range(5)] == [False] * 5
    assert _exceeds(cap, _token(0))  # a sixth token of choice 0
    assert not _exceeds(cap, _token(1))  # choice 1 still has its own five
    assert cap.delivered == 6
    assert cap.usage() == {"prompt_tokens": 10, "completion_tokens": 6, "total_tokens": 16}


def test_a_chunk_that_does_not_say_its_choice_counts_for_all_of_them() -> None:
    cap = StreamCap(LIMITS)
    for _ in range(5):
        assert not _exceeds(cap, _token(7))  # no such choice: counted against both
    assert _exceeds(cap, _token(0)) and _exceeds(cap, _token(1))
    single = StreamCap(RequestLimits(output_cap=2, choices=1, prompt_tokens=1))
    assert [_exceeds(single, b'{"choices":[{"text":"x"}]}') for _ in range(3)] == [False, False, True]


@pytest.mark.parametrize("chat", [True, False])
def test_the_closing_chunks_finish_every_choice_with_length_and_report_usage(chat: bool) -> None:
    cap = StreamCap(LIMITS)
    _exceeds(cap, _token(0))
    finish, usage = (orjson.loads(chunk) for chunk in cap.closing(orjson.loads(_token(0)), chat=chat, with_usage=True))
    assert (finish["id"], finish["model"], finish["created"]) == ("c1", "m", 7)
    assert [c["finish_reason"] for c in finish["choices"]] == ["length", "length"]
    assert all(("delta" in c) is chat and ("text" in c) is not chat for c in finish["choices"])
    assert (usage["choices"], usage["usage"]["completion_tokens"]) == ([], 1)
    assert len(cap.closing({}, chat=chat, with_usage=False)) == 1


def test_responses_usage_names_are_read_as_the_chat_ones_and_held_to_the_same_limits() -> None:
    usage = {"input_tokens": 12, "output_tokens": 10, "total_tokens": 22, "output_tokens_details": {}}
    assert check_usage(usage, LIMITS) == {"prompt_tokens": 12, "completion_tokens": 10, "total_tokens": 22}
    with pytest.raises(Overproduction, match="output_tokens"):
        check_usage({"input_tokens": 12, "output_tokens": 11}, LIMITS)
    with pytest.raises(ImplausibleUsage, match="input_tokens"):
        check_usage({"input_tokens": "12", "output_tokens": 1}, LIMITS)
    # chat names win when a node sends both
    assert check_usage({"prompt_tokens": 1, "output_tokens": 99}, LIMITS) == {"prompt_tokens": 1}
