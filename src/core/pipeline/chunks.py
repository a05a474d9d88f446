"""What one streamed chunk of a chat or legacy completion carries: the one classifier of the request path.

    seen = classify(parsed)          # parsed: the chunk's JSON object (the relay parses every chunk once)
    seen.kind is ChunkKind.TOKEN     # it delivers generated text: one token per chunk, as vLLM and SGLang stream
    seen.choices                     # the choice indices that carry it (None: the chunk does not say which)
    seen.usage                       # the node's `usage` object, when the chunk has one (not yet checked)

Kinds, in the order a stream shows them:

* `ERROR`: the node's error event in the stream (`{"error": ...}` without choices);
* `TOKEN`: a choice carries generated text: a non-empty `delta.content`, `delta.reasoning_content`,
  `delta.reasoning`, `delta.tool_calls` (chat) or `text` (legacy completions); a usage on the same chunk
  rides along in `usage`;
* `USAGE`: the usage-only chunk (`"choices": []` with a usage);
* `FINISH`: a choice ends (`finish_reason` set) without text;
* `FRAME`: anything else with choices: the role chunk vLLM sends on admission (`"content": ""`), empty deltas.

The relay counts delivered tokens, holds framing back before the first token, cuts a stream at its
output cap (`node_limits.StreamCap`) and records usage from this one verdict; the ledger charges a
stream that stopped early by the tokens counted here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

__all__ = ["ChunkKind", "SeenChunk", "classify"]


class ChunkKind(Enum):
    ERROR = "error"
    TOKEN = "token"
    USAGE = "usage"
    FINISH = "finish"
    FRAME = "frame"


@dataclass(frozen=True, slots=True)
class SeenChunk:
    kind: ChunkKind
    # Indices of the choices that carry generated text; None when a choice has no usable index.
    choices: tuple[int, ...] | None = ()
    usage: Any = None

    @property
    def usage_only(self) -> bool:
        return self.kind is ChunkKind.USAGE


_DELTA_TEXT = ("content", "reasoning_content", "reasoning")


def _generates(choice: dict[str, Any]) -> bool:
    text = choice.get("text")
    if type(text) is str and text:
        return True
    delta = choice.get("delta")
    if type(delta) is not dict:
        return False
    for name in _DELTA_TEXT:
        value = delta.get(name)
        if type(value) is str and value:
            return True
    return bool(delta.get("tool_calls"))


def classify(chunk: dict[str, Any]) -> SeenChunk:
    """The verdict on one parsed chunk (see the module docstring)."""
    if "error" in chunk and "choices" not in chunk:
        return SeenChunk(ChunkKind.ERROR)
    usage = chunk.get("usage")
    choices = chunk.get("choices")
    if type(choices) is not list or not choices:
        return SeenChunk(ChunkKind.USAGE if usage is not None else ChunkKind.FRAME, usage=usage)
    carrying: list[int] = []
    unknown = finished = False
    for choice in choices:
        if type(choice) is not dict:
            continue
        if choice.get("finish_reason") is not None:
            finished = True
        if _generates(choice):
            index = choice.get("index")
            if type(index) is int and index >= 0:
                carrying.append(index)
            else:
                unknown = True
    if carrying or unknown:
        return SeenChunk(ChunkKind.TOKEN, None if unknown else tuple(sorted(set(carrying))), usage)
    return SeenChunk(ChunkKind.FINISH if finished else ChunkKind.FRAME, usage=usage)
