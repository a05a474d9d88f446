"""Nodes' accepted confidential keys in the database (`confidential_node_keys`), one row per node.

A rotation replaces the stored one only when its counter is above it: one conditional upsert, so two
core instances accepting registrations at once keep the newest, never an older one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from atoma_proxy.core.persistence.confidential_models import ConfidentialNodeKey
from atoma_proxy.core.persistence.dialects import upsert
from atoma_proxy.core.persistence.models import utcnow

__all__ = ["NodeKey", "load", "save_if_newer"]

node_keys: Table = ConfidentialNodeKey.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class NodeKey:
    node_id: str
    public_key: bytes
    rotation_counter: int
    rotation_nonce: int
    evidence: bytes
    valid_until: float  # unix time
    signing_key: bytes  # the node's Ed25519 key


async def load(session: AsyncSession, node_id: str) -> NodeKey | None:
    row = (await session.execute(select(node_keys).where(node_keys.c.node_id == node_id))).first()
    if row is None:
        return None
    return NodeKey(
        row.node_id,
        row.public_key,
        row.rotation_counter,
        int(row.rotation_nonce),
        row.evidence,
        row.valid_until.timestamp(),
        row.signing_key,
    )


async def save_if_newer(session: AsyncSession, key: NodeKey) -> NodeKey | None:
    """Store `key` unless a rotation at or above its counter is stored; None when it was not stored."""
    values = {
        "node_id": key.node_id,
        "public_key": key.public_key,
        "rotation_counter": key.rotation_counter,
        "rotation_nonce": str(key.rotation_nonce),
        "evidence": key.evidence,
        "signing_key": key.signing_key,
        "valid_until": datetime.fromtimestamp(key.valid_until, UTC),
        "registered_at": utcnow(),
    }
    statement = upsert(
        session,
        node_keys,
        values,
        key=["node_id"],
        where=lambda new: node_keys.c.rotation_counter < new.rotation_counter,
    )
    stored = await session.execute(statement.returning(node_keys.c.node_id))
    return key if stored.first() is not None else None
