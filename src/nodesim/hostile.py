"""A hostile node: it lies in /metrics, answers garbage, or sends more than any proxy should accept.

Set per node (CLI or POST /sim/config); each is independent of the speed and fault fields:

- `metrics_lie`: /metrics reports this many requests waiting for every model: `negative`
  (-1,000,000, the lie that bought a node traffic), `nan`, `-inf`, or `huge` (1e300); the
  KV-cache gauges say -1 (negative), NaN (nan) or -Inf (-inf) along with it.
- `garbage`: the answer, with status 200, is `not_json` (plain text), `html` (an HTML error page,
  `text/html`), `non_utf8` (JSON with bytes that are not UTF-8) or `usage_type` (a well-formed
  answer whose `usage` is a string). Streaming, the event after `garbage_after_tokens` good tokens
  is that garbage (with 0 and `html`, the whole answer is the HTML page), then the stream goes on.
- `oversize_bytes` > 0: a non-streamed answer is valid JSON padded to that many bytes; a stream
  sends its opening and `garbage_after_tokens` good tokens, then one event of that many bytes
  that never ends (no blank line), and holds the connection open until the client leaves.

Good tokens are followed by a 0.2 s pause, so that a reader gets them apart from what follows.

A hostile request is served at once, outside the pacing, the concurrency limit and the counters
(only `requests_total` counts it).
"""

from __future__ import annotations

import asyncio
import math

import orjson
from starlette.types import Receive, Send

from atoma_proxy.nodesim.asgi import send_bytes, wait_disconnect
from atoma_proxy.nodesim.config import SimConfig
from atoma_proxy.nodesim.jobs import Job

__all__ = ["is_hostile", "lied_waiting", "serve_hostile"]

_LIES = {"negative": (-1_000_000.0, -1.0), "nan": (math.nan, math.nan), "-inf": (-math.inf, -math.inf)}
_HUGE = 1e300
_PIECE = 64 * 1024
_PAUSE = 0.2
_HTML = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n\n"
    b"<body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>\n"
)
_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


def lied_waiting(config: SimConfig) -> tuple[float, float] | None:
    """(requests waiting, KV-cache usage) that /metrics reports instead of the truth; None when honest."""
    if config.metrics_lie == "huge":
        return _HUGE, 1.0
    return _LIES.get(config.metrics_lie)


def is_hostile(config: SimConfig) -> bool:
    """Whether an inference request is answered by `serve_hostile` instead of the normal generation."""
    return bool(config.garbage or config.oversize_bytes)


def _garbage(kind: str, job: Job) -> bytes:
    if kind == "html":
        return _HTML
    if kind == "non_utf8":
        return b'{"id":"x","object":"chat.completion","choices":[{"index":0,"text":"\xff\xfe\xc3("}]}'
    if kind == "usage_type":
        answer = orjson.loads(job.render()) if not job.stream else {"choices": []}
        answer["usage"] = "a lot of tokens"
        return orjson.dumps(answer)
    return b"this is not json, sorry"


def _padded(job: Job, size: int) -> bytes:
    answer = job.render()
    room = size - len(answer) - len(b',"padding":""')
    if room <= 0:
        return answer
    return answer[:-1] + b',"padding":"' + b"x" * room + b'"}'


async def serve_hostile(config: SimConfig, job: Job, receive: Receive, send: Send) -> None:
    if not job.stream:
        if config.oversize_bytes:
            await send_bytes(send, 200, _padded(job, config.oversize_bytes))
        else:
            kind = b"text/html" if config.garbage == "html" else b"application/json"
            await send_bytes(send, 200, _garbage(config.garbage, job), kind)
        return
    if config.garbage == "html" and config.garbage_after_tokens == 0 and not config.oversize_bytes:
        await send_bytes(send, 200, _HTML, b"text/html")
        return
    await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
    good = min(config.garbage_after_tokens, job.steps)
    tokens = b"".join(job.stream_token(step) for step in range(good))
    await send({"type": "http.response.body", "body": job.stream_open() + tokens, "more_body": True})
    if good:
        await asyncio.sleep(_PAUSE)  # the good tokens reach the reader before what follows them
    if config.oversize_bytes:
        await _endless_event(config.oversize_bytes, receive, send)
        return
    event = b"data: " + _garbage(config.garbage, job) + b"\n\n"
    rest = b"".join(job.stream_token(step) for step in range(good, job.steps))
    await send({"type": "http.response.body", "body": event + rest + job.stream_close(), "more_body": False})


async def _endless_event(size: int, receive: Receive, send: Send) -> None:
    head = b'data: {"choices":[{"index":0,"delta":{"content":"'
    sent = 0
    piece = head
    while sent < size:
        piece = piece[: size - sent]
        await send({"type": "http.response.body", "body": piece, "more_body": True})
        sent += len(piece)
        piece = b"x" * _PIECE
    await wait_disconnect(receive)  # no blank line, no end: until the client gives up
