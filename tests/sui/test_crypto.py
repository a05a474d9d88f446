"""Sui keys, addresses and signatures against published vectors (Sui's TypeScript SDK tests, generated
with the Rust keytool, and fastcrypto's deterministic ECDSA vectors) and against pysui itself."""

from __future__ import annotations

import base64
import json

import nacl.signing
import pytest
from pysui.sui.sui_crypto import keypair_from_keystring

from atoma_proxy.sui.crypto import (
    InvalidSignature,
    SignatureScheme,
    SuiKeypair,
    address_of,
    blake2b256,
    normalize_address,
    parse_signature,
    personal_message_digest,
    verify_hashed,
    verify_personal_message,
)
from atoma_proxy.sui.keystore import KeystoreError, load_keypair

# (keystring, address) from sdk/typescript/test/unit/cryptography/*-keypair.test.ts
KEYTOOL_VECTORS = [
    (
        "AN0JMHpDum3BhrVwnkylH0/HGRHBQ/fO/8+MYOawO8j6",
        "0xa2d14fad60c56049ecf75246a481934691214ce413e6a8ae2fe6834c173a6133",
    ),
    (
        "AJrA997C1eVz6wYIp7bO8dpITSRBXpvg1m70/P3gusu2",
        "0x1ada6e6f3f3e4055096f606c746690f1108fcc2ca479055cc434a3e1d3f758aa",
    ),
    (
        "AAEMSIQeqyz09StSwuOW4MElQcZ+4jHW4/QcWlJEf5Yk",
        "0xe69e896ca10f5a77732769803cc2b5707f0ab9d4407afb5e4b4464b89769af14",
    ),
    (
        "suiprivkey1qyqr6yvxdqkh32ep4pk9caqvphmk9epn6rhkczcrhaeermsyvwsg783y9am",
        "0x9e8f732575cc5386f8df3c784cd3ed1b53ce538da79926b2ad54dcc1197d2532",
    ),
    (
        "suiprivkey1q8hexn5m2u36tx39ln5e22hfseadknp7d2qlkhe30ejy7fc6am5aqkqpqsj",
        "0x9fd5a804ed6b46d36949ff7434247f0fd594673973ece24aede6b86a7b5dae01",
    ),
    (
        "suiprivkey1qgj6vet4rstf2p00j860xctkg4fyqqq5hxgu4mm0eg60fq787ujnqs5wc8q",
        "0x4a822457f1970468d38dae8e63fb60eefdaa497d74d781f581ea2d137ec36f3a",
    ),
    (
        "suiprivkey1qt2gsye4dyn0lxey0ht6d5f2ada7ew9044a49y2f3mymy2uf0hr55jmfze3",
        "0x0d9047b7e7b698cc09c955ea97b0c68c2be7fb3aebeb59edcc84b1fb87e0f28e",
    ),
]

SECP256K1_SECRET = bytes.fromhex("3b940b5586823dfd02ae3b461bb4336b5ecbaefd6627aa922efc048fec0c881c")
SECP256K1_PUBLIC = bytes.fromhex("021d152307c6b72b0ed0418b0e70cd80e7f5295b8d86f5722d3f5213fbd2394f36")
SECP256R1_SECRET = bytes.fromhex("42258dcda14cf111c602b8971b8cc843e91e46ca905151c02744a6b017e69316")
SECP256R1_PUBLIC = bytes.fromhex("0227322b3a891a0a280d6bc1fb2cbb23d28f54906fd6407f5f741f6def5762609a")


def _keystring(scheme: int, secret: bytes) -> str:
    return base64.b64encode(bytes([scheme]) + secret).decode()


@pytest.mark.parametrize(("keystring", "address"), KEYTOOL_VECTORS)
def test_keystrings_give_the_keytool_addresses(keystring: str, address: str) -> None:
    keypair = SuiKeypair.from_keystring(keystring)
    assert keypair.address == address
    assert address_of(keypair.scheme, keypair.public_key) == address
    assert SuiKeypair.from_keystring(keypair.keystring()).address == address


@pytest.mark.parametrize(
    ("scheme", "secret", "public", "expected"),
    [
        # fastcrypto secp256k1_tests.rs, repeated in Sui's TS SDK: sign(b"Hello, world!") hashes with sha256.
        (
            SignatureScheme.SECP256K1,
            SECP256K1_SECRET,
            SECP256K1_PUBLIC,
            "25d450f191f6d844bf5760c5c7b94bc67acc88be76398129d7f43abdef32dc7f"
            "7f1a65b7d65991347650f3dd3fa3b3a7f9892a0608521cbcf811ded433b31f8b",
        ),
        (
            SignatureScheme.SECP256R1,
            SECP256R1_SECRET,
            SECP256R1_PUBLIC,
            "26d84720652d8bc4ddd1986434a10b3b7b69f0e35a17c6a5987e6d1cba69652f"
            "4384a342487642df5e44592d304bea0ceb0fae2e347fa3cec5ce1a8144cfbbb2",
        ),
    ],
)
def test_ecdsa_sign_hashed_matches_the_rust_vectors(
    scheme: SignatureScheme, secret: bytes, public: bytes, expected: str
) -> None:
    keypair = SuiKeypair.from_keystring(_keystring(scheme, secret))
    assert keypair.public_key == public
    encoded = keypair.sign_hashed(b"Hello, world!")
    raw = base64.b64decode(encoded)
    assert len(raw) == 98
    assert raw[0] == scheme
    assert raw[1:65].hex() == expected
    assert raw[65:] == public
    assert verify_hashed(encoded, b"Hello, world!").signer == keypair.address


