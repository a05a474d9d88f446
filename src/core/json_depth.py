"""The nesting limit of client JSON: request bodies (facade) and pass-through `extra_json` (core).

orjson refuses to serialize beyond 254 levels and to parse beyond 1024, and Python's own recursion
stops somewhere in between: a deeply nested body would fail deep inside the proxy with a 500. No
OpenAI request needs more than a handful of levels (a tool's JSON schema perhaps a dozen), so
nesting is capped at MAX_JSON_DEPTH and checked right after parsing, iteratively (the check itself
cannot overflow). Past it a client gets 400 `invalid_request` (REST) or INVALID_ARGUMENT (gRPC).
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_JSON_DEPTH", "too_deep"]

MAX_JSON_DEPTH = 64


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether parsed JSON nests objects and arrays more than `limit` levels (a flat object is 1)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        children = node.values() if type(node) is dict else node
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                if depth >= limit:
                    return True
                pending.append((child, depth + 1))
    return False
