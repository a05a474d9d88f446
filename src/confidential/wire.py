"""The envelopes as protobuf messages (RoutingService's confidential RPCs), both ways.

The JSON form (REST, docs/confidential.md) and the protobuf form carry the same fields; bytes are
raw in protobuf. Conversions go through the JSON form so both are checked by the same rules.
"""

from __future__ import annotations

from typing import Any

import orjson

from atoma_proxy.confidential import envelope, signing
from atoma_proxy.generated.atoma.routing.v1 import confidential_pb2 as cpb

__all__ = ["envelope_from_proto", "envelope_to_proto", "sealed_from_proto", "sealed_to_json", "sealed_to_proto"]


def envelope_to_proto(request: envelope.ConfidentialRequest) -> cpb.ConfidentialEnvelope:
    message = cpb.ConfidentialEnvelope(
        ciphertext=request.ciphertext,
        stack_small_id=request.stack_small_id,
        nonce=request.nonce,
        salt=request.salt,
        client_dh_public_key=request.client_dh_public_key,
        node_dh_public_key=request.node_dh_public_key,
        plaintext_body_hash=request.plaintext_body_hash,
        stream=request.stream,
        model_name=request.model_name,
    )
    if request.num_compute_units is not None:
        message.num_compute_units = request.num_compute_units
    return message


def envelope_from_proto(message: cpb.ConfidentialEnvelope) -> envelope.ConfidentialRequest:
    """Raises envelope.EnvelopeError on a malformed field."""
    document: dict[str, Any] = {
        "ciphertext": envelope.b64(message.ciphertext),
        "stack_small_id": message.stack_small_id,
        "nonce": envelope.b64(message.nonce),
        "salt": envelope.b64(message.salt),
        "client_dh_public_key": envelope.b64(message.client_dh_public_key),
        "node_dh_public_key": envelope.b64(message.node_dh_public_key),
        "plaintext_body_hash": envelope.b64(message.plaintext_body_hash),
        "model_name": message.model_name,
        "stream": message.stream,
    }
    if message.HasField("num_compute_units"):
        document["num_compute_units"] = message.num_compute_units
    return envelope.ConfidentialRequest.from_json(document)


def sealed_to_proto(response: envelope.ConfidentialResponse) -> cpb.SealedResponse:
    return cpb.SealedResponse(
        ciphertext=response.ciphertext,
        nonce=response.nonce,
        signature=response.signature,
        response_hash=response.response_hash,
        usage_json=signing.canonical_usage(response.usage).decode() if response.usage is not None else "",
        chunk_index=response.chunk_index or 0,
        final=True if response.final is None else response.final,
    )


def sealed_to_json(message: cpb.SealedResponse, *, chunk: bool) -> dict[str, Any]:
    """The JSON form of a sealed answer (chunk: with chunk_index and final)."""
    document: dict[str, Any] = {
        "ciphertext": envelope.b64(message.ciphertext),
        "nonce": envelope.b64(message.nonce),
        "signature": envelope.b64(message.signature),
        "response_hash": envelope.b64(message.response_hash),
        "usage": orjson.loads(message.usage_json) if message.usage_json else None,
    }
    if chunk:
        document["chunk_index"] = message.chunk_index
        document["final"] = message.final
    return document


def sealed_from_proto(message: cpb.SealedResponse, *, chunk: bool) -> envelope.ConfidentialResponse:
    """Raises envelope.EnvelopeError on a malformed field."""
    try:
        document = sealed_to_json(message, chunk=chunk)
    except orjson.JSONDecodeError as error:
        raise envelope.EnvelopeError("`usage_json` is not JSON") from error
    return envelope.ConfidentialResponse.from_json(document, chunk=chunk)
