"""The key registry: each confidential node's current X25519 key, its rotation and attestation.

A registration is accepted when the node is configured with a confidential signing key, its
Ed25519 signature verifies, its rotation counter is above the last one, and its evidence verifies
and is bound to the key (`AttestationVerifier`). Only the key of a node's latest rotation is
offered, and only until `valid_until`.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from atoma_proxy.confidential import attestation, signing
from atoma_proxy.core.confidential.errors import KeyRegistrationRefused
from atoma_proxy.sui.crypto import SignatureScheme, address_of


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


@dataclass(frozen=True)
class NodeKey:
    node_id: str
    public_key: bytes
    rotation_counter: int
    rotation_nonce: int
    evidence: bytes
    valid_until: float  # unix time
    signing_key: bytes  # the node's Ed25519 key


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
        *,
        lifetime: float,
        sui_addresses: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`signing_keys`: nodes' configured Ed25519 keys; `sui_addresses`: nodes known by their Sui address only,
        whose registrations must then carry an Ed25519 key with that address (the node's Sui key)."""
        self._signing_keys = dict(signing_keys)
        self._sui_addresses = {n: a for n, a in (sui_addresses or {}).items() if n not in self._signing_keys}
        self._verifier = verifier
        self._lifetime = lifetime
        self._clock = clock
        self._keys: dict[str, NodeKey] = {}

    def is_confidential(self, node_id: str) -> bool:
        return node_id in self._signing_keys or node_id in self._sui_addresses

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

    def register(
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
        last = self._keys.get(node_id)
        if (
            last is not None
            and rotation_counter == last.rotation_counter
            and (public_key, rotation_nonce, evidence) == (last.public_key, last.rotation_nonce, last.evidence)
        ):
            return last  # the node refreshing its registration (a restarted core learns it again): no change
        if last is not None and rotation_counter <= last.rotation_counter:
            raise KeyRegistrationRefused(
                f"Rotation {rotation_counter} is not above the registered {last.rotation_counter}.",
                reason="ROTATION_NOT_NEWER",
            )
        try:
            self._verifier.verify(node_id, public_key, rotation_nonce, evidence)
        except AttestationInvalid as error:
            raise KeyRegistrationRefused(f"Attestation refused: {error}.", reason="ATTESTATION_INVALID") from None
        key = NodeKey(
            node_id, public_key, rotation_counter, rotation_nonce, evidence, self._clock() + self._lifetime, signing_key
        )
        self._keys[node_id] = key
        return key

    def current(self, node_id: str) -> NodeKey | None:
        """The key offered for the node now: its latest rotation's, while valid."""
        key = self._keys.get(node_id)
        return key if key is not None and key.valid_until > self._clock() else None

    def latest(self, node_id: str) -> NodeKey | None:
        """The latest registration, valid or not (served with its evidence)."""
        return self._keys.get(node_id)

    def signing_key(self, node_id: str) -> bytes | None:
        key = self._keys.get(node_id)
        return key.signing_key if key is not None else self._signing_keys.get(node_id)
