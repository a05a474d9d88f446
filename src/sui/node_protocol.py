"""The Atoma node protocol's signing rules, for both sides (the proxy's core and the node simulator).

Request (proxy -> node): the body is sent as `serde_json::to_string` of the JSON value (see
`serde_json`), and `X-Signature` is the proxy's Sui signature (no intent) over blake2b-256 of those
bytes. The node re-parses and re-serializes the body before hashing, so both sides agree on bytes
whatever spacing a sender used. Beside it: `X-Stack-Small-Id`, `X-Tx-Digest` (a new on-chain stack),
`X-User-Id` (fiat) and `X-Request-Id`.

Response (node -> proxy): every JSON answer and every streamed chunk carries `response_hash`
(base64 of blake2b-256 of the object serialized without `signature` and `response_hash`) and
`signature` (the node's Sui signature over that hash). Both are checked before anything is relayed.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from atoma_proxy.sui import serde_json
from atoma_proxy.sui.crypto import InvalidSignature, SuiKeypair, SuiSignature, blake2b256, verify_hashed

__all__ = [
    "RESPONSE_HASH_KEY",
    "SIGNATURE_KEY",
    "X_REQUEST_ID",
    "X_SIGNATURE",
    "X_STACK_SMALL_ID",
    "X_TX_DIGEST",
    "X_USER_ID",
    "InvalidSignature",
    "sign_request",
    "sign_response",
    "verify_request",
    "verify_response",
]

X_SIGNATURE = "X-Signature"
X_STACK_SMALL_ID = "X-Stack-Small-Id"
X_TX_DIGEST = "X-Tx-Digest"
X_USER_ID = "X-User-Id"
X_REQUEST_ID = "X-Request-Id"
SIGNATURE_KEY = "signature"
RESPONSE_HASH_KEY = "response_hash"


def sign_request(keypair: SuiKeypair, body: Any) -> tuple[bytes, str]:
    """The bytes to send for a JSON request body and their X-Signature."""
    data = serde_json.dumps(body)
    return data, keypair.sign_hashed(blake2b256(data))


def verify_request(body: bytes, signature: str | None, *, signer: str | None = None) -> SuiSignature:
    """Node side: the X-Signature of a request body, checked over its serde_json re-serialization."""
    if not signature:
        raise InvalidSignature("missing X-Signature")
    try:
        data = serde_json.normalize(body)
    except (ValueError, TypeError, RecursionError) as error:
        raise InvalidSignature(f"request body is not JSON: {error}") from None
    return verify_hashed(signature, blake2b256(data), signer=signer)


def sign_response(keypair: SuiKeypair, response: dict[str, Any]) -> dict[str, Any]:
    """Node side: `response` with `response_hash` and `signature` added (in place, and returned)."""
    response.pop(SIGNATURE_KEY, None)
    response.pop(RESPONSE_HASH_KEY, None)
    digest = blake2b256(serde_json.dumps(response))
    response[SIGNATURE_KEY] = keypair.sign_hashed(digest)
    response[RESPONSE_HASH_KEY] = base64.b64encode(digest).decode("ascii")
    return response


def verify_response(
    data: bytes | str | dict[str, Any], *, signer: str | None = None, check_hash: bool = True
) -> SuiSignature:
    """Proxy side: a node's JSON answer or chunk must carry a valid response_hash and signature.

    `signer`, when known (the node's registered Sui address), must be who signed. Raises
    InvalidSignature naming what is wrong.
    """
    if isinstance(data, bytes | str):
        try:
            response = json.loads(data)
        except (ValueError, RecursionError):
            raise InvalidSignature("node answer is not JSON") from None
    else:
        response = data
    if not isinstance(response, dict):
        raise InvalidSignature("node answer is not a JSON object")
    signature = response.get(SIGNATURE_KEY)
    encoded_hash = response.get(RESPONSE_HASH_KEY)
    if not isinstance(signature, str) or not isinstance(encoded_hash, str):
        raise InvalidSignature("node answer lacks signature or response_hash")
    try:
        claimed = base64.b64decode(encoded_hash, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSignature("response_hash is not base64") from None
    if len(claimed) != 32:
        raise InvalidSignature("response_hash is not a 32-byte blake2b digest")
    if check_hash:
        unsigned = {k: v for k, v in response.items() if k != SIGNATURE_KEY and k != RESPONSE_HASH_KEY}
        if blake2b256(serde_json.dumps(unsigned)) != claimed:
            raise InvalidSignature("response_hash does not match the answer")
    return verify_hashed(signature, claimed, signer=signer)
