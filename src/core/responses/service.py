"""The CreateResponse RPC's own steps: read the request, and turn the relayed chat into Responses events."""

from __future__ import annotations

from typing import Any

import orjson

from atoma_proxy.core.errors import InvalidRequest, NodeFailed
from atoma_proxy.core.json_depth import MAX_JSON_DEPTH, too_deep
from atoma_proxy.core.node_requests import plain_json
from atoma_proxy.core.responses.output import ResponseStream, response_object
from atoma_proxy.core.responses.passthrough import Relayed
from atoma_proxy.core.responses.request import ResponsesRequest, parse_request
from atoma_proxy.core.usage_cost import usage_with_cost
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb

__all__ = [
    "ResponseStream",
    "batch_events",
    "closing_events",
    "countable_answer",
    "passed_event",
    "read_request",
    "whole_response",
]


def read_request(message: pb.CreateResponseRequest) -> ResponsesRequest:
    """The translated request, from `request_json` or else the structured `request`."""
    if message.request_json:
        try:
            body = orjson.loads(message.request_json)
        except orjson.JSONDecodeError:
            raise InvalidRequest("`request_json` is not valid JSON.", param="request_json") from None
    else:
        body = plain_json(message.request)
    if type(body) is not dict:
        raise InvalidRequest("The request must be a JSON object.", param="request_json")
    if too_deep(body):
        raise InvalidRequest(f"The request nests deeper than {MAX_JSON_DEPTH} levels.", param="request_json")
    return parse_request(body)


def whole_response(request: ResponsesRequest, relayed: Relayed, cost_micro_usd: int) -> pb.CreateResponseResponse:
    answer = orjson.loads(relayed.data[0])  # the relay already checked it is a JSON object
    response = answer if relayed.passed_through else response_object(request, answer)
    if relayed.passed_through:
        response["store"] = False
    if response["usage"] is not None:
        response["usage"] = usage_with_cost(response["usage"], cost_micro_usd)
    return pb.CreateResponseResponse(response=orjson.dumps(response).decode())


def passed_event(data: bytes, cost_micro_usd: int) -> pb.CreateResponseResponse:
    """A passed-through stream's last event, its response's usage carrying the cost."""
    event = orjson.loads(data)
    response = event.get("response")
    if type(response) is dict and type(response.get("usage")) is dict:
        response["usage"] = usage_with_cost(response["usage"], cost_micro_usd)
    return pb.CreateResponseResponse(stream_event=orjson.dumps(event).decode())


def countable_answer(relayed: Relayed) -> bytes:
    """A non-streamed answer as a chat completion, for counting its text when its node reported no usage."""
    if not relayed.passed_through:
        return relayed.data[0]
    answer = orjson.loads(relayed.data[0])
    texts = [
        part.get("text", "")
        for item in answer.get("output") or []
        if type(item) is dict
        for part in item.get("content") or []
        if type(part) is dict and type(part.get("text")) is str
    ]
    return orjson.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(texts)}}]})


def _events(events: list[dict[str, Any]]) -> list[pb.CreateResponseResponse]:
    return [pb.CreateResponseResponse(stream_event=orjson.dumps(event).decode()) for event in events]


def batch_events(translator: ResponseStream, batch: list[bytes]) -> list[pb.CreateResponseResponse]:
    """The Responses events of one relayed batch of chat chunks."""
    events: list[dict[str, Any]] = []
    for chunk in batch:
        parsed = orjson.loads(chunk)
        if type(parsed) is not dict:
            raise NodeFailed("A node sent a chunk that is not a JSON object.")
        events += translator.chunk(parsed)
    return _events(events)


def closing_events(translator: ResponseStream, cost_micro_usd: int) -> list[pb.CreateResponseResponse]:
    """The events after the chat stream ended, the last one's usage carrying the cost."""
    return _events(translator.finish(cost_micro_usd))
