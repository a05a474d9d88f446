"""`atoma-proxy confidential-node`: turns any OpenAI-compatible engine into a confidential node.

    client --(ciphertext)--> proxy --(ciphertext)--> sidecar --(plaintext, loopback)--> engine

Routes: `POST /v1/confidential/{chat/completions, completions, embeddings, images/generations}`
(decrypt, check the hash, forward, encrypt every answer and chunk, sign usage and hashes),
the plain `POST /v1/...` routes passed through unchanged, `GET /health` (the engine's, and 503 until
a key is registered), `GET /metrics` (the engine's), `POST /v1/rotate-key` (on demand, Bearer admin
token). The X25519 key rotates every `rotate_every` seconds and is registered with every core.

Plaintext stays in memory: it is never written to disk or logged (logs carry sizes and reasons only),
and an engine's error message (which may quote the prompt) is not passed on.

With `protocol = "atoma"` (`--protocol atoma`) the sidecar is an Atoma-protocol node for confidential
requests: as Atoma's node does, it wants `X-Signature`, the proxy's Sui signature over the envelope's
plaintext_body_hash, from one of `proxy_addresses` (any signer when none are given). Its plain routes
then want a signed body (X-Signature over its serde_json form) and sign every answer and chunk with
the node's Sui key (`sui_keystring`; default its Ed25519 signing key as a Sui key), so the proxy's
Atoma transport accepts them.

Errors, as `{"error": {"code", "message"}}`:
  401 INVALID_SIGNATURE              Atoma protocol: X-Signature missing, invalid, or not by an allowed proxy
  400 INVALID_CONFIDENTIAL_REQUEST   the envelope is malformed
  409 STALE_NODE_KEY                 encrypted to a key that is not current
  400 CONFIDENTIAL_DECRYPTION_FAILED the ciphertext does not decrypt (tampered ciphertext, nonce, salt or key)
  400 PLAINTEXT_HASH_MISMATCH        decrypts, but not to the plaintext_body_hash
  400 INVALID_PLAINTEXT              the plaintext is not a JSON object for the envelope's model
  502 ENGINE_FAILED / 400 ENGINE_REJECTED  the engine failed or refused (its message withheld)
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from atoma_proxy.confidential import crypto, envelope
from atoma_proxy.confidential.node_keys import KeyRotation, NodeKeys
from atoma_proxy.sui.crypto import InvalidSignature, SignatureScheme, SuiKeypair, normalize_address, verify_hashed
from atoma_proxy.sui.node_protocol import sign_response, verify_request

__all__ = [
    "ENDPOINTS",
    "STREAMABLE",
    "Registrar",
    "Sidecar",
    "SidecarConfig",
    "SidecarError",
    "build_app",
    "signed_usage",
]

log = logging.getLogger(__name__)

ENDPOINTS = ("chat/completions", "completions", "embeddings", "images/generations")
STREAMABLE = ("chat/completions", "completions")
_USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


@dataclass(frozen=True)
class SidecarConfig:
    node_id: str
    engine_url: str
    core_targets: Sequence[str]
    rotate_every: float = 3600.0
    refresh_every: float = 10.0
    admin_token: str | None = None
    engine_timeout: float = 600.0
    protocol: str = "openai"  # "atoma": the proxy's X-Signature over plaintext_body_hash is required
    proxy_addresses: tuple[str, ...] = ()  # Sui addresses whose signature is accepted (atoma; empty: any)
    sui_keystring: str | None = None  # the node's Sui key for plain answers (atoma; default: the signing key)


class SidecarError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def signed_usage(answer: Any, endpoint: str) -> dict[str, int] | None:
    """The usage a node signs: the integer token counts of OpenAI's usage (images: their number)."""
    if not isinstance(answer, dict):
        return None
    if endpoint == "images/generations":
        data = answer.get("data")
        return {"images": len(data)} if isinstance(data, list) else None
    usage = answer.get("usage")
    if not isinstance(usage, dict):
        return None
    counts = {k: v for k in _USAGE_FIELDS if type(v := usage.get(k)) is int and v >= 0}
    return counts or None


