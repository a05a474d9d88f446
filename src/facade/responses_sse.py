"""Server-sent events of a CreateResponse stream: OpenAI's Responses framing.

Each `stream_event` from the core is one `event: <type>` / `data: <event JSON, verbatim>` pair;
there is no `[DONE]` (the last event is `response.completed` or `response.incomplete`). An error
after the headers went out is one `event: error` whose data is OpenAI's error event
(`type`, `code`, `message`, `param`) plus the `error` envelope the openai SDKs raise from.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import grpc
import orjson

from atoma_proxy.facade.errors import ApiError
from atoma_proxy.facade.metadata import rpc_error

__all__ = ["response_events"]


def _event(kind: str, data: bytes) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


def _error(error: ApiError) -> bytes:
    envelope = error.envelope()
    inner = envelope["error"]
    data = {"type": "error", "code": inner.get("code"), "message": inner.get("message"), "param": inner.get("param")}
    return _event("error", orjson.dumps({**data, **envelope}))


async def response_events(call: grpc.aio.UnaryStreamCall, event: Any) -> AsyncGenerator[bytes, None]:
    ended = False
    try:
        while event is not grpc.aio.EOF:
            kind = event.WhichOneof("event")
            if kind == "stream_event":
                data = event.stream_event.encode()
                yield _event(orjson.loads(data).get("type", "message"), data)
            elif kind == "end":
                ended = True
            event = await call.read()
    except grpc.aio.AioRpcError as error:
        yield _error(rpc_error(error))
        return
    if not ended:
        yield _error(ApiError(502, "The routing core ended the stream without its end event.", code="bad_gateway"))
