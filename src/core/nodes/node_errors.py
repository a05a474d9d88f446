"""A node's error answer (HTTP >= 300) as our error, without relaying what the node should not say.

A node's error body is its own text: it may be huge, binary, an HTML page, or leak the node's
internals ("internal: db password=hunter2"). The client gets:

- from a well-formed OpenAI error (`{"error": {"message", "type", "code"}}`, or vLLM's older
  top-level `{"message", "type", "code"}`): its `type` and `code` when they are short identifiers
  (ErrorInfo metadata `node_error_type`, `node_error_code`), and its message cut to
  `MAX_MESSAGE_CHARS`, control characters removed, anything that looks like a secret
  (`password=...`, `token: ...`, `Bearer ...`, credentials in a URL, long hex or base64 runs)
  replaced by `[redacted]`;
- from anything else, a generic sentence naming the HTTP status.

The node's body itself (its first `_LOGGED_BYTES`) goes to the log with the node id: at WARNING when
the node failed (408, 429, 5xx), at INFO when it refused the request (other 4xx, the client's doing).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson

from atoma_proxy.core.errors import NodeFailed, NodeRejectedRequest, ProxyError
from atoma_proxy.core.nodes.registry import Node

__all__ = ["MAX_MESSAGE_CHARS", "node_error", "sanitize_message"]

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 200
_LOGGED_BYTES = 2048
_IDENTIFIER = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_SECRETS = (
    re.compile(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/=\-]+)"),
    # key=value and key: value pairs whose key names a secret
    re.compile(
        r"(?i)\b([\w.\-]*(?:password|passwd|pwd|secret|token|api[_\-]?key|apikey|credential|private[_\-]?key|"
        r"access[_\-]?key|auth|authorization))(\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|\S+)"
    ),
    re.compile(r"(://)([^/\s:@]+:)([^/\s@]+)(?=@)"),  # user:password@host
)
_LONG_TOKEN = re.compile(r"\b(?:sk-[A-Za-z0-9_\-]{8,}|[A-Fa-f0-9]{32,}|[A-Za-z0-9+/_\-]{40,}={0,2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_REDACTED = "[redacted]"


def node_error(node: Node, status: int, body: bytes) -> ProxyError:
    """NodeFailed for 408, 429 and 5xx (another node may serve it), NodeRejectedRequest for other 4xx."""
    failed = status in (408, 429) or status >= 500
    log.log(
        logging.WARNING if failed else logging.INFO,
        "node %s answered HTTP %d: %r",
        node.id,
        status,
        body[:_LOGGED_BYTES],
    )
    metadata = {"node_status": str(status)}
    error = _openai_error(body)
    message = None
    if error is not None:
        message = sanitize_message(error.get("message"))
        for field in ("type", "code"):
            value = _identifier(error.get(field))
            if value is not None:
                metadata[f"node_error_{field}"] = value
    if failed:
        shown = f": {message}" if message else "."
        return NodeFailed(f"Node {node.id} answered {status}{shown}", metadata=metadata)
    return NodeRejectedRequest(message or f"The node refused the request (HTTP {status}).", metadata=metadata)


def _openai_error(body: bytes) -> dict[str, Any] | None:
    """The error object of a well-formed OpenAI error body, else None."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    error = parsed.get("error", parsed)
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error
    return None


def _identifier(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1000:
        return str(value)
    if isinstance(value, str) and _IDENTIFIER.fullmatch(value):
        return value
    return None


def sanitize_message(message: Any) -> str | None:
    """A node's error message fit for a client: short, printable, without secret-looking parts; None if empty."""
    if not isinstance(message, str):
        return None
    text = _CONTROL.sub(" ", message[: MAX_MESSAGE_CHARS * 4])
    for pattern in _SECRETS:
        text = pattern.sub(lambda m: m.group(1) + m.group(2) + _REDACTED, text)
    text = _LONG_TOKEN.sub(_REDACTED, text)
    text = " ".join(text.split())
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1].rstrip() + "…"
    return text or None
