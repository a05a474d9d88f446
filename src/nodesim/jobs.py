"""A parsed inference request (`Job`) and its OpenAI reply shapes for chat and completions.

The serving loop (`serving.py`) is endpoint-agnostic: it admits a job, waits `ttft_ms`, then
emits `steps` tokens at the configured pace, asking the job for bytes at each point. A job knows
its whole reply up front (the text is deterministic), so rendering is string assembly only.

Streaming chunk bytes are built from per-choice templates: the constant JSON around the token
is encoded once per request, and each token's JSON literal is precomputed (`text.PIECE_JSON`),
so a token chunk costs two concatenations, no JSON encoding.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from atoma_proxy.nodesim.text import PIECE_JSON

__all__ = ["DONE", "Job", "TextJob", "ToolCallJob", "UsageFault"]

DONE = b"data: [DONE]\n\n"


class Job:
    """What the serving loop needs from any inference request; non-text jobs have no steps."""

    model: str
    stream: bool = False
    prompt_tokens: int = 0
    steps: int = 0  # tokens generated per choice
    choice_count: int = 0  # choices that generate tokens
    completion_tokens: int = 0
    finish_reason: str = "stop"

    def render(self) -> bytes:
        """The complete non-streamed JSON body."""
        raise NotImplementedError

    def stream_open(self) -> bytes:
        """SSE bytes sent as soon as the request is admitted (chat: the role chunks)."""
        return b""

    def stream_token(self, step: int) -> bytes:
        """SSE bytes of token `step` for every choice."""
        raise NotImplementedError

    def stream_close(self) -> bytes:
        """SSE bytes after the last token: finish chunks, the usage chunk if asked, [DONE]."""
        raise NotImplementedError


@dataclass(frozen=True)
class UsageFault:
    """A node that misreports usage: none at all (`omit`), or with keys replaced by any JSON values."""

    omit: bool = False
    replace: dict[str, Any] | None = None


class TextJob(Job):
    """A chat.completion or text_completion reply with n choices of `steps` tokens each."""

    def __init__(
        self,
        *,
        chat: bool,
        model: str,
        prompt_tokens: int,
        choices: list[list[str]],
        finish_reason: str,
        stream: bool,
        include_usage: bool,
        usage_fault: UsageFault | None = None,
    ) -> None:
        self.chat = chat
        self.usage_fault = usage_fault
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.choices = choices
        self.steps = len(choices[0]) if choices else 0
        self.choice_count = len(choices)
        self.completion_tokens = self.steps * len(choices)
        self.finish_reason = finish_reason
        self.stream = stream
        self.include_usage = include_usage
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        if stream:
            self._prepare_stream()

    def usage(self) -> dict[str, Any] | None:
        """The usage the node reports: the truth, unless it misreports (None: it reports none)."""
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        fault = self.usage_fault
        if fault is None:
            return usage
        return None if fault.omit else {**usage, **(fault.replace or {})}

    def render(self) -> bytes:
        if self.chat:
            choices = [
                {
                    "index": index,
                    "message": {"role": "assistant", "content": "".join(pieces), "refusal": None},
                    "logprobs": None,
                    "finish_reason": self.finish_reason,
                }
                for index, pieces in enumerate(self.choices)
            ]
        else:
            choices = [
                {"index": index, "text": "".join(pieces), "logprobs": None, "finish_reason": self.finish_reason}
                for index, pieces in enumerate(self.choices)
            ]
        body = {
            "id": self.id,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage(),
        }
        if body["usage"] is None:
            del body["usage"]
        return orjson.dumps(body)

    # Streaming -----------------------------------------------------------------------------------

    def _prepare_stream(self) -> None:
        head = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
        }
        # b'data: {"id":...,"model":"..."' — each chunk continues with its choices.
        self._head = b"data: " + orjson.dumps(head)[:-1]
        self._tail = (b',"usage":null' if self.include_usage else b"") + b"}\n\n"
        if self.chat:
            open_token, close_token = b'"delta":{"content":', b"}"
        else:
            open_token, close_token = b'"text":', b""
        after = close_token + b',"logprobs":null,"finish_reason":null}]' + self._tail
        self._token_templates = [
            (self._head + b',"choices":[{"index":%d,' % index + open_token, after) for index in range(len(self.choices))
        ]

    def _chunk(self, choices: list[dict[str, Any]]) -> bytes:
        return self._head + b',"choices":' + orjson.dumps(choices) + self._tail

    def stream_open(self) -> bytes:
        if not self.chat:
            return b""
        return b"".join(
            self._chunk(
                [
                    {
                        "index": index,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ]
            )
            for index in range(len(self.choices))
        )

    def stream_token(self, step: int) -> bytes:
        if len(self.choices) == 1:
            before, after = self._token_templates[0]
            return before + PIECE_JSON[self.choices[0][step]] + after
        return b"".join(
            before + PIECE_JSON[pieces[step]] + after
            for (before, after), pieces in zip(self._token_templates, self.choices, strict=True)
        )

    def stream_close(self) -> bytes:
        parts = []
        for index in range(len(self.choices)):
            if self.chat:
                choice = {"index": index, "delta": {}, "logprobs": None, "finish_reason": self.finish_reason}
            else:
                choice = {"index": index, "text": "", "logprobs": None, "finish_reason": self.finish_reason}
            parts.append(self._chunk([choice]))
        usage = self.usage() if self.include_usage else None
        if usage is not None:
            usage_chunk = self._head + b',"choices":[],"usage":' + orjson.dumps(usage) + b"}\n\n"
            parts.append(usage_chunk)
        parts.append(DONE)
        return b"".join(parts)


class ToolCallJob(TextJob):
    """A chat reply that calls one function: `tool_choice` named it, or was "required" (the first tool).

    The arguments are the JSON object `{"words": "<the generated words>"}`, one word per streamed
    token (the first token opens the object, the last closes it); finish_reason is "tool_calls"
    unless the output cap cut the words ("length", and then the arguments are cut too, as a real
    model's would be).
    """

    def __init__(self, *, function: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.function = function
        self.call_id = "call_" + uuid.uuid4().hex[:24]
        if self.finish_reason == "stop":
            self.finish_reason = "tool_calls"

    def _argument_pieces(self) -> list[str]:
        words = [orjson.dumps(piece).decode()[1:-1] for piece in self.choices[0]]
        if not words:
            return []
        pieces = ['{"words": "' + words[0], *words[1:]]
        if self.finish_reason == "tool_calls":
            pieces[-1] += '"}'
        return pieces

    def render(self) -> bytes:
        call = {
            "id": self.call_id,
            "type": "function",
            "function": {"name": self.function, "arguments": "".join(self._argument_pieces())},
        }
        body = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None},
                    "logprobs": None,
                    "finish_reason": self.finish_reason,
                }
            ],
            "usage": self.usage(),
        }
        if body["usage"] is None:
            del body["usage"]
        return orjson.dumps(body)

    def stream_token(self, step: int) -> bytes:
        if step == 0:
            self._pieces = self._argument_pieces()
        call: dict[str, Any] = {"index": 0, "function": {"arguments": self._pieces[step]}}
        if step == 0:
            call = {
                "index": 0,
                "id": self.call_id,
                "type": "function",
                "function": {"name": self.function, "arguments": self._pieces[0]},
            }
        return self._chunk([{"index": 0, "delta": {"tool_calls": [call]}, "logprobs": None, "finish_reason": None}])
