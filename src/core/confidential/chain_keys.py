"""Keys committed on chain (`sui_node_public_keys`, from NodePublicKeyCommittmentEvent) as a key source.

A node's committed key counts only at the latest key rotation the chain announced (`sui_key_rotations`),
with that rotation's nonce; the registry offers it once its evidence verifies (`KeyRegistry`). When a
node committed keys for several devices at that rotation, the lowest device type's is used.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from atoma_proxy.core.persistence.sui_models import SuiKeyRotation, SuiNodePublicKey

__all__ = ["Commitment", "latest_commitment", "small_id_of"]

rotations: Table = SuiKeyRotation.__table__  # type: ignore[assignment]
public_keys: Table = SuiNodePublicKey.__table__  # type: ignore[assignment]
_CHAIN_NODE = re.compile(r"sui-(\d{1,19})")  # how nodes found on chain are named (core/sui/chain_registry)


@dataclass(frozen=True)
class Commitment:
    rotation_counter: int
    rotation_nonce: int
    public_key: bytes
    evidence: bytes


def small_id_of(node_id: str) -> int | None:
    """The small id in a chain node's name (`sui-<small id>`), else None."""
    match = _CHAIN_NODE.fullmatch(node_id)
    return int(match.group(1)) if match else None


async def latest_commitment(session: AsyncSession, node_small_id: int) -> Commitment | None:
    """The node's key committed at the chain's latest rotation, if it committed one (and it decodes)."""
    latest = (
        await session.execute(
            select(rotations.c.key_rotation_counter, rotations.c.nonce).where(
                rotations.c.key_rotation_counter == select(func.max(rotations.c.key_rotation_counter)).scalar_subquery()
            )
        )
    ).first()
    if latest is None:
        return None
    row = (
        await session.execute(
            select(public_keys.c.public_key, public_keys.c.evidence_bytes)
            .where(
                public_keys.c.node_small_id == node_small_id,
                public_keys.c.key_rotation_counter == latest.key_rotation_counter,
            )
            .order_by(public_keys.c.device_type)
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    try:
        public_key = base64.b64decode(row.public_key, validate=True)
        evidence = base64.b64decode(row.evidence_bytes, validate=True)
        nonce = int(latest.nonce)
    except (binascii.Error, ValueError):
        return None
    if len(public_key) != 32:
        return None
    return Commitment(latest.key_rotation_counter, nonce, public_key, evidence)
