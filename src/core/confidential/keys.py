"""The key registry: each confidential node's current X25519 key, its rotation and attestation.

A registration is accepted when the node is configured with a confidential signing key, its
Ed25519 signature verifies, its rotation counter is above the last one, and its evidence verifies
and is bound to the key (`AttestationVerifier`). Only the key of a node's latest rotation is
offered, and only until `valid_until`.

Keys live in the database (`key_store`), shared by every core instance and worker: a key registered
through one is offered by all, and survives a restart. Lookups are cached for `cache_ttl` seconds.
A key committed on chain (`sui_node_public_keys`) at the latest key rotation is a second source
(`chain_keys`), offered when its evidence verifies and the node's signing key is known.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.confidential import attestation, signing
from atoma_proxy.core.confidential import chain_keys, key_store
from atoma_proxy.core.confidential.errors import KeyRegistrationRefused
from atoma_proxy.core.confidential.key_store import NodeKey
from atoma_proxy.core.errors import InvalidRequest
from atoma_proxy.sui.crypto import SignatureScheme, address_of

__all__ = [
    "AttestationInvalid",
    "AttestationVerifier",
    "AuthorityVerifier",
    "KeyRegistry",
    "NodeKey",
    "RejectAll",
    "decode_key",
]


class AttestationInvalid(Exception):
    """The evidence does not verify, or is not bound to the registered key."""


class AttestationVerifier(Protocol):
    def verify(self, node_id: str, public_key: bytes, rotation_nonce: int, evidence: bytes) -> None:
        """Returns when `evidence` proves `public_key` lives in node `node_id`'s TEE; AttestationInvalid otherwise."""
        ...


@dataclass(frozen=True)
class AuthorityVerifier:
    """Checks evidence signed by the configured attestation authority (docs/confidential.md section 6)."""

    authority_key: bytes

    def verify(self, node_id: str, public_key: bytes, rotation_nonce: int, evidence: bytes) -> None:
        try:
            document = attestation.AuthorityEvidence.decode(evidence)
            expected = attestation.report_data(rotation_nonce, public_key, document.device_slot)
        except ValueError as error:
            raise AttestationInvalid(str(error)) from None
        if document.report_data != expected:
            raise AttestationInvalid("the evidence's report data is not bound to this key and rotation")
        try:
            signing.verify(
                self.authority_key, attestation.authority_statement(node_id, document.report_data), document.signature
            )
        except signing.SignatureInvalid:
            raise AttestationInvalid("the attestation authority's signature does not verify") from None


class RejectAll:
    """The verifier when no attestation authority is configured: no key is ever offered."""

    def verify(self, node_id: str, public_key: bytes, rotation_nonce: int, evidence: bytes) -> None:
        raise AttestationInvalid("no attestation authority is configured")


_MAX_COUNTER = 2**63 - 1  # a BIGINT
_MAX_NONCE = 2**64 - 1


def decode_key(text: str, what: str) -> bytes:
    key = base64.b64decode(text, validate=True)
    if len(key) != 32:
        raise ValueError(f"{what} must be 32 bytes in base64")
    return key


