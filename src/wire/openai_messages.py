"""OpenAI chat messages and content parts -> ChatMessage protos (the `messages` field of a chat request).

`role`, `content` (text or typed parts), `name` and `tool_call_id` are typed; everything else
(tool_calls, refusal, audio, provider fields) stays in the message's `extra_json`, and a part's
fields other than type/text/image_url in the part's. An `image_url` the proto cannot hold
exactly (provider keys, an empty detail) is typed for the core and also kept whole in extra.
A null `content`, `name` or `tool_call_id` is dropped, like an empty `name` or `tool_call_id`.

Python callers may put an already built ChatMessage (or ChatContentPart) where a JSON object
goes: it is copied as it is. JSON from the wire never takes that branch, so it costs the facade
nothing.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from atoma_proxy.generated.atoma.routing.v1 import chat_pb2
from atoma_proxy.wire.json_values import OpenAIRequestError, dumps_object, string, wrong_type

__all__ = ["messages"]


def messages(message: Any, value: Any, extra: dict[str, Any]) -> None:
    """Setter of `messages` (see `openai_requests`): one ChatMessage per JSON message, in order."""
    if type(value) is not list:
        raise wrong_type("messages", "an array")
    for i, item in enumerate(value):
        _chat_message(item, message.messages.add(), f"messages[{i}]")


def _chat_message(value: Any, message: chat_pb2.ChatMessage, param: str) -> None:
    if _prebuilt(value, message, param, "role"):
        return
    extra: dict[str, Any] = {}
    for key, item in value.items():
        if key == "role":
            message.role = string(item, f"{param}.role")
        elif key == "content":
            if type(item) is str:
                message.text = item
            elif type(item) is list:
                message.parts.SetInParent()
                for j, part in enumerate(item):
                    _content_part(part, message.parts.parts.add(), f"{param}.content[{j}]")
            elif item is not None:
                raise wrong_type(f"{param}.content", "a string or an array of content parts")
        elif key == "name" or key == "tool_call_id":
            if item is not None and string(item, f"{param}.{key}"):
                setattr(message, key, item)
        else:
            extra[key] = item
    if extra:
        message.extra_json = dumps_object(extra)


def _content_part(value: Any, part: chat_pb2.ChatContentPart, param: str) -> None:
    if _prebuilt(value, part, param, "type"):
        return
    extra: dict[str, Any] = {}
    for key, item in value.items():
        if key == "type":
            part.type = string(item, f"{param}.type")
        elif key == "text":
            if item is not None:
                part.text = string(item, f"{param}.text")
        elif key == "image_url":
            if item is not None and not _image_url(item, part.image_url, f"{param}.image_url"):
                extra["image_url"] = item
        else:
            extra[key] = item
    if extra:
        part.extra_json = dumps_object(extra)


def _prebuilt(value: Any, target: Message, param: str, required: str) -> bool:
    """True when `value` is a proto of the target's type, copied into it; else checks that `value` is a
    JSON object with its `required` key (False: translate it)."""
    if type(value) is not dict:
        if isinstance(value, type(target)):
            target.CopyFrom(value)
            return True
        raise wrong_type(param, "an object")
    if value.get(required) is None:
        raise OpenAIRequestError(f"Missing required parameter: `{param}.{required}`.", param=f"{param}.{required}")
    return False


def _image_url(value: Any, image_url: chat_pb2.ImageUrl, param: str) -> bool:
    """Types the image URL; False when the proto cannot hold all of it (keep it whole in extra)."""
    if type(value) is not dict:
        raise wrong_type(param, "an object")
    image_url.SetInParent()
    url = value.get("url")
    detail = value.get("detail")
    if url is not None:
        image_url.url = string(url, f"{param}.url")
    if detail is not None:
        image_url.detail = string(detail, f"{param}.detail")
    other_keys = len(value) - ("url" in value) - ("detail" in value)
    return url is not None and other_keys == 0 and ("detail" not in value or bool(detail))
