"""The node side of OpenAI's Responses API (`POST /v1/responses`), served when `responses_api` is on.

An independent implementation of what a node that serves Responses answers (not the proxy's
translator): the same deterministic text as chat, as a `response` object, or streamed as OpenAI's
event sequence: response.created, response.in_progress, response.output_item.added,
response.content_part.added, response.output_text.delta (one per token), response.output_text.done,
response.content_part.done, response.output_item.done, response.completed (or .incomplete at the
cap). Usage is {input_tokens, output_tokens, total_tokens}, misreported like chat's when configured.
Caps: `max_output_tokens`; the prompt is `input` (a string or input items) plus `instructions`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from atoma_proxy.nodesim.asgi import RequestError
from atoma_proxy.nodesim.config import SimConfig
from atoma_proxy.nodesim.jobs import Job, UsageFault
from atoma_proxy.nodesim.parsing import MAX_GENERATED_TOKENS, optional_bool, optional_int, require_model, usage_fault
from atoma_proxy.nodesim.text import generate_pieces, generation_seed
from atoma_proxy.sim_words import count_tokens, message_text_tokens

__all__ = ["ResponsesJob", "parse_response_request"]


def _input_tokens(payload: dict[str, Any]) -> int:
    value = payload.get("input")
    instructions = payload.get("instructions")
    tokens = count_tokens(instructions) if isinstance(instructions, str) else 0
    if isinstance(value, str):
        return tokens + count_tokens(value)
    if not isinstance(value, list) or not value:
        raise RequestError(400, "'input' must be a string or a non-empty array of input items.", param="input")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise RequestError(400, f"'input[{index}]' must be an object.", param=f"input[{index}]")
        content = item.get("content")
        if isinstance(content, list):  # input_text parts (chat's helper reads only type "text")
            parts = [part.get("text") for part in content if isinstance(part, dict)]
            tokens += 4 + sum(count_tokens(text) for text in parts if isinstance(text, str))
        else:
            tokens += 4 + message_text_tokens(content)
    return tokens


class ResponsesJob(Job):
    """One `response` with one message output of `steps` tokens."""

    def __init__(
        self, *, model: str, prompt_tokens: int, pieces: list[str], incomplete: bool, stream: bool,
        usage_fault: UsageFault | None, max_output_tokens: int | None,
    ) -> None:  # fmt: skip
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.pieces = pieces
        self.steps = len(pieces)
        self.choice_count = 1
        self.completion_tokens = self.steps
        self.finish_reason = "length" if incomplete else "stop"
        self.incomplete = incomplete
        self.stream = stream
        self.usage_fault = usage_fault
        self.max_output_tokens = max_output_tokens
        self.id = "resp_" + uuid.uuid4().hex
        self.item_id = "msg_" + uuid.uuid4().hex
        self.created = int(time.time())
        self._sequence = 0

    def usage(self) -> dict[str, Any] | None:
        usage: dict[str, Any] = {
            "input_tokens": self.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": self.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        fault = self.usage_fault
        if fault is None:
            return usage
        return None if fault.omit else {**usage, **(fault.replace or {})}

    def _part(self, text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": []}

    def _item(self, status: str, text: str | None) -> dict[str, Any]:
        content = [] if text is None else [self._part(text)]
        return {"id": self.item_id, "type": "message", "status": status, "role": "assistant", "content": content}

    def _response(self, status: str, *, done: bool) -> dict[str, Any]:
        response: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": None,
            "max_output_tokens": self.max_output_tokens,
            "model": self.model,
            "output": [self._item("completed", "".join(self.pieces))] if done else [],
            "parallel_tool_calls": True,
            "store": False,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": self.usage() if done else None,
        }
        return response

    def render(self) -> bytes:
        return orjson.dumps(self._response("incomplete" if self.incomplete else "completed", done=True))

    def _event(self, kind: str, **fields: Any) -> bytes:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"

    def stream_open(self) -> bytes:
        progress = self._response("in_progress", done=False)
        return b"".join(
            (
                self._event("response.created", response=progress),
                self._event("response.in_progress", response=progress),
                self._event("response.output_item.added", output_index=0, item=self._item("in_progress", None)),
                self._event(
                    "response.content_part.added",
                    item_id=self.item_id,
                    output_index=0,
                    content_index=0,
                    part=self._part(""),
                ),
            )
        )

    def stream_token(self, step: int) -> bytes:
        return self._event(
            "response.output_text.delta",
            item_id=self.item_id,
            output_index=0,
            content_index=0,
            delta=self.pieces[step],
            logprobs=[],
        )

    def stream_close(self) -> bytes:
        text = "".join(self.pieces)
        final = self._response("incomplete" if self.incomplete else "completed", done=True)
        where = {"item_id": self.item_id, "output_index": 0, "content_index": 0}
        return b"".join(
            (
                self._event("response.output_text.done", **where, text=text, logprobs=[]),
                self._event("response.content_part.done", **where, part=self._part(text)),
                self._event("response.output_item.done", output_index=0, item=self._item("completed", text)),
                self._event("response.incomplete" if self.incomplete else "response.completed", response=final),
            )
        )


def parse_response_request(payload: dict[str, Any], config: SimConfig) -> ResponsesJob:
    model = require_model(payload, config.chat_models)
    prompt = _input_tokens(payload)
    cap = optional_int(payload, "max_output_tokens", None, 1, 2**31)
    natural = config.reply_tokens
    if cap is None:
        steps, incomplete = natural, False
    elif config.overproduce_tokens:
        steps, incomplete = cap + config.overproduce_tokens, True
    else:
        steps, incomplete = min(cap, natural), cap < natural
    steps = min(steps, MAX_GENERATED_TOKENS)
    seed = payload.get("seed")
    pieces = generate_pieces(generation_seed(model, payload.get("input"), seed, 0), steps)
    return ResponsesJob(
        model=model,
        prompt_tokens=prompt,
        pieces=pieces,
        incomplete=incomplete,
        stream=optional_bool(payload, "stream"),
        usage_fault=usage_fault(config),
        max_output_tokens=cap,
    )
