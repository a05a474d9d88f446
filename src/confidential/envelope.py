"""The confidential request and response envelopes, and the two ends that seal and open them.

    client                         proxy (never decrypts)               node sidecar
    seal_request(body, node key) -> ConfidentialRequest ------------->  open_request(...) -> body
    ClientSession.open_response  <- ConfidentialResponse <------------  NodeSession.seal_response(body, usage)
    ClientSession.stream_opener  <- one ConfidentialResponse per chunk  NodeSession.stream_sealer()

Binary fields travel as standard base64 (with padding). Errors: `EnvelopeError` (a field is
missing or malformed), `crypto.DecryptionFailed`, `HashMismatch`, `StreamOutOfOrder`,
`StreamTruncated`, `signing.SignatureInvalid`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nacl.signing import SigningKey

from atoma_proxy.confidential import crypto, signing

__all__ = [
    "STREAM_END",
    "ClientSession",
    "ConfidentialRequest",
    "ConfidentialResponse",
    "EnvelopeError",
    "HashMismatch",
    "NodeSession",
    "StaleNodeKey",
    "StreamOpener",
    "StreamOutOfOrder",
    "StreamSealer",
    "StreamTruncated",
    "b64",
    "open_request",
    "seal_request",
    "unb64",
]

STREAM_END = b"[DONE]"
"""The plaintext of a stream's final chunk: encrypted like any chunk, so a proxy cannot forge the end."""


class EnvelopeError(ValueError):
    """A field of an envelope is missing or malformed."""


class HashMismatch(ValueError):
    """The decrypted body does not hash to `plaintext_body_hash` (or an answer to `response_hash`)."""


class StaleNodeKey(ValueError):
    """The request was encrypted to a node key that is not the node's current one."""


class StreamOutOfOrder(ValueError):
    """A chunk's index or nonce is not the next one: a chunk was dropped, reordered or replayed."""


class StreamTruncated(ValueError):
    """The stream ended before its final chunk."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(document: Mapping[str, Any], name: str, length: int | None = None) -> bytes:
    """Field `name` of `document`: standard base64, of `length` bytes when given; EnvelopeError otherwise."""
    value = document.get(name)
    if not isinstance(value, str):
        raise EnvelopeError(f"`{name}` must be a base64 string")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise EnvelopeError(f"`{name}` is not standard base64") from error
    if length is not None and len(data) != length:
        raise EnvelopeError(f"`{name}` must decode to {length} bytes, not {len(data)}")
    return data


def _int(document: Mapping[str, Any], name: str, *, required: bool) -> int | None:
    value = document.get(name)
    if value is None and not required:
        return None
    if type(value) is not int or value < 0:
        raise EnvelopeError(f"`{name}` must be a non-negative integer")
    return value


@dataclass(frozen=True)
class ConfidentialRequest:
    """Atoma's ConfidentialComputeRequest, field for field."""

    ciphertext: bytes
    stack_small_id: int
    nonce: bytes
    salt: bytes
    client_dh_public_key: bytes
    node_dh_public_key: bytes
    plaintext_body_hash: bytes
    model_name: str
    stream: bool = False
    num_compute_units: int | None = None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "ciphertext": b64(self.ciphertext),
            "stack_small_id": self.stack_small_id,
            "nonce": b64(self.nonce),
            "salt": b64(self.salt),
            "client_dh_public_key": b64(self.client_dh_public_key),
            "node_dh_public_key": b64(self.node_dh_public_key),
            "plaintext_body_hash": b64(self.plaintext_body_hash),
            "model_name": self.model_name,
            "stream": self.stream,
        }
        if self.num_compute_units is not None:
            document["num_compute_units"] = self.num_compute_units
        return document

    @classmethod
    def from_json(cls, document: Any) -> ConfidentialRequest:
        if not isinstance(document, Mapping):
            raise EnvelopeError("the confidential request must be a JSON object")
        model = document.get("model_name")
        if not isinstance(model, str) or not model:
            raise EnvelopeError("`model_name` must be a non-empty string")
        stream = document.get("stream", False)
        if stream is None:
            stream = False
        if not isinstance(stream, bool):
            raise EnvelopeError("`stream` must be a boolean")
        ciphertext = unb64(document, "ciphertext")
        if len(ciphertext) < crypto.TAG_BYTES:
            raise EnvelopeError("`ciphertext` is shorter than its authentication tag")
        stack = _int(document, "stack_small_id", required=True)
        assert stack is not None
        return cls(
            ciphertext=ciphertext,
            stack_small_id=stack,
            nonce=unb64(document, "nonce", crypto.NONCE_BYTES),
            salt=unb64(document, "salt", crypto.SALT_BYTES),
            client_dh_public_key=unb64(document, "client_dh_public_key", crypto.KEY_BYTES),
            node_dh_public_key=unb64(document, "node_dh_public_key", crypto.KEY_BYTES),
            plaintext_body_hash=unb64(document, "plaintext_body_hash", crypto.HASH_BYTES),
            model_name=model,
            stream=stream,
            num_compute_units=_int(document, "num_compute_units", required=False),
        )


