"""HTTP to confidential sidecars: the envelope goes as it came, the sealed answer comes back as JSON.

The sidecar's error codes become the confidential errors (errors.py); an unreachable or failing
node is NodeFailed, a refusal by the engine NodeRejectedRequest. A node configured
`protocol = "atoma"` gets what Atoma's proxy sends it: `X-Signature`, the proxy's Sui signature over
the envelope's plaintext_body_hash, and `X-User-Id`; a sidecar run with `--protocol atoma` refuses
a request whose signature does not verify (401 INVALID_SIGNATURE, a node failure here).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from atoma_proxy.config import CoreSettings
from atoma_proxy.core.confidential.errors import NodeAnswerInvalid, StaleNodeKey, TamperedRequest
from atoma_proxy.core.errors import NodeFailed, NodeRejectedRequest, NodeTimeout, ProxyError
from atoma_proxy.core.nodes.registry import Node
from atoma_proxy.sui.crypto import SuiKeypair
from atoma_proxy.wire.metadata import AUTHORIZATION, REQUEST_ID

__all__ = ["ConfidentialNodeClient", "node_error"]

_TAMPERED = {
    "PLAINTEXT_HASH_MISMATCH",
    "CONFIDENTIAL_DECRYPTION_FAILED",
    "INVALID_PLAINTEXT",
    "INVALID_CONFIDENTIAL_REQUEST",
}
_MAX_EVENT = 64 * 1024 * 1024


def node_error(node: Node, status: int, body: bytes) -> ProxyError:
    try:
        error = orjson.loads(body).get("error", {})
        code, message = str(error.get("code", "")), str(error.get("message", ""))
    except (orjson.JSONDecodeError, AttributeError):
        code, message = "", ""
    if code == "STALE_NODE_KEY":
        return StaleNodeKey(f"Node {node.id} has rotated its key: lock again. ({message})")
    if code in _TAMPERED:
        return TamperedRequest(f"Node {node.id} refused the request: {message}.", reason=code)
    if code == "ENGINE_REJECTED":
        return NodeRejectedRequest(message or f"Node {node.id} refused the request.")
    return NodeFailed(f"Node {node.id} failed: {message or f'HTTP {status}'}.", metadata={"node_status": str(status)})


class ConfidentialNodeClient:
    def __init__(self, settings: CoreSettings, keypair: SuiKeypair | None = None) -> None:
        """`keypair`: the proxy's Sui key, which signs what goes to Atoma-protocol nodes."""
        timeout = httpx.Timeout(settings.node_read_timeout, connect=settings.node_connect_timeout)
        self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._keypair = keypair

    def _headers(self, node: Node, request_id: str, envelope: dict[str, Any], user_id: str) -> dict[str, str]:
        headers = {"content-type": "application/json", REQUEST_ID: request_id}
        if node.api_key:
            headers[AUTHORIZATION] = f"Bearer {node.api_key}"
        if node.protocol == "atoma":
            headers["x-signature"] = self._sign(node, envelope)
            if user_id:
                headers["x-user-id"] = user_id
        return headers

    def _sign(self, node: Node, envelope: dict[str, Any]) -> str:
        if self._keypair is None:
            raise NodeFailed(f"Node {node.id} speaks the Atoma protocol, and the proxy has no Sui key to sign with.")
        try:
            digest = base64.b64decode(envelope["plaintext_body_hash"], validate=True)
        except (KeyError, TypeError, binascii.Error):
            raise NodeFailed("The envelope has no plaintext_body_hash to sign.") from None
        return self._keypair.sign_hashed(digest)

    async def post(
        self, node: Node, endpoint: str, envelope: dict[str, Any], *, request_id: str, user_id: str = ""
    ) -> Any:
        try:
            response = await self._http.post(
                f"{node.url}/v1/confidential/{endpoint}",
                content=orjson.dumps(envelope),
                headers=self._headers(node, request_id, envelope, user_id),
            )
        except httpx.TimeoutException as error:
            raise NodeTimeout(f"Node {node.id} did not answer in time.") from error
        except httpx.HTTPError as error:
            raise NodeFailed(f"Node {node.id} is unreachable.") from error
        if response.status_code != 200:
            raise node_error(node, response.status_code, response.content)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise NodeAnswerInvalid(f"Node {node.id} answered something that is not JSON.") from None

    async def stream(
        self, node: Node, endpoint: str, envelope: dict[str, Any], *, request_id: str, user_id: str = ""
    ) -> AsyncIterator[Any]:
        """The sidecar's SSE events, parsed; an `{"error": ...}` event raises."""
        request = self._http.build_request(
            "POST",
            f"{node.url}/v1/confidential/{endpoint}",
            content=orjson.dumps(envelope),
            headers={**self._headers(node, request_id, envelope, user_id), "accept": "text/event-stream"},
        )
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TimeoutException as error:
            raise NodeTimeout(f"Node {node.id} did not answer in time.") from error
        except httpx.HTTPError as error:
            raise NodeFailed(f"Node {node.id} is unreachable.") from error
        try:
            if response.status_code != 200:
                raise node_error(node, response.status_code, await response.aread())
            try:
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    try:
                        event = orjson.loads(line[5:])
                    except orjson.JSONDecodeError:
                        raise NodeAnswerInvalid(
                            f"Node {node.id} sent an event that is not JSON.", reason="NODE_STREAM_INVALID"
                        ) from None
                    if isinstance(event, dict) and "error" in event:
                        raise node_error(node, 502, orjson.dumps(event))
                    yield event
            except httpx.TimeoutException as error:
                raise NodeTimeout(f"Node {node.id} stopped streaming.") from error
            except httpx.HTTPError as error:
                raise NodeFailed(f"Node {node.id} broke the stream.") from error
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
