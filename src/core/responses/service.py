"""The CreateResponse RPC's own steps: read the request, and turn the relayed chat into Responses events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from google.protobuf import json_format

from atoma_proxy.core.errors import InvalidRequest, NodeFailed
from atoma_proxy.core.json_depth import MAX_JSON_DEPTH, too_deep
from atoma_proxy.core.responses.output import ResponseStream, response_object
from atoma_proxy.core.responses.request import ResponsesRequest, parse_request
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb

__all__ = ["read_request", "stream_events", "whole_response"]


def read_request(message: pb.CreateResponseRequest) -> ResponsesRequest:
    """The translated request, from `request_json` or else the structured `request`."""
    if message.request_json:
        try:
            body = orjson.loads(message.request_json)
        except orjson.JSONDecodeError:
            raise InvalidRequest("`request_json` is not valid JSON.", param="request_json") from None
    else:
        body = json_format.MessageToDict(message.request)
    if type(body) is not dict:
        raise InvalidRequest("The request must be a JSON object.", param="request_json")
    if too_deep(body):
        raise InvalidRequest(f"The request nests deeper than {MAX_JSON_DEPTH} levels.", param="request_json")
    return parse_request(body)


def whole_response(request: ResponsesRequest, raw: bytes) -> pb.CreateResponseEvent:
    completion = orjson.loads(raw)  # the relay already checked it is a JSON object
    return pb.CreateResponseEvent(response=orjson.dumps(response_object(request, completion)).decode())


async def stream_events(
    request: ResponsesRequest, batches: AsyncIterator[list[bytes]]
) -> AsyncIterator[tuple[list[bytes], list[pb.CreateResponseEvent]]]:
    """Per relayed batch of chat chunks: the batch (for metering) and the Responses events it makes;
    after the last batch, an empty batch with the closing events."""
    translator = ResponseStream(request)
    async for batch in batches:
        events: list[dict[str, Any]] = []
        for chunk in batch:
            parsed = orjson.loads(chunk)
            if type(parsed) is not dict:
                raise NodeFailed("A node sent a chunk that is not a JSON object.")
            events += translator.chunk(parsed)
        yield batch, [pb.CreateResponseEvent(stream_event=orjson.dumps(event).decode()) for event in events]
    yield [], [pb.CreateResponseEvent(stream_event=orjson.dumps(event).decode()) for event in translator.finish()]
