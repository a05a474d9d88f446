"""A node's 2xx answer checked for shape: garbage from a node is a node failure, not the proxy's bug.

A node's JSON answer and each of its streamed chunks must be a JSON object (valid UTF-8 JSON,
so never an HTML page or raw bytes); anything else raises NodeFailed: the breaker counts it, and
the relay fails over when nothing reached the client yet. Its `usage` is checked, types and
bounds in one place, by `core/node_limits.check_usage`.

An event that is an error (`{"error": ...}` without `choices`, as vLLM ends a failed stream) is a
node failure too, its message sanitized like an error answer's (node_errors.py).
"""

from __future__ import annotations

from typing import Any

import orjson

from atoma_proxy.core.errors import NodeFailed
from atoma_proxy.core.nodes.node_errors import sanitize_message
from atoma_proxy.core.nodes.registry import Node

__all__ = ["answer_object", "check_stream_error"]


def answer_object(node: Node, data: bytes, what: str = "an answer") -> dict[str, Any]:
    """`data` parsed, when it is a JSON object; NodeFailed otherwise."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise NodeFailed(f"Node {node.id} sent {what} that is not JSON.") from None
    if type(parsed) is not dict:
        raise NodeFailed(f"Node {node.id} sent {what} that is not a JSON object.")
    return parsed


def check_stream_error(node: Node, chunk: dict[str, Any]) -> None:
    """NodeFailed when a streamed chunk is the node's error event rather than a completion chunk."""
    if "error" not in chunk or "choices" in chunk:
        return
    error = chunk["error"]
    message = sanitize_message(error.get("message") if isinstance(error, dict) else error)
    shown = f": {message}" if message else "."
    raise NodeFailed(f"Node {node.id} failed mid-stream{shown}")