class Registrar:
    """Registers key rotations with every core (RoutingService.RegisterNodeKey)."""

    def __init__(self, targets: Sequence[str], signing_key: bytes = b"") -> None:
        """`signing_key`: the node's Ed25519 public key, sent along (a proxy may know the node by its Sui address)."""
        self._targets = list(targets)
        self._signing_key = signing_key
        self._channels: list[grpc.aio.Channel] = []
        self._stubs: list[Any] = []

    def _open(self) -> None:
        """Channels belong to the running loop: opened on first use, inside the server's loop."""
        from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc

        if not self._channels:
            self._channels = [grpc.aio.insecure_channel(t) for t in self._targets]
            self._stubs = [pb_grpc.RoutingServiceStub(c) for c in self._channels]

    async def register(self, node_id: str, rotation: KeyRotation) -> None:
        from atoma_proxy.generated.atoma.routing.v1 import confidential_pb2 as cpb

        self._open()
        request = cpb.RegisterNodeKeyRequest(
            node_id=node_id,
            rotation_counter=rotation.rotation_counter,
            rotation_nonce=rotation.rotation_nonce,
            public_key=rotation.public_key,
            evidence=rotation.evidence,
            signature=rotation.signature,
            signing_key=self._signing_key,
        )
        await asyncio.gather(*(stub.RegisterNodeKey(request, timeout=10) for stub in self._stubs))

    async def aclose(self) -> None:
        for channel in self._channels:
            await channel.close()


