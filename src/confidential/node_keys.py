"""A confidential node's keys: its Ed25519 identity and the X25519 key it rotates.

`NodeKeys.rotate()` makes a new X25519 key with its attestation evidence and a registration signed
by the identity key; the key becomes current once `registered()` is called (after the proxy
accepted it), and requests encrypted to the key being registered are already accepted (a client may
lock it before the sidecar hears back). Private keys live in memory only.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Protocol

from nacl.signing import SigningKey

from atoma_proxy.confidential import attestation, crypto, signing

__all__ = ["Attester", "AuthorityAttester", "KeyRotation", "NodeKeys"]


class Attester(Protocol):
    """Produces evidence that `report_data` came out of this node's TEE."""

    def evidence(self, node_id: str, report_data: bytes, device_slot: int) -> bytes: ...


@dataclass(frozen=True)
class AuthorityAttester:
    """Evidence signed by an attestation authority's key (the simulation of a TEE quote: see
    docs/confidential.md section 6). Real deployments plug in a TEE-backed `Attester`."""

    authority: SigningKey

    def evidence(self, node_id: str, report_data: bytes, device_slot: int) -> bytes:
        statement = attestation.authority_statement(node_id, report_data)
        signature = self.authority.sign(statement).signature
        return attestation.AuthorityEvidence(device_slot, report_data, signature).encode()


@dataclass(frozen=True)
class KeyRotation:
    """One X25519 key and what registers it."""

    private_key: bytes
    public_key: bytes
    rotation_counter: int
    rotation_nonce: int
    evidence: bytes
    signature: bytes


class NodeKeys:
    def __init__(
        self, node_id: str, identity: SigningKey, attester: Attester, *, device_slot: int = attestation.NVIDIA_GPU_SLOT
    ) -> None:
        self.node_id = node_id
        self.identity = identity
        self._attester = attester
        self._device_slot = device_slot
        self.current: KeyRotation | None = None
        self.pending: KeyRotation | None = None
        self._last_counter = 0

    def rotate(self) -> KeyRotation:
        private = crypto.new_private_key()
        public = crypto.public_key(private)
        # Unix milliseconds: grows across restarts too, as the proxy requires.
        counter = self._last_counter = max(self._last_counter + 1, int(time.time() * 1000))
        nonce = int.from_bytes(os.urandom(8), "little")
        evidence = self._attester.evidence(
            self.node_id, attestation.report_data(nonce, public, self._device_slot), self._device_slot
        )
        message = signing.key_registration_message(
            node_id=self.node_id, rotation_counter=counter, rotation_nonce=nonce, public_key=public, evidence=evidence
        )
        self.pending = KeyRotation(private, public, counter, nonce, evidence, self.identity.sign(message).signature)
        return self.pending

    def registered(self, rotation: KeyRotation) -> None:
        """The proxy accepted `rotation`: it is the current key, the one before it is dropped."""
        self.current = rotation
        if self.pending is rotation:
            self.pending = None

    def private_key_for(self, public_key: bytes) -> bytes | None:
        """The private key of a current or pending public key; None for any other (stale) key."""
        for rotation in (self.current, self.pending):
            if rotation is not None and rotation.public_key == public_key:
                return rotation.private_key
        return None
