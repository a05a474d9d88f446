"""Generated images reach the client through the proxy, never from a node's address.

The node is always asked for `response_format: "b64_json"`. A client that asked for `b64_json`
gets the images as the node encoded them; a client that asked for `url` (OpenAI's default) gets
each image as a `data:` URL (`data:image/png;base64,...`, the type read from the image's own
bytes), which needs no second request and no storage. A node that answers without `b64_json`
for every image (a URL of its own, say) failed the request: the next node is tried, and no URL
of a node is ever relayed. Any `url` field a node adds next to `b64_json` is dropped.
"""

from __future__ import annotations

from typing import Any

import orjson

from atoma_proxy.core.errors import NodeFailed
from atoma_proxy.core.nodes.registry import Node

__all__ = ["FORMATS", "check_node_answer", "client_answer"]

FORMATS = ("url", "b64_json")
# The first base64 characters of each image format's magic bytes.
_MEDIA_TYPES = (("iVBORw0KGgo", "image/png"), ("/9j/", "image/jpeg"), ("UklGR", "image/webp"), ("R0lGOD", "image/gif"))


def check_node_answer(node: Node, answer: dict[str, Any]) -> None:
    """NodeFailed unless every image of the answer is base64 data (run inside the relay's attempt)."""
    data = answer.get("data")
    if type(data) is not list or not data:
        raise NodeFailed(f"Node {node.id} answered an image request without images.")
    for item in data:
        if type(item) is not dict or type(item.get("b64_json")) is not str or not item["b64_json"]:
            raise NodeFailed(f"Node {node.id} answered images without the `b64_json` it was asked for.")


def _media_type(b64: str) -> str:
    return next((media for prefix, media in _MEDIA_TYPES if b64.startswith(prefix)), "image/png")


def client_answer(raw: bytes, wanted: str) -> bytes:
    """The node's (checked) answer in the format the client asked for."""
    answer = orjson.loads(raw)
    for item in answer["data"]:
        item.pop("url", None)
        if wanted == "url":
            b64 = item.pop("b64_json")
            item["url"] = f"data:{_media_type(b64)};base64,{b64}"
    return orjson.dumps(answer)
