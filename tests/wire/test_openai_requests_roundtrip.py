"""Property: `node_body(openai_requests.X(parse(json)))` is the client's JSON up to the documented normalisations.

The bodies are serialised with the stdlib and parsed with the facade's orjson parser, as a real
request is; unknown fields (nested objects, 64-bit and bigger integers, floats, unicode) must
reach the node unchanged, so the proxy never has to know a field to pass it through.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from atoma_proxy.clients._requests import build_request
from atoma_proxy.core import node_requests
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.wire import openai_requests

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
NUMBER = FLOATS | st.integers(-(2**53), 2**53)
JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | INT64 | FLOATS | st.text()
# Scalars on their own too: st.recursive alone mostly yields containers at the top.
JSON_VALUES = JSON_SCALARS | st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
SAMPLING = {
    "max_tokens": INT64,
    "temperature": NUMBER,
    "top_p": NUMBER,
    "n": INT32,
    "stop": st.text() | st.lists(st.text(), max_size=4),
    "seed": INT64,
    "user": st.text(),
}
# Typed strings without presence: "" is "not given".
PLAIN_STRINGS = {"user", "encoding_format", "size", "quality", "response_format", "style"}
FLOAT_FIELDS = {"temperature", "top_p", "presence_penalty", "frequency_penalty"}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def nullable(fields: dict[str, st.SearchStrategy[Any]]) -> dict[str, st.SearchStrategy[Any]]:
    return {name: st.none() | strategy for name, strategy in fields.items()}


def with_stream_fields(strategy: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Half the requests set `stream` and `stream_options` together: their interplay is the tricky part."""
    stream_options = st.fixed_dictionaries(
        {"include_usage": st.booleans() | st.none()}, optional={"continuous_usage_stats": st.booleans()}
    )
    fields = st.just({}) | st.fixed_dictionaries({"stream": st.booleans()}, optional={"stream_options": stream_options})
    return st.builds(lambda body, stream: {**body, **stream}, strategy, fields)


def with_unknown_fields(strategy: st.SearchStrategy[dict[str, Any]], known: set[str]) -> st.SearchStrategy[Any]:
    unknown = st.dictionaries(st.text(max_size=10).filter(lambda key: key not in known), JSON_VALUES, max_size=3)
    return st.builds(lambda typed, extra: {**extra, **typed}, strategy, unknown)


TOKEN_INPUTS = st.lists(st.integers(0, 2**40), min_size=1, max_size=5)
TEXT_OR_TOKENS = st.text() | st.lists(st.text(), max_size=3) | TOKEN_INPUTS | st.lists(TOKEN_INPUTS, max_size=3)

IMAGE_URL = with_unknown_fields(
    st.fixed_dictionaries({"url": st.text()}, optional={"detail": st.none() | st.text()}), {"url", "detail"}
)
PART = (
    with_unknown_fields(st.fixed_dictionaries({"type": st.just("text"), "text": st.text()}), {"type", "text"})
    | with_unknown_fields(
        st.fixed_dictionaries({"type": st.just("image_url"), "image_url": IMAGE_URL}), {"type", "image_url", "text"}
    )
    | with_unknown_fields(
        st.fixed_dictionaries({"type": st.text().filter(lambda t: t != "text")}, optional={"text": st.text()}),
        {"type", "text", "image_url"},
    )
)
MESSAGE = with_unknown_fields(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool"]) | st.text()},
        optional=nullable(
            {"content": st.text() | st.lists(PART, max_size=3), "name": st.text(), "tool_call_id": st.text()}
        ),
    ),
    {"role", "content", "name", "tool_call_id"},
)
STREAMING_TYPED = {*SAMPLING, "stream", "stream_options"}
CHAT_TYPED = {"model", "messages", *STREAMING_TYPED, "max_completion_tokens", "presence_penalty", "frequency_penalty"}
CHAT = with_unknown_fields(
    with_stream_fields(
        st.fixed_dictionaries(
            {"model": st.text(), "messages": st.lists(MESSAGE, max_size=3)},
            optional=nullable(
                {**SAMPLING, "max_completion_tokens": INT64, "presence_penalty": NUMBER, "frequency_penalty": NUMBER}
            ),
        )
    ),
    CHAT_TYPED,
)
COMPLETION_TYPED = {"model", "prompt", *STREAMING_TYPED}
COMPLETION = with_unknown_fields(
    with_stream_fields(
        st.fixed_dictionaries({"model": st.text()}, optional=nullable({**SAMPLING, "prompt": TEXT_OR_TOKENS}))
    ),
    COMPLETION_TYPED,
)
EMBEDDINGS_TYPED = {"model", "input", "encoding_format", "dimensions", "user"}
EMBEDDINGS = with_unknown_fields(
    st.fixed_dictionaries(
        {"model": st.text(), "input": TEXT_OR_TOKENS},
        optional=nullable({"encoding_format": st.text(), "dimensions": INT32, "user": st.text()}),
    ),
    EMBEDDINGS_TYPED,
)
IMAGE_STRINGS = ("size", "quality", "response_format", "style", "user")
IMAGES = with_unknown_fields(
    st.fixed_dictionaries(
        {"model": st.text(), "prompt": st.text()},
        optional=nullable({"n": INT32, **dict.fromkeys(IMAGE_STRINGS, st.text())}),
    ),
    {"model", "prompt", "n", *IMAGE_STRINGS},
)


