"""What a confidential node signs, so the proxy can meter what it cannot read.

A node signs, for every answer and every stream chunk, the 32-byte message

    blake2b-256( "atoma-confidential-usage-v1"          (27 ASCII bytes, domain separation)
                 || plaintext_body_hash                  (32 bytes: binds the answer to the request)
                 || client_dh_public_key                 (32 bytes: one-off, so binds to this request only)
                 || response_hash                        (32 bytes: blake2b-256 of this answer's plaintext)
                 || chunk_index as u32 big-endian        (0 for a non-streamed answer)
                 || final as one byte 0x00 / 0x01       (0x01 for a non-streamed answer)
                 || canonical_usage(usage) )

with Ed25519 (RFC 8032, pynacl). The proxy verifies it with the key the node registered before it
charges `usage`; the client may verify it too (the lock tells it the node's signing key).
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from atoma_proxy.confidential.crypto import HASH_BYTES, blake2b_256

__all__ = [
    "REGISTRATION_DOMAIN",
    "SIGNATURE_BYTES",
    "USAGE_DOMAIN",
    "SignatureInvalid",
    "canonical_usage",
    "key_registration_message",
    "node_id_bytes",
    "node_small_id",
    "sign",
    "usage_message",
    "verify",
]

USAGE_DOMAIN = b"atoma-confidential-usage-v1"
REGISTRATION_DOMAIN = b"atoma-confidential-key-v1"
SIGNATURE_BYTES = 64


class SignatureInvalid(ValueError):
    """A node signature does not verify against the node's registered Ed25519 key."""


def canonical_usage(usage: Mapping[str, object] | None) -> bytes:
    """`null`, or the usage object as compact JSON with sorted keys. Values must be non-negative
    integers (token counts): anything else has no canonical form and is refused."""
    if usage is None:
        return b"null"
    for name, value in usage.items():
        if not isinstance(name, str) or type(value) is not int or value < 0:
            raise ValueError(f"usage field {name!r} must be a non-negative integer")
    return orjson.dumps(dict(usage), option=orjson.OPT_SORT_KEYS)


def usage_message(
    *,
    plaintext_body_hash: bytes,
    client_dh_public_key: bytes,
    response_hash: bytes,
    chunk_index: int,
    final: bool,
    usage: Mapping[str, object] | None,
) -> bytes:
    for value, what in ((plaintext_body_hash, "plaintext_body_hash"), (response_hash, "response_hash")):
        if len(value) != HASH_BYTES:
            raise ValueError(f"{what} must be {HASH_BYTES} bytes")
    if len(client_dh_public_key) != 32:
        raise ValueError("client_dh_public_key must be 32 bytes")
    return blake2b_256(
        USAGE_DOMAIN
        + plaintext_body_hash
        + client_dh_public_key
        + response_hash
        + chunk_index.to_bytes(4, "big")
        + (b"\x01" if final else b"\x00")
        + canonical_usage(usage)
    )


def sign(signing_key: SigningKey, message: bytes) -> bytes:
    return signing_key.sign(message).signature


def verify(verify_key: bytes, message: bytes, signature: bytes) -> None:
    if len(signature) != SIGNATURE_BYTES:
        raise SignatureInvalid("the signature must be 64 bytes")
    try:
        VerifyKey(verify_key).verify(message, signature)
    except (BadSignatureError, ValueError) as error:
        raise SignatureInvalid("the node signature does not verify") from error


def node_id_bytes(node_id: str) -> bytes:
    """A node id inside a signed message: u16 big-endian length, then its UTF-8 bytes."""
    encoded = node_id.encode()
    if not 0 < len(encoded) < 2**16:
        raise ValueError("a node id is 1 to 65535 UTF-8 bytes")
    return len(encoded).to_bytes(2, "big") + encoded


def node_small_id(node_id: str) -> int:
    """Atoma's numeric node id, derived: the first 8 bytes of blake2b-256(node id) big-endian, top bit cleared."""
    return int.from_bytes(blake2b_256(node_id.encode())[:8], "big") & (2**63 - 1)


def key_registration_message(
    *, node_id: str, rotation_counter: int, rotation_nonce: int, public_key: bytes, evidence: bytes
) -> bytes:
    """What a node signs when it registers a new X25519 key (docs/confidential.md section 6)."""
    return blake2b_256(
        REGISTRATION_DOMAIN
        + node_id_bytes(node_id)
        + rotation_counter.to_bytes(8, "big")
        + rotation_nonce.to_bytes(8, "little")
        + public_key
        + blake2b_256(evidence)
    )
