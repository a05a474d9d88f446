"""Sui keys, addresses and signatures, exactly as Sui defines them.

- A Sui signature is `flag || raw signature (64 bytes) || public key` in standard base64, with
  flag 0 = Ed25519 (32-byte key, 97 bytes in all), 1 = secp256k1 and 2 = secp256r1 (33-byte
  compressed keys, 98 bytes). Other flags (multisig, zkLogin, passkey) are refused here.
- An address is `0x` + hex of blake2b-256(flag || public key).
- `sign_hashed` signs bytes as they are, with no intent (Sui's `Signature::new_hashed`, what
  Atoma's `keystore.sign_hashed` does over a blake2b-256 digest). Ed25519 signs the bytes; the
  ECDSA curves sign sha256 of them (fastcrypto's default hash), deterministic (RFC 6979), low-s.
- A personal message is signed over blake2b-256(intent [3, 0, 0] || BCS vector<u8> of the message).

Signing and verification run in pysui's native crypto (pysui-fastcrypto); keystrings are parsed
by pysui (base64 `flag || private key` or bech32 `suiprivkey1...`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from enum import IntEnum

import pysui_fastcrypto as pfc
from pysui.sui.sui_crypto import keypair_from_keystring

__all__ = [
    "InvalidSignature",
    "SignatureScheme",
    "SuiKeypair",
    "SuiSignature",
    "address_of",
    "blake2b256",
    "normalize_address",
    "parse_signature",
    "personal_message_digest",
    "verify_hashed",
    "verify_personal_message",
]

_PUBLIC_KEY_LENGTHS = {0: 32, 1: 33, 2: 33}
_RAW_SIGNATURE_LENGTH = 64
PERSONAL_MESSAGE_INTENT = bytes([3, 0, 0])


class SignatureScheme(IntEnum):
    ED25519 = 0
    SECP256K1 = 1
    SECP256R1 = 2


class InvalidSignature(ValueError):
    """A signature that is malformed, of an unsupported scheme, or does not verify."""


def blake2b256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def address_of(scheme: SignatureScheme, public_key: bytes) -> str:
    """The Sui address of a public key: 0x + hex(blake2b-256(flag || public key))."""
    return "0x" + blake2b256(bytes([scheme]) + public_key).hex()


def normalize_address(address: str) -> str:
    """A Sui address in its canonical form (0x + 64 lowercase hex digits); ValueError otherwise."""
    text = address.strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    if not 0 < len(text) <= 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"not a Sui address: {address!r}")
    return "0x" + text.rjust(64, "0")


@dataclass(frozen=True)
class SuiSignature:
    """A parsed Sui signature: scheme, raw 64-byte signature and the signer's public key."""

    scheme: SignatureScheme
    signature: bytes
    public_key: bytes

    @property
    def signer(self) -> str:
        return address_of(self.scheme, self.public_key)

    def encode(self) -> str:
        return base64.b64encode(bytes([self.scheme]) + self.signature + self.public_key).decode("ascii")


def parse_signature(encoded: str) -> SuiSignature:
    """Parse a base64 Sui signature; InvalidSignature when it is not one of the three simple schemes."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise InvalidSignature("signature is not valid base64") from None
    if not raw:
        raise InvalidSignature("signature is empty")
    flag = raw[0]
    key_length = _PUBLIC_KEY_LENGTHS.get(flag)
    if key_length is None:
        raise InvalidSignature(f"unsupported signature scheme flag {flag}")
    if len(raw) != 1 + _RAW_SIGNATURE_LENGTH + key_length:
        expected = 1 + _RAW_SIGNATURE_LENGTH + key_length
        raise InvalidSignature(f"a {SignatureScheme(flag).name} signature has {expected} bytes, not {len(raw)}")
    return SuiSignature(SignatureScheme(flag), raw[1:65], raw[65:])


def verify_hashed(encoded_signature: str, message: bytes, *, signer: str | None = None) -> SuiSignature:
    """Verify a no-intent Sui signature over `message`; returns it parsed (its `signer` is the address).

    With `signer`, the signature must also come from that address. Raises InvalidSignature.
    """
    parsed = parse_signature(encoded_signature)
    if signer is not None and parsed.signer != normalize_address(signer):
        raise InvalidSignature(f"signed by {parsed.signer}, expected {normalize_address(signer)}")
    try:
        valid = pfc.verify_pubk(
            int(parsed.scheme),
            parsed.public_key,
            base64.b64encode(message).decode("ascii"),
            base64.b64encode(parsed.signature).decode("ascii"),
        )
    except ValueError:
        valid = False
    if not valid:
        raise InvalidSignature("signature does not verify")
    return parsed


def personal_message_digest(message: bytes) -> bytes:
    """blake2b-256(intent [3,0,0] || BCS vector<u8>(message)): what a Sui wallet signs for a personal message."""
    return blake2b256(PERSONAL_MESSAGE_INTENT + _uleb128(len(message)) + message)


def verify_personal_message(encoded_signature: str, message: bytes, *, signer: str | None = None) -> SuiSignature:
    """Verify a wallet's personal-message signature (Ed25519, secp256k1, secp256r1); raises InvalidSignature."""
    return verify_hashed(encoded_signature, personal_message_digest(message), signer=signer)


def _uleb128(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class SuiKeypair:
    """A Sui keypair (Ed25519, secp256k1 or secp256r1), loaded through pysui."""

    def __init__(self, scheme: SignatureScheme, private_key: bytes, public_key: bytes) -> None:
        self.scheme = scheme
        self._private_key = private_key
        self.public_key = public_key
        self.address = address_of(scheme, public_key)

    @classmethod
    def from_keystring(cls, keystring: str) -> SuiKeypair:
        """From a Sui keystring: base64(flag || 32-byte private key) or bech32 `suiprivkey1...`."""
        try:
            keypair = keypair_from_keystring(keystring.strip())
        except (ValueError, AssertionError, binascii.Error) as error:
            raise ValueError(f"not a Sui keystring: {error}") from None
        scheme = SignatureScheme(int(keypair.scheme))
        return cls(scheme, bytes(keypair.private_key.key_bytes), bytes(keypair.public_key.key_bytes))

    @classmethod
    def generate(cls, scheme: SignatureScheme = SignatureScheme.ED25519) -> SuiKeypair:
        _, public_key, private_key = pfc.generate_new_keypair(int(scheme), None, "12")
        return cls(scheme, bytes(private_key), bytes(public_key))

    def private_key_bytes(self) -> bytes:
        """The raw private key (for pysui's signing functions)."""
        return self._private_key

    def keystring(self) -> str:
        """The Sui keystore form of this key: base64(flag || private key)."""
        return base64.b64encode(bytes([self.scheme]) + self._private_key).decode("ascii")

    def sign_hashed(self, message: bytes) -> str:
        """Sign `message` (normally a 32-byte digest) with no intent: base64(flag || sig || public key)."""
        raw = pfc.sign_message(int(self.scheme), self._private_key, base64.b64encode(message).decode("ascii"))
        signature = base64.b64decode(raw)
        return SuiSignature(self.scheme, signature, self.public_key).encode()

    def sign_personal_message(self, message: bytes) -> str:
        return self.sign_hashed(personal_message_digest(message))

    def __repr__(self) -> str:
        return f"SuiKeypair({self.scheme.name}, {self.address})"
