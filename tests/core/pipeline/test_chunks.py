"""The one chunk classifier: what each kind of streamed chunk is, as the relay, the cap and the ledger see it."""

from __future__ import annotations

import orjson
import pytest

from atoma_proxy.core.pipeline.chunks import ChunkKind, classify

USAGE = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}

# (name, chunk, kind, choices carrying a token, usage)
CASES = [
    (
        "role",
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
        ChunkKind.FRAME,
        (),
        None,
    ),
    ("empty delta", {"choices": [{"index": 0, "delta": {}}]}, ChunkKind.FRAME, (), None),
    (
        "token",
        {"choices": [{"index": 0, "delta": {"content": " word"}, "finish_reason": None}]},
        ChunkKind.TOKEN,
        (0,),
        None,
    ),
    ("quoted token", {"choices": [{"index": 0, "delta": {"content": '"q"'}}]}, ChunkKind.TOKEN, (0,), None),
    ("reasoning", {"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]}, ChunkKind.TOKEN, (0,), None),
    ("reasoning (vLLM 0.10)", {"choices": [{"index": 0, "delta": {"reasoning": "so"}}]}, ChunkKind.TOKEN, (0,), None),
    (
        "tool call",
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]}}]},
        ChunkKind.TOKEN,
        (0,),
        None,
    ),
    (
        "legacy text",
        {"object": "text_completion", "choices": [{"index": 0, "text": " the"}]},
        ChunkKind.TOKEN,
        (0,),
        None,
    ),
    ("finish", {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, ChunkKind.FINISH, (), None),
    ("legacy finish", {"choices": [{"index": 0, "text": "", "finish_reason": "length"}]}, ChunkKind.FINISH, (), None),
    ("usage only", {"choices": [], "usage": USAGE}, ChunkKind.USAGE, (), USAGE),
    ("usage, no choices key", {"usage": USAGE}, ChunkKind.USAGE, (), USAGE),
    ("usage null", {"choices": [{"index": 0, "delta": {"content": "a"}}], "usage": None}, ChunkKind.TOKEN, (0,), None),
    (
        "token with usage",
        {"choices": [{"index": 0, "delta": {"content": "a"}}], "usage": USAGE},
        ChunkKind.TOKEN,
        (0,),
        USAGE,
    ),
    (
        "last token with finish",
        {"choices": [{"index": 0, "delta": {"content": "."}, "finish_reason": "stop"}]},
        ChunkKind.TOKEN,
        (0,),
        None,
    ),
    ("error event", {"error": {"message": "out of memory", "code": 500}}, ChunkKind.ERROR, (), None),
    (
        "error beside choices is a chunk",
        {"error": None, "choices": [{"index": 0, "delta": {"content": "a"}}]},
        ChunkKind.TOKEN,
        (0,),
        None,
    ),
    (
        "n=3, two choices carry text",
        {
            "choices": [
                {"index": 2, "delta": {"content": "b"}},
                {"index": 0, "delta": {"content": ""}},
                {"index": 1, "delta": {"content": "c"}},
            ]
        },
        ChunkKind.TOKEN,
        (1, 2),
        None,
    ),
    ("n=2, a choice without an index", {"choices": [{"delta": {"content": "b"}}]}, ChunkKind.TOKEN, None, None),
    ("n=2, a negative index", {"choices": [{"index": -1, "delta": {"content": "b"}}]}, ChunkKind.TOKEN, None, None),
    (
        "n=2, finishing together",
        {
            "choices": [
                {"index": 0, "delta": {}, "finish_reason": "stop"},
                {"index": 1, "delta": {}, "finish_reason": "length"},
            ]
        },
        ChunkKind.FINISH,
        (),
        None,
    ),
    ("choices not a list", {"choices": "x"}, ChunkKind.FRAME, (), None),
    ("a choice not an object", {"choices": ["x", 3]}, ChunkKind.FRAME, (), None),
    ("content not a string", {"choices": [{"index": 0, "delta": {"content": 5}}]}, ChunkKind.FRAME, (), None),
]


@pytest.mark.parametrize(("chunk", "kind", "choices", "usage"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
def test_each_kind_of_chunk_is_told(chunk: dict, kind: ChunkKind, choices: tuple[int, ...] | None, usage: dict) -> None:
    seen = classify(orjson.loads(orjson.dumps(chunk)))
    assert seen.kind is kind
    assert seen.choices == choices
    assert seen.usage == usage
    assert seen.usage_only is (kind is ChunkKind.USAGE)