@dataclass(frozen=True)
class ConfidentialResponse:
    """An encrypted answer, or one chunk of an encrypted stream (then `chunk_index` and `final` are set;
    a non-streamed answer is signed as chunk 0, final)."""

    ciphertext: bytes
    nonce: bytes
    signature: bytes
    response_hash: bytes
    usage: dict[str, int] | None = None
    chunk_index: int | None = None
    final: bool | None = None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "ciphertext": b64(self.ciphertext),
            "nonce": b64(self.nonce),
            "signature": b64(self.signature),
            "response_hash": b64(self.response_hash),
            "usage": self.usage,
        }
        if self.chunk_index is not None:
            document["chunk_index"] = self.chunk_index
            document["final"] = bool(self.final)
        return document

    @classmethod
    def from_json(cls, document: Any, *, chunk: bool = False) -> ConfidentialResponse:
        if not isinstance(document, Mapping):
            raise EnvelopeError("the confidential response must be a JSON object")
        usage = document.get("usage")
        if usage is not None:
            if not isinstance(usage, Mapping):
                raise EnvelopeError("`usage` must be an object or null")
            try:
                signing.canonical_usage(usage)
            except ValueError as error:
                raise EnvelopeError(str(error)) from error
            usage = dict(usage)
        index: int | None = None
        final: bool | None = None
        if chunk:
            index = _int(document, "chunk_index", required=True)
            final = document.get("final")
            if not isinstance(final, bool):
                raise EnvelopeError("`final` must be a boolean")
        return cls(
            ciphertext=unb64(document, "ciphertext"),
            nonce=unb64(document, "nonce", crypto.NONCE_BYTES),
            signature=unb64(document, "signature", signing.SIGNATURE_BYTES),
            response_hash=unb64(document, "response_hash", crypto.HASH_BYTES),
            usage=usage,
            chunk_index=index,
            final=final,
        )

    def signed_message(self, request: ConfidentialRequest) -> bytes:
        return signing.usage_message(
            plaintext_body_hash=request.plaintext_body_hash,
            client_dh_public_key=request.client_dh_public_key,
            response_hash=self.response_hash,
            chunk_index=self.chunk_index or 0,
            final=True if self.final is None else self.final,
            usage=self.usage,
        )

    def verify(self, request: ConfidentialRequest, node_signing_key: bytes) -> None:
        """What the proxy checks before it charges `usage` (raises signing.SignatureInvalid)."""
        signing.verify(node_signing_key, self.signed_message(request), self.signature)


# ---- the client's end -------------------------------------------------------------------------


@dataclass
class ClientSession:
    """What a client keeps between sealing a request and opening its answer."""

    request: ConfidentialRequest
    key: bytes
    node_signing_key: bytes | None = None

    def open_response(self, response: ConfidentialResponse) -> bytes:
        plaintext = crypto.decrypt(self.key, response.nonce, response.ciphertext)
        self._check(response, plaintext)
        return plaintext

    def stream_opener(self) -> StreamOpener:
        return StreamOpener(self)

    def _check(self, response: ConfidentialResponse, plaintext: bytes) -> None:
        if crypto.blake2b_256(plaintext) != response.response_hash:
            raise HashMismatch("the answer does not match its response_hash")
        if self.node_signing_key is not None:
            response.verify(self.request, self.node_signing_key)


@dataclass
class StreamOpener:
    """Opens a stream's chunks in order: chunk i must carry index i and nonce base XOR i (base = chunk 0's
    nonce), so a dropped, reordered or replayed chunk fails; `finish` fails unless the final chunk came."""

    session: ClientSession
    _next: int = 0
    _base: bytes | None = None
    done: bool = False
    usage: dict[str, int] | None = field(default=None)

    def open_chunk(self, chunk: ConfidentialResponse) -> bytes | None:
        """The chunk's plaintext, or None for the final chunk (whose plaintext is STREAM_END)."""
        if self.done:
            raise StreamOutOfOrder("a chunk arrived after the final chunk")
        if chunk.chunk_index != self._next:
            raise StreamOutOfOrder(f"expected chunk {self._next}, got chunk {chunk.chunk_index}")
        if self._base is None:
            self._base = chunk.nonce
        expected = crypto.chunk_nonce(self._base, self._next)
        # Decrypt with the nonce we expect, not the one sent: a replayed chunk under its own nonce fails.
        plaintext = crypto.decrypt(self.session.key, expected, chunk.ciphertext)
        self.session._check(chunk, plaintext)
        self._next += 1
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.final:
            if plaintext != STREAM_END:
                raise StreamOutOfOrder("the final chunk does not carry the end marker")
            self.done = True
            return None
        if plaintext == STREAM_END:
            raise StreamOutOfOrder("the end marker arrived in a chunk not marked final")
        return plaintext

    def finish(self) -> None:
        if not self.done:
            raise StreamTruncated(f"the stream ended after {self._next} chunks without its final chunk")


