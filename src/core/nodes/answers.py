"""A node's 2xx answer checked for shape: garbage from a node is a node failure, not the proxy's bug.

A node's JSON answer and each of its streamed chunks must be a JSON object (valid UTF-8 JSON,
so never an HTML page or raw bytes), and `usage`, when present and not null, an object whose
token counts are integers (or null). Anything else raises NodeFailed: the breaker counts it,
and the relay fails over when nothing reached the client yet. What the counts may be (bounds,
consistency) is the ledger's business, not this module's.

An event that is an error (`{"error": ...}` without `choices`, as vLLM ends a failed stream) is a
node failure too, its message sanitized like an error answer's (node_errors.py).
"""

from __future__ import annotations

from typing import Any

import orjson

from atoma_proxy.core.errors import NodeFailed
from atoma_proxy.core.nodes.node_errors import sanitize_message
from atoma_proxy.core.nodes.registry import Node

__all__ = ["answer_object", "answer_usage", "check_stream_error"]

_TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


def answer_object(node: Node, data: bytes, what: str = "an answer") -> dict[str, Any]:
    """`data` parsed, when it is a JSON object; NodeFailed otherwise."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise NodeFailed(f"Node {node.id} sent {what} that is not JSON.") from None
    if type(parsed) is not dict:
        raise NodeFailed(f"Node {node.id} sent {what} that is not a JSON object.")
    return parsed


def answer_usage(node: Node, answer: dict[str, Any]) -> dict[str, Any] | None:
    """The answer's `usage` (None when absent or null); NodeFailed when it has the wrong type."""
    usage = answer.get("usage")
    if usage is None:
        return None
    if type(usage) is not dict:
        raise NodeFailed(f"Node {node.id} sent a `usage` that is not an object.")
    for name in _TOKEN_FIELDS:
        value = usage.get(name)
        if value is not None and type(value) is not int:
            raise NodeFailed(f"Node {node.id} sent a `usage.{name}` that is not an integer.")
    return usage


def check_stream_error(node: Node, chunk: dict[str, Any]) -> None:
    """NodeFailed when a streamed chunk is the node's error event rather than a completion chunk."""
    if "error" not in chunk or "choices" in chunk:
        return
    error = chunk["error"]
    message = sanitize_message(error.get("message") if isinstance(error, dict) else error)
    shown = f": {message}" if message else "."
    raise NodeFailed(f"Node {node.id} failed mid-stream{shown}")
