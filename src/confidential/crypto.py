"""The primitives, byte for byte as Atoma's atoma-utils/src/encryption.rs where they are sound.

X25519 (the client's one-off key x the node's current key) -> HKDF-SHA256(salt: 16 random bytes,
info: empty) -> a 32-byte AES-256-GCM key; 12-byte nonces; no associated data. Streams derive
one nonce per chunk (`chunk_nonce`) instead of reusing one.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nacl.bindings import crypto_scalarmult, crypto_scalarmult_base

__all__ = [
    "HASH_BYTES",
    "KEY_BYTES",
    "NONCE_BYTES",
    "SALT_BYTES",
    "TAG_BYTES",
    "DecryptionFailed",
    "blake2b_256",
    "chunk_nonce",
    "decrypt",
    "derive_key",
    "encrypt",
    "new_nonce",
    "new_private_key",
    "new_salt",
    "public_key",
    "shared_secret",
]

KEY_BYTES = 32
SALT_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
HASH_BYTES = 32


class DecryptionFailed(ValueError):
    """The ciphertext, nonce, salt or key do not match: the authentication tag does not verify."""


def blake2b_256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=HASH_BYTES).digest()


def new_private_key() -> bytes:
    return os.urandom(KEY_BYTES)


def public_key(private_key: bytes) -> bytes:
    return crypto_scalarmult_base(_check_len(private_key, KEY_BYTES, "X25519 private key"))


def shared_secret(private_key: bytes, peer_public_key: bytes) -> bytes:
    """X25519. An all-zero result (a low-order peer key) is refused by libsodium: ValueError."""
    try:
        return crypto_scalarmult(
            _check_len(private_key, KEY_BYTES, "X25519 private key"),
            _check_len(peer_public_key, KEY_BYTES, "X25519 public key"),
        )
    except Exception as error:  # nacl.exceptions.RuntimeError on a low-order point
        raise ValueError("the X25519 public key is not usable (low-order point)") from error


def derive_key(secret: bytes, salt: bytes) -> bytes:
    _check_len(salt, SALT_BYTES, "salt")
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=b"").derive(secret)


def encrypt(key: bytes, nonce: bytes, plaintext: bytes) -> bytes:
    """ciphertext || 16-byte tag, as aes-gcm's `encrypt` in Rust."""
    return AESGCM(key).encrypt(_check_len(nonce, NONCE_BYTES, "nonce"), plaintext, None)


def decrypt(key: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(_check_len(nonce, NONCE_BYTES, "nonce"), ciphertext, None)
    except InvalidTag as error:
        raise DecryptionFailed("the ciphertext does not decrypt (wrong key, nonce or salt, or tampered)") from error


def chunk_nonce(base_nonce: bytes, index: int) -> bytes:
    """The nonce of chunk `index` of a stream: the base nonce XOR the 96-bit big-endian index
    (TLS 1.3's per-record nonce, RFC 8446 section 5.3). Distinct for every index."""
    if not 0 <= index < 2**32:
        raise ValueError("chunk index out of range")
    counter = index.to_bytes(NONCE_BYTES, "big")
    return bytes(a ^ b for a, b in zip(_check_len(base_nonce, NONCE_BYTES, "nonce"), counter, strict=True))


def _check_len(value: bytes, length: int, what: str) -> bytes:
    if len(value) != length:
        raise ValueError(f"{what} must be {length} bytes, not {len(value)}")
    return value


def new_salt() -> bytes:
    return os.urandom(SALT_BYTES)


def new_nonce() -> bytes:
    return os.urandom(NONCE_BYTES)