def test_ed25519_sign_hashed_is_plain_ed25519_over_the_bytes() -> None:
    keypair = SuiKeypair.from_keystring(KEYTOOL_VECTORS[0][0])
    seed = base64.b64decode(KEYTOOL_VECTORS[0][0])[1:]
    digest = blake2b256(b'{"model":"m"}')
    encoded = keypair.sign_hashed(digest)
    raw = base64.b64decode(encoded)
    assert len(raw) == 97 and raw[0] == 0
    assert raw[1:65] == nacl.signing.SigningKey(seed).sign(digest).signature
    assert raw[65:] == bytes(nacl.signing.SigningKey(seed).verify_key)


@pytest.mark.parametrize("scheme", list(SignatureScheme))
def test_verify_hashed_refuses_other_bytes_and_other_signers(scheme: SignatureScheme) -> None:
    keypair = SuiKeypair.generate(scheme)
    other = SuiKeypair.generate(scheme)
    digest = blake2b256(b"body")
    encoded = keypair.sign_hashed(digest)
    assert verify_hashed(encoded, digest, signer=keypair.address).scheme is scheme
    with pytest.raises(InvalidSignature, match="does not verify"):
        verify_hashed(encoded, blake2b256(b"body!"))
    with pytest.raises(InvalidSignature, match="signed by"):
        verify_hashed(encoded, digest, signer=other.address)
    # Someone else's public key behind this signature: it no longer verifies.
    forged = parse_signature(encoded)
    swapped = base64.b64encode(bytes([scheme]) + forged.signature + other.public_key).decode()
    with pytest.raises(InvalidSignature):
        verify_hashed(swapped, digest)


@pytest.mark.parametrize(
    ("encoded", "reason"),
    [
        ("not base64!", "base64"),
        ("", "empty"),
        (base64.b64encode(bytes([5]) + bytes(97)).decode(), "unsupported"),  # zkLogin flag
        (base64.b64encode(bytes([0]) + bytes(64)).decode(), "97 bytes"),
    ],
)
def test_malformed_signatures_are_refused(encoded: str, reason: str) -> None:
    with pytest.raises(InvalidSignature, match=reason):
        parse_signature(encoded)


def test_personal_message_digest_is_intent_bcs_bytes_blake2b() -> None:
    message = b"x" * 200  # a two-byte ULEB128 length
    assert personal_message_digest(message) == blake2b256(bytes([3, 0, 0, 0xC8, 0x01]) + message)


@pytest.mark.parametrize("keystring", [v[0] for v in KEYTOOL_VECTORS[::3]])
def test_personal_message_signatures_match_pysui_and_verify_offline(keystring: str) -> None:
    keypair = SuiKeypair.from_keystring(keystring)
    message = b"Sign this message to prove you are the owner of this wallet. Nonce: 42"
    ours = keypair.sign_personal_message(message)
    theirs = keypair_from_keystring(keystring).sign_personal_message(base64.b64encode(message).decode())
    assert ours == theirs  # deterministic signatures over the same digest
    assert verify_personal_message(theirs, message, signer=keypair.address).signer == keypair.address
    with pytest.raises(InvalidSignature):
        verify_personal_message(theirs, message + b"!")
    with pytest.raises(InvalidSignature):
        verify_hashed(theirs, blake2b256(message))  # a personal message is not a no-intent signature


def test_addresses_normalize() -> None:
    assert normalize_address("0x2") == "0x" + "0" * 63 + "2"
    assert normalize_address(" 0XAB ") == "0x" + "0" * 62 + "ab"
    for bad in ("", "0x", "0xzz", "0x" + "1" * 65):
        with pytest.raises(ValueError):
            normalize_address(bad)


def test_keystore_picks_the_active_address(tmp_path) -> None:
    keystore = tmp_path / "sui.keystore"
    keystore.write_text(json.dumps([v[0] for v in KEYTOOL_VECTORS[:4]]))
    client = tmp_path / "client.yaml"
    client.write_text(
        f'---\nkeystore:\n  File: {keystore}\nactive_env: testnet\nactive_address: "{KEYTOOL_VECTORS[3][1]}"\n'
    )
    assert load_keypair(keystore, client_config_path=client).address == KEYTOOL_VECTORS[3][1]
    assert load_keypair(keystore, address=KEYTOOL_VECTORS[1][1]).address == KEYTOOL_VECTORS[1][1]
    with pytest.raises(KeystoreError, match="holds 4 keys"):
        load_keypair(keystore)
    with pytest.raises(KeystoreError, match="no key for"):
        load_keypair(keystore, address="0x1")
    single = tmp_path / "one.keystore"
    single.write_text(json.dumps([KEYTOOL_VECTORS[5][0]]))
    assert load_keypair(single).scheme is SignatureScheme.SECP256R1


def test_keystore_errors_are_clear(tmp_path) -> None:
    bad = tmp_path / "bad.keystore"
    bad.write_text(json.dumps(["AAAA"]))
    with pytest.raises(KeystoreError, match="entry 0"):
        load_keypair(bad)
    with pytest.raises(KeystoreError, match="cannot read"):
        load_keypair(tmp_path / "missing.keystore")