# --- the documented normalisations (the module docstring of openai_requests), applied to the original -------


def as_parsed(value: Any) -> Any:
    """What orjson makes of a value: integers beyond 64 bits become floats."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return float(value)
    if isinstance(value, list):
        return [as_parsed(v) for v in value]
    if isinstance(value, dict):
        return {k: as_parsed(v) for k, v in value.items()}
    return value


def expected_request(body: dict[str, Any], typed: set[str], list_fields: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key not in typed:
            out[key] = as_parsed(value)
            continue
        if value is None or value is False or (value == "" and key in PLAIN_STRINGS):
            continue  # null, and proto defaults of fields without presence, are dropped (2)
        if key == "prompt" and "messages" not in typed and "stream" not in typed:
            out[key] = value  # the images prompt is required and always sent
            continue
        if key == "stop" or key in list_fields:
            value = text_or_tokens(value)  # (1)
            if not value:
                continue
        if key in FLOAT_FIELDS:
            value = float(value)  # (4)
        if key == "messages":
            value = [expected_message(m) for m in value]
        out[key] = value
    if "stream" in typed and not out.get("stream"):
        out.pop("stream_options", None)  # (3)
    return out


def text_or_tokens(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [value]
    if value and isinstance(value[0], int):
        return [value]
    return value


def expected_message(message: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in message.items():
        if key in ("content", "name", "tool_call_id") and value is None:
            continue
        if key in ("name", "tool_call_id") and value == "":
            continue
        if key == "content" and isinstance(value, list):
            value = [expected_part(p) for p in value]
        out[key] = as_parsed(value)
    return out


def expected_part(part: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in part.items() if not (k == "text" and v == "" and part["type"] != "text")}


def through_the_facade(body: dict[str, Any]) -> dict[str, Any]:
    """The body as a client sends it and the facade parses it."""
    return orjson.loads(json.dumps(body, ensure_ascii=False).encode())


def canonical(value: Any) -> str:
    # Distinguishes true from 1 and 1 from 1.0, which == does not.
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


@SETTINGS
@given(CHAT)
@example({"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": True, "x": 1}})
@example({"model": "m", "messages": [], "stream": None, "stream_options": {"include_usage": True}, "user": ""})
@example({"model": "m", "messages": [], "stream": False, "stream_options": None, "stop": [], "n": None})
@example(
    {
        "model": "m",
        "messages": [
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "big": 2**80}], "name": ""},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "u", "detail": "", "k": {}}},
                    {"type": "input_audio", "input_audio": {"data": "…"}, "text": ""},
                ],
            },
        ],
        "temperature": 1,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"x": -0.0, "y": 1e300}}}],
    }
)
def test_chat_completion_round_trip(body: dict[str, Any]) -> None:
    node = node_requests.chat_completion_body(openai_requests.chat_completion_request(through_the_facade(body)))
    assert canonical(node) == canonical(expected_request(body, CHAT_TYPED))


@SETTINGS
@given(COMPLETION)
def test_completion_round_trip(body: dict[str, Any]) -> None:
    node = node_requests.completion_body(openai_requests.completion_request(through_the_facade(body)))
    assert canonical(node) == canonical(expected_request(body, COMPLETION_TYPED, list_fields=("prompt",)))


@SETTINGS
@given(EMBEDDINGS)
def test_embeddings_round_trip(body: dict[str, Any]) -> None:
    node = node_requests.embeddings_body(openai_requests.embeddings_request(through_the_facade(body)))
    assert canonical(node) == canonical(expected_request(body, EMBEDDINGS_TYPED, list_fields=("input",)))


@SETTINGS
@given(IMAGES)
def test_images_round_trip(body: dict[str, Any]) -> None:
    node = node_requests.images_body(openai_requests.generate_images_request(through_the_facade(body)))
    assert canonical(node) == canonical(expected_request(body, {"model", "prompt", "n", *IMAGE_STRINGS}))


# --- the Python clients' keywords go through the same translation --------------------------------


def assert_the_client_sends_what_the_facade_sends(
    body: dict[str, Any], request_type: type[Any], typed: set[str], translate: Any, node_body: Any
) -> None:
    """RoutingClient given the body's typed fields as keywords and the rest as `extra` builds the request the
    facade builds from the body (both from the JSON values the facade parsed, so both see the same numbers)."""
    parsed = through_the_facade(body)
    keywords = {key: value for key, value in parsed.items() if key in typed}
    extra = {key: value for key, value in parsed.items() if key not in typed}
    client = build_request(request_type, None, {**keywords, "extra": extra})
    assert canonical(node_body(client)) == canonical(node_body(translate(parsed)))


@SETTINGS
@given(CHAT)
def test_the_client_and_the_facade_send_the_same_chat_completion(body: dict[str, Any]) -> None:
    assert_the_client_sends_what_the_facade_sends(
        body,
        pb.ChatCompletionRequest,
        CHAT_TYPED,
        openai_requests.chat_completion_request,
        node_requests.chat_completion_body,
    )


@SETTINGS
@given(EMBEDDINGS)
def test_the_client_and_the_facade_send_the_same_embeddings(body: dict[str, Any]) -> None:
    assert_the_client_sends_what_the_facade_sends(
        body, pb.EmbeddingsRequest, EMBEDDINGS_TYPED, openai_requests.embeddings_request, node_requests.embeddings_body
    )
