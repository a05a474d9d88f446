"""Signed node registration (README "Sui"): a node registered on chain tells the proxy its public URL.

The node signs `{"node_small_id":…,"public_address":…,"country":…,"timestamp":…}` (serde_json,
fields in that order) with the Sui key that registered it on chain. Accepted only from that address,
with a timestamp within five minutes of the proxy's clock and newer than the node's last accepted
registration: a replayed registration (or an older one arriving late) changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from atoma_proxy.core.errors import InvalidRequest, NotFound, PermissionDenied
from atoma_proxy.core.ledger._sql import rowcount
from atoma_proxy.core.persistence.sui_models import SuiNode
from atoma_proxy.sui import serde_json
from atoma_proxy.sui.crypto import InvalidSignature, blake2b256, verify_hashed

__all__ = ["MAX_CLOCK_SKEW", "NodeRegistration", "register_node"]

MAX_CLOCK_SKEW = 300  # seconds
_U64_MAX = 2**63 - 1


@dataclass(frozen=True)
class NodeRegistration:
    node_small_id: int
    public_address: str
    country: str
    timestamp: int

    def signed_bytes(self) -> bytes:
        return serde_json.dumps(
            {
                "node_small_id": self.node_small_id,
                "public_address": self.public_address,
                "country": self.country,
                "timestamp": self.timestamp,
            }
        )

    def check(self, now: int) -> None:
        if not 0 <= self.node_small_id <= _U64_MAX:
            raise InvalidRequest("`data.node_small_id` is out of range.", param="data.node_small_id")
        url = urlsplit(self.public_address)
        if url.scheme not in ("http", "https") or not url.hostname or len(self.public_address) > 512:
            raise InvalidRequest("`data.public_address` must be an http(s) URL.", param="data.public_address")
        if url.query or url.fragment:
            raise InvalidRequest("`data.public_address` takes no query or fragment.", param="data.public_address")
        if not (len(self.country) == 2 and self.country.isascii() and self.country.isupper()):
            raise InvalidRequest("`data.country` must be an ISO 3166-1 alpha-2 code.", param="data.country")
        if abs(self.timestamp - now) > MAX_CLOCK_SKEW:
            raise InvalidRequest(
                f"`data.timestamp` must be within {MAX_CLOCK_SKEW} s of the proxy's clock.", param="data.timestamp"
            )


async def register_node(session: AsyncSession, registration: NodeRegistration, signature: str, now: int) -> str:
    """Apply a signed registration; returns the node's Sui address."""
    registration.check(now)
    node = await session.get(SuiNode, registration.node_small_id, with_for_update=True)
    if node is None or node.sui_address is None:
        raise NotFound(f"Node {registration.node_small_id} is not registered on chain.", reason="NODE_NOT_FOUND")
    try:
        verify_hashed(signature, blake2b256(registration.signed_bytes()), signer=node.sui_address)
    except InvalidSignature as error:
        raise PermissionDenied(f"Invalid node signature: {error}.", reason="INVALID_NODE_SIGNATURE") from None
    result = await session.execute(
        update(SuiNode)
        .where(
            SuiNode.node_small_id == registration.node_small_id,
            or_(
                SuiNode.registration_timestamp.is_(None),
                SuiNode.registration_timestamp < registration.timestamp,
            ),
        )
        .values(
            public_address=registration.public_address.rstrip("/"),
            country=registration.country,
            registration_timestamp=registration.timestamp,
        )
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) == 0:
        raise PermissionDenied(
            "This registration is not newer than the node's last one (a replay?).",
            reason="NODE_REGISTRATION_REPLAYED",
        )
    return node.sui_address
