"""The key registry: which registrations it accepts, and which keys it offers (stored in a real database)."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from atoma_proxy.confidential import crypto
from atoma_proxy.confidential.node_keys import AuthorityAttester, NodeKeys
from atoma_proxy.core.confidential.errors import KeyRegistrationRefused
from atoma_proxy.core.confidential.keys import AuthorityVerifier, KeyRegistry, RejectAll


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(sessions):  # type: ignore[no-untyped-def]
    authority, identity, clock = SigningKey.generate(), SigningKey.generate(), Clock()
    registry = KeyRegistry(
        {"n1": bytes(identity.verify_key)},
        AuthorityVerifier(bytes(authority.verify_key)),
        sessions,
        lifetime=60,
        cache_ttl=0,
        clock=clock,
    )
    keys = NodeKeys("n1", identity, AuthorityAttester(authority))
    return registry, keys, authority, identity, clock


async def _register(registry: KeyRegistry, rotation, node_id: str = "n1", **changes):  # type: ignore[no-untyped-def]
    fields = {
        "node_id": node_id,
        "rotation_counter": rotation.rotation_counter,
        "rotation_nonce": rotation.rotation_nonce,
        "public_key": rotation.public_key,
        "evidence": rotation.evidence,
        "signature": rotation.signature,
    }
    return await registry.register(**{**fields, **changes})


async def test_a_signed_attested_rotation_is_offered_until_it_expires(setup) -> None:  # type: ignore[no-untyped-def]
    registry, keys, _, _, clock = setup
    rotation = keys.rotate()
    await _register(registry, rotation)
    current = await registry.current("n1")
    assert current is not None and current.public_key == rotation.public_key
    clock.now += 61
    assert await registry.current("n1") is None and await registry.latest("n1") is not None


async def test_only_the_latest_rotation_is_offered_and_counters_must_grow(setup) -> None:  # type: ignore[no-untyped-def]
    registry, keys, *_ = setup
    first, second = keys.rotate(), keys.rotate()
    await _register(registry, second)
    with pytest.raises(KeyRegistrationRefused) as refused:
        await _register(registry, first)
    assert refused.value.reason == "ROTATION_NOT_NEWER"
    assert (await registry.current("n1")).public_key == second.public_key  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"signature": bytes(64)}, "KEY_SIGNATURE_INVALID"),
        ({"public_key": crypto.public_key(crypto.new_private_key())}, "KEY_SIGNATURE_INVALID"),
        ({"node_id": "n2"}, "NOT_A_CONFIDENTIAL_NODE"),
    ],
)
async def test_bad_registrations_are_refused(setup, change, reason) -> None:  # type: ignore[no-untyped-def]
    registry, keys, *_ = setup
    with pytest.raises(KeyRegistrationRefused) as refused:
        await _register(registry, keys.rotate(), **change)
    assert refused.value.reason == reason
    assert await registry.current("n1") is None


async def test_evidence_not_bound_to_the_key_or_from_another_authority_is_refused(setup) -> None:  # type: ignore[no-untyped-def]
    registry, _, authority, identity, _ = setup
    # evidence for another key, correctly signed by the authority and by the node: the binding fails
    other = NodeKeys("n1", identity, AuthorityAttester(authority)).rotate()
    mine = NodeKeys("n1", identity, AuthorityAttester(authority)).rotate()
    from atoma_proxy.confidential import signing

    message = signing.key_registration_message(
        node_id="n1",
        rotation_counter=mine.rotation_counter,
        rotation_nonce=mine.rotation_nonce,
        public_key=mine.public_key,
        evidence=other.evidence,
    )
    with pytest.raises(KeyRegistrationRefused) as refused:
        await _register(registry, mine, evidence=other.evidence, signature=identity.sign(message).signature)
    assert refused.value.reason == "ATTESTATION_INVALID"
    # evidence from an authority the proxy does not trust
    rogue = NodeKeys("n1", identity, AuthorityAttester(SigningKey.generate())).rotate()
    with pytest.raises(KeyRegistrationRefused) as refused:
        await _register(registry, rogue)
    assert refused.value.reason == "ATTESTATION_INVALID"


async def test_without_an_authority_no_key_is_ever_offered(sessions) -> None:  # type: ignore[no-untyped-def]
    identity = SigningKey.generate()
    registry = KeyRegistry({"n1": bytes(identity.verify_key)}, RejectAll(), sessions, lifetime=60)
    rotation = NodeKeys("n1", identity, AuthorityAttester(SigningKey.generate())).rotate()
    with pytest.raises(KeyRegistrationRefused):
        await _register(registry, rotation)
    assert await registry.current("n1") is None


def test_the_sidecar_accepts_only_its_current_and_pending_keys(setup) -> None:  # type: ignore[no-untyped-def]
    _, keys, *_ = setup
    first = keys.rotate()
    keys.registered(first)
    second = keys.rotate()  # being registered: already accepted
    assert keys.private_key_for(first.public_key) == first.private_key
    assert keys.private_key_for(second.public_key) == second.private_key
    keys.registered(second)
    assert keys.private_key_for(first.public_key) is None  # stale now


async def test_a_repeated_registration_is_an_idempotent_refresh(setup) -> None:  # type: ignore[no-untyped-def]
    registry, keys, _, _, clock = setup
    rotation = keys.rotate()
    first = await _register(registry, rotation)
    clock.now += 30
    assert await _register(registry, rotation) == first  # same key, validity not extended by a replay
    clock.now += 31
    assert await registry.current("n1") is None


async def test_a_node_known_by_its_sui_address_registers_with_its_sui_key(sessions) -> None:  # type: ignore[no-untyped-def]
    from atoma_proxy.sui.crypto import SignatureScheme, address_of

    authority, sui_key = SigningKey.generate(), SigningKey.generate()
    address = address_of(SignatureScheme.ED25519, bytes(sui_key.verify_key))
    registry = KeyRegistry(
        {}, AuthorityVerifier(bytes(authority.verify_key)), sessions, lifetime=60, sui_addresses={"sui-node": address}
    )
    assert registry.is_confidential("sui-node")
    rotation = NodeKeys("sui-node", sui_key, AuthorityAttester(authority)).rotate()
    with pytest.raises(KeyRegistrationRefused):  # no key offered: the address alone cannot verify
        await _register(registry, rotation, node_id="sui-node")
    impostor = SigningKey.generate()
    forged = NodeKeys("sui-node", impostor, AuthorityAttester(authority)).rotate()
    with pytest.raises(KeyRegistrationRefused) as refused:  # a key that is not the address's
        await _register(registry, forged, node_id="sui-node", signing_key=bytes(impostor.verify_key))
    assert refused.value.reason == "KEY_SIGNATURE_INVALID"
    key = await _register(registry, rotation, node_id="sui-node", signing_key=bytes(sui_key.verify_key))
    assert key.signing_key == bytes(sui_key.verify_key) == await registry.signing_key("sui-node")


async def test_a_configured_key_is_not_replaced_by_the_one_offered(setup) -> None:  # type: ignore[no-untyped-def]
    registry, keys, *_ = setup
    with pytest.raises(KeyRegistrationRefused):
        await _register(registry, keys.rotate(), signing_key=bytes(SigningKey.generate().verify_key))
