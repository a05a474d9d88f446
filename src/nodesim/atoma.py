"""The node's side of the Atoma protocol (README "Sui"), for a simulator run with `protocol = "atoma"`.

A request must carry a valid `X-Signature` over the serde_json re-serialization of its body (from an
allowed proxy address, when some are configured), else 401, and say who pays: `X-Stack-Small-Id`
(an integer) or, for fiat, `X-User-Id`, else 400 (GET /sim/requests shows the headers). Every 200
JSON answer and every SSE chunk but `[DONE]` is signed: `signature` and `response_hash` are appended
to the object, as an Atoma node does. `bad_signature_rate` and `bad_hash_rate` tamper with answers
and chunks (from chunk `tamper_from_chunk` of a stream on), so tests can see the proxy refuse them.
"""

from __future__ import annotations

import base64
import random
from typing import Any

import orjson
from starlette.types import Message, Send

from atoma_proxy.nodesim.asgi import RequestError
from atoma_proxy.nodesim.config import SimConfig
from atoma_proxy.sui.crypto import InvalidSignature, SuiKeypair, blake2b256
from atoma_proxy.sui.node_protocol import sign_response, verify_request

__all__ = ["AtomaNode"]

_DATA = b"data: "
_DONE = b"[DONE]"


class AtomaNode:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.keypair = (
            SuiKeypair.from_keystring(config.sui_keystring) if config.sui_keystring else SuiKeypair.generate()
        )
        self._rng = random.Random(config.seed + 1)
        self.requests_refused = 0

    @property
    def address(self) -> str:
        return self.keypair.address

    def check_request(
        self, body: bytes, signature: bytes | None, user_id: bytes | None = None, stack_small_id: bytes | None = None
    ) -> RequestError | None:
        """None when the request is signed and paid for as the protocol wants, else the 401 or 400 to answer."""
        try:
            signed = verify_request(body, signature.decode("latin-1") if signature else None)
        except InvalidSignature as error:
            self.requests_refused += 1
            return RequestError(401, f"Invalid X-Signature: {error}.", code="invalid_signature")
        allowed = self.config.allowed_signers
        if allowed and signed.signer not in allowed:
            self.requests_refused += 1
            return RequestError(401, f"Signer {signed.signer} is not an allowed proxy.", code="invalid_signature")
        if stack_small_id is not None and not stack_small_id.isdigit():
            self.requests_refused += 1
            return RequestError(400, "X-Stack-Small-Id must be an integer.", code="invalid_stack")
        if stack_small_id is None and not user_id:
            self.requests_refused += 1
            return RequestError(400, "Neither X-Stack-Small-Id nor X-User-Id: nobody pays.", code="missing_payer")
        return None

    def signing_send(self, send: Send) -> Send:
        """`send`, with 200 JSON answers and SSE chunks signed on their way out."""
        state: dict[str, Any] = {"held": None, "sse": False, "chunks": 0}

        async def signed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                content_type = headers.get(b"content-type", b"")
                if message["status"] != 200:
                    await send(message)
                elif content_type.startswith(b"text/event-stream"):
                    state["sse"] = True
                    await send(message)
                else:
                    state["held"] = message  # sent with the signed body: its length changes
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            held = state["held"]
            if held is not None:
                state["held"] = None
                body = self._sign_json(message.get("body", b""), 0)
                kept = [(k, v) for k, v in held.get("headers", []) if k.lower() != b"content-length"]
                await send({**held, "headers": [*kept, (b"content-length", b"%d" % len(body))]})
                await send({**message, "body": body})
            elif state["sse"]:
                body, state["chunks"] = self._sign_events(message.get("body", b""), state["chunks"])
                await send({**message, "body": body})
            else:
                await send(message)

        return signed_send

    def _sign_events(self, piece: bytes, index: int) -> tuple[bytes, int]:
        out = []
        for event in piece.split(b"\n\n"):
            if event.startswith(_DATA) and event[len(_DATA) :].strip() != _DONE:
                event = _DATA + self._sign_json(event[len(_DATA) :], index)
                index += 1
            out.append(event)
        return b"\n\n".join(out), index

    def _sign_json(self, body: bytes, index: int) -> bytes:
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        if not isinstance(answer, dict):
            return body
        signed = sign_response(self.keypair, answer)
        if index >= self.config.tamper_from_chunk:
            if self._draw(self.config.bad_hash_rate):
                signed["response_hash"] = base64.b64encode(blake2b256(b"not this answer")).decode()
            if self._draw(self.config.bad_signature_rate):
                signed["signature"] = self.keypair.sign_hashed(blake2b256(b"not this hash"))
        return orjson.dumps(signed)

    def _draw(self, rate: float) -> bool:
        return rate > 0 and (rate >= 1 or self._rng.random() < rate)
