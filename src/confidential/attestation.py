"""Binding attestation evidence to a node's X25519 key, with Atoma's nonce.

    report_data = blake3( rotation_nonce as u64 little-endian || public_key (32) || device_slot as u16 little-endian )

(atoma-node's atoma-confidential; device slot 300 is an NVIDIA GPU in confidential-compute mode).
Real TEE verifiers cannot run here, so the one implemented evidence is a statement signed by an
attestation authority's Ed25519 key: `authority_statement` is the message it signs.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import blake3
import orjson

from atoma_proxy.confidential.crypto import blake2b_256
from atoma_proxy.confidential.signing import node_id_bytes

__all__ = [
    "AUTHORITY_DOMAIN",
    "AUTHORITY_EVIDENCE_TYPE",
    "NVIDIA_GPU_SLOT",
    "AuthorityEvidence",
    "authority_statement",
    "report_data",
]

NVIDIA_GPU_SLOT = 300
AUTHORITY_DOMAIN = b"atoma-attestation-authority-v1"
AUTHORITY_EVIDENCE_TYPE = "authority-statement"


def report_data(rotation_nonce: int, public_key: bytes, device_slot: int) -> bytes:
    if not 0 <= rotation_nonce < 2**64 or not 0 <= device_slot < 2**16 or len(public_key) != 32:
        raise ValueError("rotation nonce must be a u64, device slot a u16 and the public key 32 bytes")
    return blake3.blake3(rotation_nonce.to_bytes(8, "little") + public_key + device_slot.to_bytes(2, "little")).digest()


def authority_statement(node_id: str, data: bytes) -> bytes:
    """What the attestation authority signs: that `data` came out of node `node_id`'s TEE."""
    return blake2b_256(AUTHORITY_DOMAIN + node_id_bytes(node_id) + data)


@dataclass(frozen=True)
class AuthorityEvidence:
    """The evidence document: JSON {evidence_type, device_slot, report_data, signature} (base64)."""

    device_slot: int
    report_data: bytes
    signature: bytes

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "evidence_type": AUTHORITY_EVIDENCE_TYPE,
                "device_slot": self.device_slot,
                "report_data": base64.b64encode(self.report_data).decode(),
                "signature": base64.b64encode(self.signature).decode(),
            }
        )

    @classmethod
    def decode(cls, evidence: bytes) -> AuthorityEvidence:
        try:
            document = orjson.loads(evidence)
            if document.get("evidence_type") != AUTHORITY_EVIDENCE_TYPE:
                raise ValueError("unknown evidence type")
            slot = document["device_slot"]
            if type(slot) is not int:
                raise ValueError("device_slot must be an integer")
            return cls(
                device_slot=slot,
                report_data=base64.b64decode(document["report_data"], validate=True),
                signature=base64.b64decode(document["signature"], validate=True),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, binascii.Error) as error:
            raise ValueError(f"malformed attestation evidence: {error}") from error