class KeyRegistry:
    def __init__(
        self,
        signing_keys: Mapping[str, bytes],
        verifier: AttestationVerifier,
        sessions: async_sessionmaker[AsyncSession],
        *,
        lifetime: float,
        sui_addresses: Mapping[str, str] | None = None,
        small_ids: Mapping[str, int] | None = None,
        cache_ttl: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`signing_keys`: nodes' configured Ed25519 keys; `sui_addresses`: nodes known by their Sui address only,
        whose registrations must then carry an Ed25519 key with that address (the node's Sui key);
        `small_ids`: nodes' small ids in the Atoma contract (their keys committed on chain are a source)."""
        self._signing_keys = dict(signing_keys)
        self._sui_addresses = {n: a for n, a in (sui_addresses or {}).items() if n not in self._signing_keys}
        self._small_ids = dict(small_ids or {})
        self._verifier = verifier
        self._sessions = sessions
        self._lifetime = lifetime
        self._cache_ttl = cache_ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, NodeKey | None]] = {}
        self._chain_verified: dict[tuple[str, int, bytes, bytes], bool] = {}

    def is_confidential(self, node_id: str) -> bool:
        return node_id in self._signing_keys or node_id in self._sui_addresses

    def add_signing_key(self, node_id: str, signing_key: bytes) -> None:
        """A node added at run time (NodeAdminService.AddNode) with its confidential signing key."""
        self._signing_keys[node_id] = signing_key
        self._sui_addresses.pop(node_id, None)
        self._cache.pop(node_id, None)

    def remove_signing_key(self, node_id: str) -> None:
        self._signing_keys.pop(node_id, None)
        self._cache.pop(node_id, None)

    def _signer(self, node_id: str, offered: bytes) -> bytes:
        """The Ed25519 key the registration of `node_id` must be signed with."""
        configured = self._signing_keys.get(node_id)
        if configured is not None:
            if offered and offered != configured:
                raise KeyRegistrationRefused("The registration names another signing key than the configured one.")
            return configured
        address = self._sui_addresses.get(node_id)
        if address is None:
            raise KeyRegistrationRefused(
                f"Node `{node_id}` has no confidential signing key or Sui address configured.",
                reason="NOT_A_CONFIDENTIAL_NODE",
            )
        if len(offered) != 32 or address_of(SignatureScheme.ED25519, offered) != address:
            raise KeyRegistrationRefused("The registration's signing key is not the node's Sui key.")
        return offered

    async def register(
        self,
        *,
        node_id: str,
        rotation_counter: int,
        rotation_nonce: int,
        public_key: bytes,
        evidence: bytes,
        signature: bytes,
        signing_key: bytes = b"",
    ) -> NodeKey:
        signing_key = self._signer(node_id, signing_key)
        if len(public_key) != 32:
            raise KeyRegistrationRefused("The public key must be 32 bytes.", reason="KEY_SIGNATURE_INVALID")
        if not 0 <= rotation_counter <= _MAX_COUNTER:
            raise InvalidRequest(f"`rotation_counter` must be at most {_MAX_COUNTER}.", param="rotation_counter")
        if not 0 <= rotation_nonce <= _MAX_NONCE:
            raise InvalidRequest("`rotation_nonce` must be a u64.", param="rotation_nonce")
        message = signing.key_registration_message(
            node_id=node_id,
            rotation_counter=rotation_counter,
            rotation_nonce=rotation_nonce,
            public_key=public_key,
            evidence=evidence,
        )
        try:
            signing.verify(signing_key, message, signature)
        except signing.SignatureInvalid:
            raise KeyRegistrationRefused("The registration's signature does not verify.") from None
        async with self._sessions() as session:
            last = await key_store.load(session, node_id)
        if last is not None and _same(last, rotation_counter, public_key, rotation_nonce, evidence):
            self._remember(last)
            return last  # the node refreshing its registration (a restarted core learns it again): no change
        if last is not None and rotation_counter <= last.rotation_counter:
            raise _not_newer(rotation_counter, last.rotation_counter)
        try:
            self._verifier.verify(node_id, public_key, rotation_nonce, evidence)
        except AttestationInvalid as error:
            raise KeyRegistrationRefused(f"Attestation refused: {error}.", reason="ATTESTATION_INVALID") from None
        key = NodeKey(
            node_id, public_key, rotation_counter, rotation_nonce, evidence, self._clock() + self._lifetime, signing_key
        )
        async with self._sessions() as session, session.begin():
            stored = await key_store.save_if_newer(session, key)
        if stored is None:  # another instance stored this rotation (or a newer one) meanwhile
            async with self._sessions() as session:
                last = await key_store.load(session, node_id)
            if last is not None and _same(last, rotation_counter, public_key, rotation_nonce, evidence):
                self._remember(last)
                return last
            raise _not_newer(rotation_counter, last.rotation_counter if last is not None else -1)
        self._remember(key)
        return key

    def _remember(self, key: NodeKey | None, node_id: str | None = None) -> None:
        self._cache[key.node_id if key is not None else node_id or ""] = (self._clock() + self._cache_ttl, key)

    async def latest(self, node_id: str, *, fresh: bool = False) -> NodeKey | None:
        """The latest accepted key, valid or not (served with its evidence); cached unless `fresh`.
        None for a node not (or no longer) confidential here, whatever is stored for it."""
        if not self.is_confidential(node_id):
            return None
        cached = self._cache.get(node_id)
        if not fresh and cached is not None and cached[0] > self._clock():
            return cached[1]
        async with self._sessions() as session:
            key = await key_store.load(session, node_id)
            committed = await self._from_chain(session, node_id, key)
        key = committed or key
        self._remember(key, node_id)
        return key

    async def current(self, node_id: str, *, fresh: bool = False) -> NodeKey | None:
        """The key offered for the node now: its latest rotation's, while valid."""
        key = await self.latest(node_id, fresh=fresh)
        return key if key is not None and key.valid_until > self._clock() else None

    async def _from_chain(self, session: AsyncSession, node_id: str, registered: NodeKey | None) -> NodeKey | None:
        """The node's key committed on chain at the latest rotation, when newer than `registered` and attested."""
        small_id = self._small_ids.get(node_id, chain_keys.small_id_of(node_id))
        signing_key = self._signing_keys.get(node_id) or (registered.signing_key if registered else None)
        if small_id is None or signing_key is None:
            return None
        committed = await chain_keys.latest_commitment(session, small_id)
        if committed is None or (registered is not None and committed.rotation_counter <= registered.rotation_counter):
            return None
        verdict_key = (node_id, committed.rotation_nonce, committed.public_key, committed.evidence)
        verified = self._chain_verified.get(verdict_key)
        if verified is None:
            try:
                self._verifier.verify(node_id, committed.public_key, committed.rotation_nonce, committed.evidence)
                verified = True
            except AttestationInvalid:
                verified = False
            if len(self._chain_verified) > 10_000:
                self._chain_verified.clear()
            self._chain_verified[verdict_key] = verified
        if not verified:
            return None
        return NodeKey(
            node_id,
            committed.public_key,
            committed.rotation_counter,
            committed.rotation_nonce,
            committed.evidence,
            self._clock() + self._lifetime,  # valid while it is the latest rotation on chain
            signing_key,
        )

    async def signing_key(self, node_id: str) -> bytes | None:
        key = await self.latest(node_id)
        return key.signing_key if key is not None else self._signing_keys.get(node_id)


def _same(key: NodeKey, rotation_counter: int, public_key: bytes, rotation_nonce: int, evidence: bytes) -> bool:
    return key.rotation_counter == rotation_counter and (key.public_key, key.rotation_nonce, key.evidence) == (
        public_key,
        rotation_nonce,
        evidence,
    )


def _not_newer(rotation_counter: int, last: int) -> KeyRegistrationRefused:
    return KeyRegistrationRefused(
        f"Rotation {rotation_counter} is not above the registered {last}.", reason="ROTATION_NOT_NEWER"
    )
