"""Keys committed on chain (`sui_node_public_keys`) as a source of the key registry: offered at the chain's
latest key rotation when their evidence verifies, never otherwise; a newer registration wins over them."""

from __future__ import annotations

import base64
import os

from nacl.signing import SigningKey
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.confidential import attestation, crypto
from atoma_proxy.confidential.node_keys import AuthorityAttester, NodeKeys
from atoma_proxy.core.confidential.keys import AuthorityVerifier, KeyRegistry
from atoma_proxy.core.persistence.sui_models import SuiKeyRotation, SuiNodePublicKey

NODE = "sui-7"  # a node found on chain, by its small id


async def _rotation(sessions: async_sessionmaker[AsyncSession], counter: int, nonce: int) -> None:
    async with sessions() as session, session.begin():
        session.add(SuiKeyRotation(key_rotation_counter=counter, epoch=counter, nonce=str(nonce)))


async def _commit(
    sessions: async_sessionmaker[AsyncSession], counter: int, public_key: bytes, evidence: bytes, small_id: int = 7
) -> None:
    async with sessions() as session, session.begin():
        await session.merge(
            SuiNodePublicKey(
                node_small_id=small_id,
                device_type=0,
                epoch=counter,
                key_rotation_counter=counter,
                public_key=base64.b64encode(public_key).decode(),
                evidence_bytes=base64.b64encode(evidence).decode(),
            )
        )


def _attested(authority: SigningKey, nonce: int, node_id: str = NODE) -> tuple[bytes, bytes]:
    public = crypto.public_key(crypto.new_private_key())
    evidence = AuthorityAttester(authority).evidence(node_id, attestation.report_data(nonce, public, 0), 0)
    return public, evidence


def _registry(sessions, authority: SigningKey, identity: SigningKey) -> KeyRegistry:  # type: ignore[no-untyped-def]
    return KeyRegistry(
        {NODE: bytes(identity.verify_key)},
        AuthorityVerifier(bytes(authority.verify_key)),
        sessions,
        lifetime=60,
        cache_ttl=0,
    )


async def test_a_key_committed_at_the_latest_rotation_is_offered_when_attested(sessions) -> None:  # type: ignore[no-untyped-def]
    authority, identity = SigningKey.generate(), SigningKey.generate()
    registry = _registry(sessions, authority, identity)
    nonce = int.from_bytes(os.urandom(8), "little")
    public, evidence = _attested(authority, nonce)
    await _rotation(sessions, 3, nonce)
    await _commit(sessions, 3, public, evidence)
    key = await registry.current(NODE)
    assert key is not None
    assert (key.public_key, key.rotation_counter, key.rotation_nonce) == (public, 3, nonce)
    assert key.signing_key == bytes(identity.verify_key) and key.evidence == evidence
    # the chain rotates again and the node has not committed a key for it: its old key is no longer offered
    await _rotation(sessions, 4, 99)
    assert await registry.current(NODE) is None


async def test_a_committed_key_whose_evidence_does_not_verify_is_never_offered(sessions) -> None:  # type: ignore[no-untyped-def]
    authority, identity = SigningKey.generate(), SigningKey.generate()
    registry = _registry(sessions, authority, identity)
    nonce = 12345
    await _rotation(sessions, 1, nonce)
    rogue_public, rogue_evidence = _attested(SigningKey.generate(), nonce)  # another authority
    await _commit(sessions, 1, rogue_public, rogue_evidence)
    assert await registry.current(NODE) is None
    public, _ = _attested(authority, nonce)
    _, other_evidence = _attested(authority, nonce)  # evidence bound to another key
    await _commit(sessions, 2, public, other_evidence)
    await _rotation(sessions, 2, nonce)
    assert await registry.current(NODE) is None
    stale_public, stale_evidence = _attested(authority, nonce + 1)  # bound to another rotation's nonce
    await _rotation(sessions, 3, nonce)
    await _commit(sessions, 3, stale_public, stale_evidence)
    assert await registry.current(NODE) is None


async def test_the_newest_of_registration_and_chain_commitment_is_offered(sessions) -> None:  # type: ignore[no-untyped-def]
    authority, identity = SigningKey.generate(), SigningKey.generate()
    registry = _registry(sessions, authority, identity)
    nonce = 777
    public, evidence = _attested(authority, nonce)
    await _rotation(sessions, 5, nonce)
    await _commit(sessions, 5, public, evidence)
    rotation = NodeKeys(NODE, identity, AuthorityAttester(authority)).rotate()  # counter: unix ms, far above 5
    await registry.register(
        node_id=NODE,
        rotation_counter=rotation.rotation_counter,
        rotation_nonce=rotation.rotation_nonce,
        public_key=rotation.public_key,
        evidence=rotation.evidence,
        signature=rotation.signature,
    )
    assert (await registry.current(NODE)).public_key == rotation.public_key  # type: ignore[union-attr]
    later = rotation.rotation_counter + 1  # the chain rotates past it, and the node commits a new key
    newer_public, newer_evidence = _attested(authority, 4242)
    await _rotation(sessions, later, 4242)
    await _commit(sessions, later, newer_public, newer_evidence)
    assert (await registry.current(NODE)).public_key == newer_public  # type: ignore[union-attr]


async def test_a_node_without_a_known_signing_key_gets_no_chain_key(sessions) -> None:  # type: ignore[no-untyped-def]
    authority = SigningKey.generate()
    registry = KeyRegistry({}, AuthorityVerifier(bytes(authority.verify_key)), sessions, lifetime=60, cache_ttl=0)
    public, evidence = _attested(authority, 1)
    await _rotation(sessions, 1, 1)
    await _commit(sessions, 1, public, evidence)
    assert await registry.current(NODE) is None  # its answers could not be verified
