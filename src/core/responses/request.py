"""A Responses API request -> the chat completion request a node receives.

Translated: `input` (a string, or items: messages with `input_text`/`input_image`/`output_text`
parts, `function_call` and `function_call_output`; `reasoning` items are dropped), `instructions`
(a system message first), `max_output_tokens` (the output cap, `max_completion_tokens`),
`temperature`, `top_p`, `tools` of type `function`, `tool_choice`, `text.format`
(`json_schema`/`json_object` -> `response_format`), `text.verbosity`, `stream`, `user`,
`parallel_tool_calls`, `reasoning.effort` (-> `reasoning_effort`). `metadata` is echoed in the
response, not sent to the node. Everything else is refused with INVALID_ARGUMENT naming the
parameter: built-in tools, `background`, `conversation`, `previous_response_id`, `store: true`
(the proxy keeps no responses), `prompt`, `include`, ... (see README "Responses API").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from atoma_proxy.core.errors import InvalidRequest
from atoma_proxy.core.limits import MAX_OUTPUT_TOKENS
from atoma_proxy.core.validation import MAX_MODEL_LENGTH

__all__ = ["ResponsesRequest", "parse_request"]

# Accepted when they ask for nothing the proxy would have to do (their defaults).
_HARMLESS: dict[str, tuple[Any, ...]] = {
    "store": (False,),
    "background": (False,),
    "truncation": ("disabled",),
    "include": ([],),
    "service_tier": ("auto", "default"),
    "stream_options": (),  # any: include_obfuscation has no meaning here
    "prompt_cache_key": (),  # any: a cache hint the nodes do not take
    "safety_identifier": (),  # any: an end-user id for the provider's abuse checks
}
_REFUSED_WHY = {
    "store": "the proxy keeps no responses; send `store: false` (or omit it) and the conversation in `input`",
    "previous_response_id": "the proxy keeps no responses; send the whole conversation in `input`",
    "conversation": "the proxy keeps no conversations; send the whole conversation in `input`",
    "background": "background responses are not supported",
}
_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")


@dataclass
class ResponsesRequest:
    """The chat body for the node and what the response object echoes back."""

    model: str
    stream: bool
    chat: dict[str, Any]
    echo: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)  # the accepted request, for nodes that serve Responses


def _refuse(param: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"Unsupported parameter: `{param}`: {why}.", param=param)


def _wrong(param: str, expected: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid type for `{param}`: expected {expected}.", param=param)


def _string(value: Any, param: str) -> str:
    if type(value) is not str:
        raise _wrong(param, "a string")
    return value


def _number(value: Any, param: str, low: float, high: float) -> float:
    if type(value) not in (int, float):
        raise _wrong(param, "a number")
    if not low <= value <= high:
        raise InvalidRequest(f"`{param}` must be between {low:g} and {high:g}.", param=param)
    return float(value)


def _integer(value: Any, param: str) -> int:
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is not int:
        raise _wrong(param, "an integer")
    return value


def parse_request(body: dict[str, Any]) -> ResponsesRequest:
    """The translation, or InvalidRequest naming the first parameter that cannot be served."""
    model = body.get("model")
    if not model:
        raise InvalidRequest("You must provide a model parameter.", param="model")
    model = _string(model, "model")
    if len(model) > MAX_MODEL_LENGTH:
        raise InvalidRequest(f"`model` is too long: at most {MAX_MODEL_LENGTH} characters.", param="model")
    if body.get("input") is None:
        raise InvalidRequest("You must provide an `input` parameter.", param="input")
    chat: dict[str, Any] = {"model": model}
    echo: dict[str, Any] = {}
    stream = False
    messages: list[dict[str, Any]] = []
    for key, value in body.items():
        if value is None or key in ("model", "input"):
            continue
        if key in _HARMLESS:
            allowed = _HARMLESS[key]
            if allowed and value not in allowed:
                raise _refuse(key, _REFUSED_WHY.get(key, f"only {allowed[0]!r} is supported"))
            if key == "store":
                echo["store"] = False
        elif key in _REFUSED_WHY:
            raise _refuse(key, _REFUSED_WHY[key])
        elif key == "instructions":
            echo["instructions"] = _string(value, "instructions")
            messages.append({"role": "system", "content": value})
        elif key == "max_output_tokens":
            cap = _integer(value, key)
            if not 1 <= cap <= MAX_OUTPUT_TOKENS:
                raise InvalidRequest(f"`{key}` must be between 1 and {MAX_OUTPUT_TOKENS}.", param=key)
            chat["max_completion_tokens"] = echo[key] = cap
        elif key == "temperature":
            chat[key] = echo[key] = _number(value, key, 0, 2)
        elif key == "top_p":
            chat[key] = echo[key] = _number(value, key, 0, 1)
        elif key == "stream":
            if type(value) is not bool:
                raise _wrong(key, "a boolean")
            stream = value
        elif key == "user":
            chat[key] = echo[key] = _string(value, key)
        elif key == "parallel_tool_calls":
            if type(value) is not bool:
                raise _wrong(key, "a boolean")
            chat[key] = echo[key] = value
        elif key == "metadata":
            echo[key] = _metadata(value)
        elif key == "tools":
            chat["tools"] = _tools(value)
            echo[key] = value
        elif key == "tool_choice":
            chat[key] = _tool_choice(value)
            echo[key] = value
        elif key == "text":
            _text(value, chat)
            echo[key] = value
        elif key == "reasoning":
            _reasoning(value, chat)
            echo[key] = value
        else:
            raise _refuse(key, "the proxy does not support it on /v1/responses")
    messages += _input(body["input"])
    if not messages:
        raise InvalidRequest("`input` must contain at least one item.", param="input")
    if stream:
        chat["stream"] = True
    chat["messages"] = messages
    passed = {key: value for key, value in body.items() if value is not None}
    return ResponsesRequest(model=model, stream=stream, chat=chat, echo=echo, body=passed)


def _metadata(value: Any) -> dict[str, str]:
    if type(value) is not dict or len(value) > 16:
        raise _wrong("metadata", "an object of at most 16 string values")
    for key, item in value.items():
        if type(item) is not str or len(key) > 64 or len(item) > 512:
            raise _wrong(f"metadata.{key}"[:80], "a string of at most 512 characters (keys at most 64)")
    return value


def _tools(value: Any) -> list[dict[str, Any]]:
    if type(value) is not list:
        raise _wrong("tools", "an array")
    tools = []
    for index, tool in enumerate(value):
        param = f"tools[{index}]"
        if type(tool) is not dict:
            raise _wrong(param, "an object")
        kind = tool.get("type")
        if kind != "function":
            raise _refuse(
                f"{param}.type", f"only `function` tools are served (built-in tool {str(kind)[:40]!r} is not)"
            )
        function: dict[str, Any] = {"name": _string(tool.get("name"), f"{param}.name")}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(value: Any) -> Any:
    if value in ("auto", "none", "required"):
        return value
    if type(value) is dict and value.get("type") == "function":
        return {"type": "function", "function": {"name": _string(value.get("name"), "tool_choice.name")}}
    raise _refuse("tool_choice", "only `auto`, `none`, `required` or a function choice is served")


def _text(value: Any, chat: dict[str, Any]) -> None:
    if type(value) is not dict:
        raise _wrong("text", "an object")
    for key, item in value.items():
        if item is None:
            continue
        if key == "verbosity":
            chat["verbosity"] = _string(item, "text.verbosity")
        elif key == "format":
            if type(item) is not dict:
                raise _wrong("text.format", "an object")
            kind = item.get("type")
            if kind == "json_schema":
                schema = {k: item[k] for k in ("name", "schema", "strict", "description") if item.get(k) is not None}
                chat["response_format"] = {"type": "json_schema", "json_schema": schema}
            elif kind == "json_object":
                chat["response_format"] = {"type": "json_object"}
            elif kind != "text":
                raise _refuse("text.format.type", "only `text`, `json_object` and `json_schema` are served")
        else:
            raise _refuse(f"text.{key}"[:80], "not supported")


def _reasoning(value: Any, chat: dict[str, Any]) -> None:
    if type(value) is not dict:
        raise _wrong("reasoning", "an object")
    for key, item in value.items():
        if item is None:
            continue
        if key == "effort":
            if item not in _EFFORTS:
                raise InvalidRequest(
                    f"`reasoning.effort` must be one of {', '.join(_EFFORTS)}.", param="reasoning.effort"
                )
            chat["reasoning_effort"] = item
        else:
            raise _refuse(f"reasoning.{key}"[:80], "chat completion nodes cannot serve it")


def _input(value: Any) -> list[dict[str, Any]]:
    if type(value) is str:
        return [{"role": "user", "content": value}]
    if type(value) is not list:
        raise _wrong("input", "a string or an array of input items")
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        param = f"input[{index}]"
        if type(item) is not dict:
            raise _wrong(param, "an object")
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message(item, param))
        elif kind == "function_call":
            call = {
                "id": _string(item.get("call_id"), f"{param}.call_id"),
                "type": "function",
                "function": {
                    "name": _string(item.get("name"), f"{param}.name"),
                    "arguments": _string(item.get("arguments", ""), f"{param}.arguments"),
                },
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            content = output if type(output) is str else _parts(output, f"{param}.output", tool=True)
            call_id = _string(item.get("call_id"), f"{param}.call_id")
            messages.append({"role": "tool", "tool_call_id": call_id, "content": content})
        elif kind == "reasoning":
            continue  # a reasoning model's earlier thoughts: chat nodes take none back
        else:
            raise _refuse(f"{param}.type", f"input items of type {str(kind)[:40]!r} are not served")
    return messages


def _message(item: dict[str, Any], param: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ("user", "system", "developer", "assistant"):
        raise InvalidRequest(
            f"`{param}.role` must be one of user, system, developer, assistant.", param=f"{param}.role"
        )
    content = item.get("content")
    if type(content) is str:
        return {"role": role, "content": content}
    parts = _parts(content, f"{param}.content", tool=False)
    if role != "user":  # only user messages take images; the others are text
        return {"role": role, "content": "".join(part["text"] for part in parts if part["type"] == "text")}
    return {"role": role, "content": parts}


def _parts(value: Any, param: str, *, tool: bool) -> list[dict[str, Any]]:
    if type(value) is not list:
        raise _wrong(param, "a string or an array of content parts")
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(value):
        where = f"{param}[{index}]"
        if type(part) is not dict:
            raise _wrong(where, "an object")
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": _string(part.get("text"), f"{where}.text")})
        elif kind == "refusal":
            parts.append({"type": "text", "text": _string(part.get("refusal"), f"{where}.refusal")})
        elif kind == "input_image" and not tool:
            if part.get("file_id") is not None or part.get("image_url") is None:
                raise _refuse(f"{where}.file_id", "images are served by `image_url` (a URL or data URL) only")
            image: dict[str, Any] = {"url": _string(part["image_url"], f"{where}.image_url")}
            if part.get("detail") is not None:
                image["detail"] = _string(part["detail"], f"{where}.detail")
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise _refuse(f"{where}.type", f"content parts of type {str(kind)[:40]!r} are not served")
    return parts