def seal_request(
    body: bytes,
    node_public_key: bytes,
    *,
    stack_small_id: int,
    model_name: str,
    stream: bool = False,
    num_compute_units: int | None = None,
    node_signing_key: bytes | None = None,
    client_private_key: bytes | None = None,
    salt: bytes | None = None,
    nonce: bytes | None = None,
) -> ClientSession:
    """Encrypts `body` to the node's key under a one-off client key. The optional key, salt and nonce
    exist for the specification's test vectors; leave them out."""
    private = client_private_key or crypto.new_private_key()
    salt = salt or crypto.new_salt()
    nonce = nonce or crypto.new_nonce()
    key = crypto.derive_key(crypto.shared_secret(private, node_public_key), salt)
    request = ConfidentialRequest(
        ciphertext=crypto.encrypt(key, nonce, body),
        stack_small_id=stack_small_id,
        nonce=nonce,
        salt=salt,
        client_dh_public_key=crypto.public_key(private),
        node_dh_public_key=node_public_key,
        plaintext_body_hash=crypto.blake2b_256(body),
        model_name=model_name,
        stream=stream,
        num_compute_units=num_compute_units,
    )
    return ClientSession(request=request, key=key, node_signing_key=node_signing_key)


# ---- the node's end ---------------------------------------------------------------------------


@dataclass
class NodeSession:
    """What a node keeps between opening a request and sealing its answer."""

    request: ConfidentialRequest
    key: bytes
    signing_key: SigningKey

    def seal_response(
        self, body: bytes, usage: Mapping[str, int] | None, *, nonce: bytes | None = None
    ) -> ConfidentialResponse:
        nonce = nonce or crypto.new_nonce()  # fresh: the request used its own nonce under the same key
        return self._seal(body, usage, nonce, None, None)

    def stream_sealer(self, *, base_nonce: bytes | None = None) -> StreamSealer:
        return StreamSealer(self, base_nonce or crypto.new_nonce())

    def _seal(
        self, body: bytes, usage: Mapping[str, int] | None, nonce: bytes, index: int | None, final: bool | None
    ) -> ConfidentialResponse:
        if nonce == self.request.nonce:
            raise ValueError("an answer must not reuse the request's nonce")
        unsigned = ConfidentialResponse(
            ciphertext=crypto.encrypt(self.key, nonce, body),
            nonce=nonce,
            signature=b"",
            response_hash=crypto.blake2b_256(body),
            usage=dict(usage) if usage is not None else None,
            chunk_index=index,
            final=final,
        )
        signature = signing.sign(self.signing_key, unsigned.signed_message(self.request))
        return ConfidentialResponse(**{**unsigned.__dict__, "signature": signature})


@dataclass
class StreamSealer:
    session: NodeSession
    base_nonce: bytes
    _next: int = 0

    @property
    def sealed(self) -> int:
        """Chunks sealed so far, the final one included."""
        return self._next

    def seal_chunk(self, body: bytes, usage: Mapping[str, int] | None = None) -> ConfidentialResponse:
        if body == STREAM_END:
            raise ValueError("a chunk cannot be the end marker; call seal_final")
        return self._seal(body, usage, final=False)

    def seal_final(self, usage: Mapping[str, int] | None) -> ConfidentialResponse:
        return self._seal(STREAM_END, usage, final=True)

    def _seal(self, body: bytes, usage: Mapping[str, int] | None, *, final: bool) -> ConfidentialResponse:
        index = self._next
        self._next += 1
        nonce = crypto.chunk_nonce(self.base_nonce, index)
        return self.session._seal(body, usage, nonce, index, final)


def open_request(
    request: ConfidentialRequest, node_private_key: bytes, signing_key: SigningKey
) -> tuple[bytes, NodeSession]:
    """Decrypts a request addressed to this node's current key and checks its plaintext hash.
    Raises StaleNodeKey, crypto.DecryptionFailed or HashMismatch."""
    if request.node_dh_public_key != crypto.public_key(node_private_key):
        raise StaleNodeKey("the request is encrypted to a node key that is not current")
    try:
        secret = crypto.shared_secret(node_private_key, request.client_dh_public_key)
    except ValueError as error:
        raise crypto.DecryptionFailed(str(error)) from error
    key = crypto.derive_key(secret, request.salt)
    body = crypto.decrypt(key, request.nonce, request.ciphertext)
    if crypto.blake2b_256(body) != request.plaintext_body_hash:
        raise HashMismatch("the decrypted body does not match plaintext_body_hash")
    return body, NodeSession(request=request, key=key, signing_key=signing_key)
