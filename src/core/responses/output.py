"""Chat completion output -> Responses API objects: the `response` object and its stream events.

`ResponseStream` turns chat.completion.chunk objects into the event sequence OpenAI emits:
response.created, response.in_progress, then per output item output_item.added,
(content_part.added, output_text.delta..., output_text.done, content_part.done) for a message or
(function_call_arguments.delta..., function_call_arguments.done) for a tool call,
output_item.done; last response.completed (or response.incomplete when the output cap or a
content filter cut the answer) with usage. Every event carries `sequence_number`, from 0.
`response_object` does the same for a whole chat.completion.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from atoma_proxy.core.responses.request import ResponsesRequest
from atoma_proxy.core.usage_cost import usage_with_cost

__all__ = ["ResponseStream", "response_object"]


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if not usage:
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    reasoning = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }


_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


class _Shell:
    """The response object's fields that do not depend on the output."""

    def __init__(self, request: ResponsesRequest) -> None:
        self.id = _id("resp")
        self.created_at = int(time.time())
        self.request = request

    def object(
        self, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None, finish: str | None
    ) -> dict[str, Any]:
        echo = self.request.echo
        reason = _INCOMPLETE.get(finish or "")
        if status == "completed" and reason is not None:
            status = "incomplete"
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": None,
            "incomplete_details": {"reason": reason} if status == "incomplete" else None,
            "instructions": echo.get("instructions"),
            "max_output_tokens": echo.get("max_output_tokens"),
            "model": self.request.model,
            "output": output,
            "parallel_tool_calls": echo.get("parallel_tool_calls", True),
            "reasoning": echo.get("reasoning"),
            "store": False,
            "temperature": echo.get("temperature"),
            "text": echo.get("text", {"format": {"type": "text"}}),
            "tool_choice": echo.get("tool_choice", "auto"),
            "tools": echo.get("tools", []),
            "top_p": echo.get("top_p"),
            "truncation": "disabled",
            "usage": _usage(usage),
            "user": echo.get("user"),
            "metadata": echo.get("metadata", {}),
        }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    content = [_text_part(text)] if status != "in_progress" else []
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def response_object(request: ResponsesRequest, completion: dict[str, Any]) -> dict[str, Any]:
    """The `response` object of a whole chat.completion."""
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    content = message.get("content")
    if isinstance(content, str) and content:
        output.append(_message_item(_id("msg"), content, "completed"))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        output.append(
            _call_item(
                _id("fc"),
                str(call.get("id") or _id("call")),
                str(function.get("name") or ""),
                str(function.get("arguments") or ""),
                "completed",
            )
        )
    finish = choice.get("finish_reason")
    return _Shell(request).object("completed", output, completion.get("usage"), finish)


class _Item:
    def __init__(self, index: int, kind: str, call_id: str = "", name: str = "") -> None:
        self.index = index
        self.kind = kind
        self.id = _id("msg" if kind == "message" else "fc")
        self.call_id = call_id
        self.name = name
        self.text: list[str] = []

    def item(self, status: str) -> dict[str, Any]:
        if self.kind == "message":
            return _message_item(self.id, "".join(self.text), status)
        return _call_item(self.id, self.call_id, self.name, "".join(self.text), status)


class ResponseStream:
    """Feed it chat chunks in order (`chunk`), then `finish`; each returns the events to send."""

    def __init__(self, request: ResponsesRequest) -> None:
        self._shell = _Shell(request)
        self._sequence = 0
        self._started = False
        self._items: list[_Item] = []
        self._open: _Item | None = None
        self._calls: dict[int, _Item] = {}  # chat tool-call index -> its item
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def _response(self, status: str) -> dict[str, Any]:
        output = [item.item("completed") for item in self._items] if status != "in_progress" else []
        return self._shell.object(status, output, self._usage, self._finish)

    def start(self) -> list[dict[str, Any]]:
        if self._started:
            return []
        self._started = True
        return [
            self._event("response.created", response=self._response("in_progress")),
            self._event("response.in_progress", response=self._response("in_progress")),
        ]

    def chunk(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        events = self.start()
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if isinstance(content, str) and content:
                events += self._text(content)
            for call in delta.get("tool_calls") or []:
                if isinstance(call, dict):
                    events += self._tool_call(call)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return events

    def _text(self, delta: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        item = self._open
        if item is None or item.kind != "message":
            events += self._close()
            item = self._add(_Item(len(self._items), "message"))
            events.append(
                self._event("response.output_item.added", output_index=item.index, item=item.item("in_progress"))
            )
            events.append(
                self._event(
                    "response.content_part.added",
                    item_id=item.id,
                    output_index=item.index,
                    content_index=0,
                    part=_text_part(""),
                )
            )
        item.text.append(delta)
        events.append(
            self._event(
                "response.output_text.delta",
                item_id=item.id,
                output_index=item.index,
                content_index=0,
                delta=delta,
                logprobs=[],
            )
        )
        return events

    def _tool_call(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        index = call.get("index", 0)
        function = call.get("function") or {}
        item = self._calls.get(index)
        if item is None:
            events += self._close()
            item = _Item(len(self._items), "function_call", str(call.get("id") or _id("call")), "")
            item.name = str(function.get("name") or "")
            self._calls[index] = self._add(item)
            events.append(
                self._event("response.output_item.added", output_index=item.index, item=item.item("in_progress"))
            )
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            item.text.append(arguments)
            events.append(
                self._event(
                    "response.function_call_arguments.delta", item_id=item.id, output_index=item.index, delta=arguments
                )
            )
        return events

    def _add(self, item: _Item) -> _Item:
        self._items.append(item)
        self._open = item
        return item

    def _close(self) -> list[dict[str, Any]]:
        item, self._open = self._open, None
        if item is None:
            return []
        text = "".join(item.text)
        events: list[dict[str, Any]] = []
        if item.kind == "message":
            where = {"item_id": item.id, "output_index": item.index, "content_index": 0}
            events.append(self._event("response.output_text.done", **where, text=text, logprobs=[]))
            events.append(self._event("response.content_part.done", **where, part=_text_part(text)))
        else:
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item.id,
                    output_index=item.index,
                    name=item.name,
                    arguments=text,
                )
            )
        events.append(self._event("response.output_item.done", output_index=item.index, item=item.item("completed")))
        return events

    def finish(self, cost_micro_usd: int) -> list[dict[str, Any]]:
        """The closing events, once the chat stream ended with [DONE] and the request was settled."""
        events = self.start() + self._close()
        response = self._response("completed")
        if response["usage"] is not None:
            response["usage"] = usage_with_cost(response["usage"], cost_micro_usd)
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        events.append(self._event(kind, response=response))
        return events