class Sidecar:
    def __init__(self, config: SidecarConfig, keys: NodeKeys, registrar: Registrar) -> None:
        self.config = config
        self.keys = keys
        self._registrar = registrar
        self._engine = httpx.AsyncClient(base_url=config.engine_url.rstrip("/"), timeout=config.engine_timeout)
        self._rotating: asyncio.Lock | None = None
        self._timer: asyncio.Task[None] | None = None
        self.sui_key: SuiKeypair | None = None
        if config.protocol == "atoma":
            self.sui_key = (
                SuiKeypair.from_keystring(config.sui_keystring)
                if config.sui_keystring
                else SuiKeypair(SignatureScheme.ED25519, bytes(keys.identity), bytes(keys.identity.verify_key))
            )

    # ---- keys ---------------------------------------------------------------------------------

    async def rotate(self) -> KeyRotation:  # also on demand: POST /v1/rotate-key
        """A new key, registered with every core, then current. On failure the old key stays."""
        if self._rotating is None:
            self._rotating = asyncio.Lock()
        async with self._rotating:
            rotation = self.keys.rotate()
            await self._registrar.register(self.config.node_id, rotation)
            self.keys.registered(rotation)
            log.info("key rotated: counter %d", rotation.rotation_counter)
            return rotation

    async def _rotate_forever(self) -> None:
        """Rotates every `rotate_every` seconds; in between, re-sends the current registration every
        `refresh_every` seconds, so a core whose database lost the key (or a new one) learns it again."""
        next_rotation = 0.0
        loop = asyncio.get_running_loop()
        while True:
            current = self.keys.current
            try:
                if current is None or loop.time() >= next_rotation:
                    await self.rotate()
                    next_rotation = loop.time() + self.config.rotate_every
                else:
                    await self._registrar.register(self.config.node_id, current)
                delay = min(self.config.refresh_every, max(0.0, next_rotation - loop.time()))
            except (grpc.RpcError, OSError) as error:
                code = error.code() if isinstance(error, grpc.aio.AioRpcError) else error
                log.warning("key registration failed (%s); retrying", code)
                delay = min(self.config.refresh_every, 1.0)
            await asyncio.sleep(delay)

    async def start(self) -> None:
        self._timer = asyncio.create_task(self._rotate_forever(), name="confidential-key-rotation")

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        await self._engine.aclose()
        await self._registrar.aclose()

    # ---- routes -------------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        if self.keys.current is None:
            return _error(503, "NO_KEY_REGISTERED", "the node has not registered a confidential key yet")
        try:
            engine = await self._engine.get("/health", timeout=5)
        except httpx.HTTPError:
            return _error(503, "ENGINE_UNREACHABLE", "the engine does not answer")
        if engine.status_code != 200:
            return _error(503, "ENGINE_UNHEALTHY", f"the engine answered {engine.status_code}")
        return JSONResponse({"status": "ok", "rotation_counter": self.keys.current.rotation_counter})

    async def metrics(self, request: Request) -> Response:
        try:
            engine = await self._engine.get("/metrics", timeout=5)
        except httpx.HTTPError:
            return Response(status_code=503)
        return Response(engine.content, status_code=engine.status_code, media_type=engine.headers.get("content-type"))

    async def rotate_key(self, request: Request) -> Response:
        token = self.config.admin_token
        supplied = request.headers.get("authorization", "").removeprefix("Bearer ")
        if not token or not hmac.compare_digest(supplied.encode(), token.encode()):
            return _error(401, "UNAUTHORIZED", "a valid admin token is required")
        try:
            rotation = await self.rotate()
        except grpc.RpcError:
            return _error(502, "REGISTRATION_FAILED", "the proxy did not accept the new key")
        return JSONResponse(
            {"rotation_counter": rotation.rotation_counter, "public_key": envelope.b64(rotation.public_key)}
        )

    async def plain(self, request: Request) -> Response:
        """Plain OpenAI requests pass through (the node serves both kinds); Atoma protocol: signed both ways."""
        path, raw = request.url.path, await request.body()
        if self.sui_key is not None:
            try:
                signed = verify_request(raw, request.headers.get("x-signature"))
                self._check_signer(signed.signer)
            except InvalidSignature as error:
                return _error(401, "INVALID_SIGNATURE", str(error))
            except SidecarError as error:
                return _error(error.status, error.code, error.message)
        upstream = self._engine.build_request("POST", path, content=raw, headers={"content-type": "application/json"})
        try:
            response = await self._engine.send(upstream, stream=True)
        except httpx.HTTPError:
            return _error(502, "ENGINE_FAILED", "the engine does not answer")
        if self.sui_key is not None and response.status_code == 200:
            return await self._signed_plain(response, self.sui_key)

        async def body() -> AsyncIterator[bytes]:
            try:
                async for piece in response.aiter_raw():
                    yield piece
            finally:
                await response.aclose()

        return StreamingResponse(
            body(), status_code=response.status_code, media_type=response.headers.get("content-type")
        )

    async def _signed_plain(self, response: httpx.Response, key: SuiKeypair) -> Response:
        """The engine's 200 answer with `signature` and `response_hash` added, to it or to each SSE chunk."""
        media_type = response.headers.get("content-type", "")
        if not media_type.startswith("text/event-stream"):
            try:
                answer = orjson.loads(await response.aread())
            except (orjson.JSONDecodeError, httpx.HTTPError):
                return _error(502, "ENGINE_FAILED", "the engine answered something that is not JSON")
            finally:
                await response.aclose()
            signed = sign_response(key, answer) if isinstance(answer, dict) else answer
            return Response(orjson.dumps(signed), media_type="application/json")

        async def events() -> AsyncIterator[bytes]:
            try:
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data != "[DONE]":
                        with contextlib.suppress(orjson.JSONDecodeError):
                            chunk = orjson.loads(data)
                            if isinstance(chunk, dict):
                                data = orjson.dumps(sign_response(key, chunk)).decode()
                    yield f"data: {data}\n\n".encode()
            except httpx.HTTPError:
                return  # the stream ends short: the proxy sees no [DONE]
            finally:
                await response.aclose()

        return StreamingResponse(events(), media_type="text/event-stream")

    async def confidential(self, request: Request) -> Response:
        endpoint = request.url.path.removeprefix("/v1/confidential/")
        try:
            sealed, session, body = self._open(endpoint, await request.body(), request.headers.get("x-signature"))
        except SidecarError as error:
            log.info("confidential %s refused: %s", endpoint, error.code)
            return _error(error.status, error.code, error.message)
        if sealed.stream:
            return StreamingResponse(self._stream(endpoint, session, body), media_type="text/event-stream")
        try:
            answer = await self._engine.post(f"/v1/{endpoint}", content=orjson.dumps(body))
        except httpx.HTTPError:
            return _error(502, "ENGINE_FAILED", "the engine does not answer")
        if answer.status_code != 200:
            return _engine_error(answer.status_code)
        try:
            parsed = orjson.loads(answer.content)
        except orjson.JSONDecodeError:
            return _error(502, "ENGINE_FAILED", "the engine answered something that is not JSON")
        response = session.seal_response(answer.content, signed_usage(parsed, endpoint))
        log.info("confidential %s answered (%d bytes sealed)", endpoint, len(response.ciphertext))
        return JSONResponse(response.to_json())

    def _open(
        self, endpoint: str, raw: bytes, signature: str | None = None
    ) -> tuple[envelope.ConfidentialRequest, envelope.NodeSession, dict[str, Any]]:
        try:
            sealed = envelope.ConfidentialRequest.from_json(orjson.loads(raw))
        except (orjson.JSONDecodeError, envelope.EnvelopeError) as error:
            raise SidecarError(400, "INVALID_CONFIDENTIAL_REQUEST", str(error)) from None
        if self.config.protocol == "atoma":
            self._check_signature(sealed.plaintext_body_hash, signature)
        if sealed.stream and endpoint not in STREAMABLE:
            raise SidecarError(400, "INVALID_CONFIDENTIAL_REQUEST", f"{endpoint} does not stream")
        private = self.keys.private_key_for(sealed.node_dh_public_key)
        if private is None:
            raise SidecarError(409, "STALE_NODE_KEY", "the request is encrypted to a key this node no longer holds")
        try:
            plaintext, session = envelope.open_request(sealed, private, self.keys.identity)
        except crypto.DecryptionFailed:
            raise SidecarError(400, "CONFIDENTIAL_DECRYPTION_FAILED", "the ciphertext does not decrypt") from None
        except envelope.HashMismatch:
            raise SidecarError(400, "PLAINTEXT_HASH_MISMATCH", "the plaintext does not match its hash") from None
        try:
            body = orjson.loads(plaintext)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or body.get("model") != sealed.model_name:
            raise SidecarError(400, "INVALID_PLAINTEXT", "the plaintext is not a request for the envelope's model")
        body["stream"] = sealed.stream  # the node does what the proxy relays and meters
        if sealed.stream:
            body["stream_options"] = {"include_usage": True}
        if sealed.num_compute_units is not None and endpoint in STREAMABLE:
            cap = sealed.num_compute_units
            for name in ("max_tokens", "max_completion_tokens"):
                if type(body.get(name)) is int and body[name] > cap:
                    body[name] = cap
            if "max_tokens" not in body and "max_completion_tokens" not in body:
                body["max_tokens"] = cap
        return sealed, session, body

    def _check_signature(self, plaintext_body_hash: bytes, signature: str | None) -> None:
        """The proxy's Sui signature over the body hash (no intent, as Atoma's proxy signs it), by an allowed signer."""
        if not signature:
            raise SidecarError(401, "INVALID_SIGNATURE", "X-Signature is missing")
        try:
            signed = verify_hashed(signature, plaintext_body_hash)
        except InvalidSignature as error:
            raise SidecarError(401, "INVALID_SIGNATURE", f"X-Signature does not verify: {error}") from None
        self._check_signer(signed.signer)

    def _check_signer(self, signer: str) -> None:
        allowed = self.config.proxy_addresses
        if allowed and signer not in {normalize_address(a) for a in allowed}:
            raise SidecarError(401, "INVALID_SIGNATURE", f"{signer} is not an allowed proxy")

    async def _stream(self, endpoint: str, session: envelope.NodeSession, body: dict[str, Any]) -> AsyncIterator[bytes]:
        sealer = session.stream_sealer()
        usage: dict[str, int] | None = None
        try:
            async with self._engine.stream("POST", f"/v1/{endpoint}", content=orjson.dumps(body)) as answer:
                if answer.status_code != 200:
                    yield _sse(
                        {"error": {"code": "ENGINE_FAILED", "message": f"the engine answered {answer.status_code}"}}
                    )
                    return
                async for line in answer.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip().encode()
                    if data == b"[DONE]":
                        break
                    with contextlib.suppress(orjson.JSONDecodeError):
                        usage = signed_usage(orjson.loads(data), endpoint) or usage
                    yield _sse(sealer.seal_chunk(data, usage).to_json())
        except httpx.HTTPError:
            yield _sse({"error": {"code": "ENGINE_FAILED", "message": "the engine stream broke"}})
            return
        yield _sse(sealer.seal_final(usage).to_json())
        log.info("confidential %s stream sealed (%d chunks)", endpoint, sealer.sealed)


def _sse(document: Any) -> bytes:
    return b"data: " + orjson.dumps(document) + b"\n\n"


def _engine_error(status: int) -> JSONResponse:
    if status == 429 or status >= 500:
        return _error(502, "ENGINE_FAILED", f"the engine answered {status}")
    return _error(400, "ENGINE_REJECTED", f"the engine refused the request ({status}); its message is withheld")


def build_app(sidecar: Sidecar) -> Starlette:
    routes = [
        Route("/health", sidecar.health, methods=["GET"]),
        Route("/metrics", sidecar.metrics, methods=["GET"]),
        Route("/v1/rotate-key", sidecar.rotate_key, methods=["POST"]),
        *(Route(f"/v1/confidential/{e}", sidecar.confidential, methods=["POST"]) for e in ENDPOINTS),
        *(Route(f"/v1/{e}", sidecar.plain, methods=["POST"]) for e in ENDPOINTS),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await sidecar.start()
        try:
            yield
        finally:
            await sidecar.stop()

    return Starlette(routes=routes, lifespan=lifespan)
