"""docs/confidential.md's test vectors, recomputed by our implementation and by second implementations
of each primitive (cryptography's X25519 vs pynacl's, nacl's BLAKE2b vs hashlib's, an HMAC-built HKDF,
libsodium's AES-256-GCM where the CPU has it)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import pathlib
import re

import blake3
import nacl.bindings
import nacl.hash
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nacl.signing import SigningKey, VerifyKey

from atoma_proxy.confidential import attestation, crypto, envelope, signing

SPEC = pathlib.Path(__file__).parents[2] / "docs" / "confidential.md"


def _vectors() -> dict:
    block = re.search(r"```json vectors\n(.*?)\n```", SPEC.read_text(), re.S)
    assert block is not None, "docs/confidential.md lost its test vectors"
    return json.loads(block.group(1))


V = _vectors()
IN, OUT = V["inputs"], V["outputs"]
h = bytes.fromhex


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def test_x25519_matches_the_vectors_and_cryptography():
    client, node = h(IN["client_x25519_private_key"]), h(IN["node_x25519_private_key"])
    assert crypto.public_key(client).hex() == OUT["client_x25519_public_key"]
    assert crypto.public_key(node).hex() == OUT["node_x25519_public_key"]
    assert crypto.shared_secret(client, h(OUT["node_x25519_public_key"])).hex() == OUT["shared_secret"]
    # second implementation: pyca/cryptography (OpenSSL), both directions
    other = X25519PrivateKey.from_private_bytes(node).exchange(
        X25519PublicKey.from_public_bytes(h(OUT["client_x25519_public_key"]))
    )
    assert other.hex() == OUT["shared_secret"]
    # and RFC 7748 section 6.1's published value
    assert OUT["shared_secret"] == "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"


def test_hkdf_matches_the_vectors_and_an_hmac_construction():
    secret, salt = h(OUT["shared_secret"]), h(IN["salt"])
    assert crypto.derive_key(secret, salt).hex() == OUT["aes_key"]
    prk = hmac.new(salt, secret, hashlib.sha256).digest()  # RFC 5869 extract
    okm = hmac.new(prk, b"" + b"\x01", hashlib.sha256).digest()  # expand, one block, empty info
    assert okm.hex() == OUT["aes_key"]


def test_blake2b_matches_nacl():
    body = IN["request_body"].encode()
    ours = crypto.blake2b_256(body)
    assert ours.hex() == OUT["plaintext_body_hash"]
    assert nacl.hash.blake2b(body, digest_size=32, encoder=nacl.encoding.RawEncoder) == ours
    assert base64.b64encode(ours).decode() == OUT["request"]["plaintext_body_hash"]


def test_request_envelope_is_byte_exact():
    session = envelope.seal_request(
        IN["request_body"].encode(),
        h(OUT["node_x25519_public_key"]),
        stack_small_id=OUT["request"]["stack_small_id"],
        model_name=OUT["request"]["model_name"],
        client_private_key=h(IN["client_x25519_private_key"]),
        salt=h(IN["salt"]),
        nonce=h(IN["request_nonce"]),
    )
    assert session.request.to_json() == OUT["request"]
    # AES-GCM twice: pyca's AESGCM called directly (OpenSSL) and libsodium's
    key, nonce = h(OUT["aes_key"]), h(IN["request_nonce"])
    ciphertext = _b64(OUT["request"]["ciphertext"])
    assert AESGCM(key).decrypt(nonce, ciphertext, None) == IN["request_body"].encode()
    # libsodium's AES-256-GCM (needs AES-NI; present on every x86-64 CI machine we run on)
    assert nacl.bindings.crypto_aead_aes256gcm_decrypt(ciphertext, None, nonce, key) == IN["request_body"].encode()
    for i, chunk in enumerate(OUT["stream"]):
        plain = nacl.bindings.crypto_aead_aes256gcm_decrypt(
            _b64(chunk["ciphertext"]), None, h(OUT["stream_nonces"][i]), key
        )
        assert plain == (IN["stream_chunk_body"].encode() if i == 0 else b"[DONE]")


def test_node_opens_the_vector_request_and_seals_the_vector_answers():
    request = envelope.ConfidentialRequest.from_json(OUT["request"])
    signer = SigningKey(h(IN["node_ed25519_seed"]))
    assert signer.verify_key.encode().hex() == OUT["node_ed25519_public_key"]
    body, node = envelope.open_request(request, h(IN["node_x25519_private_key"]), signer)
    assert body == IN["request_body"].encode()
    answer = node.seal_response(IN["response_body"].encode(), IN["usage"], nonce=h(IN["response_nonce"]))
    assert answer.to_json() == OUT["response"]
    assert answer.signed_message(request).hex() == OUT["response_signed_message"]
    # the signed message, recomputed by hand from section 5
    manual = hashlib.blake2b(
        b"atoma-confidential-usage-v1"
        + request.plaintext_body_hash
        + request.client_dh_public_key
        + answer.response_hash
        + (0).to_bytes(4, "big")
        + b"\x01"
        + b'{"completion_tokens":3,"prompt_tokens":5,"total_tokens":8}',
        digest_size=32,
    ).digest()
    assert manual.hex() == OUT["response_signed_message"]
    VerifyKey(h(OUT["node_ed25519_public_key"])).verify(manual, _b64(OUT["response"]["signature"]))
    sealer = node.stream_sealer(base_nonce=h(IN["response_nonce"]))
    chunks = [sealer.seal_chunk(IN["stream_chunk_body"].encode()), sealer.seal_final(IN["usage"])]
    assert [c.to_json() for c in chunks] == OUT["stream"]


def test_stream_nonces_are_base_xor_big_endian_counter():
    base = h(IN["response_nonce"])
    assert [crypto.chunk_nonce(base, i).hex() for i in range(3)] == OUT["stream_nonces"]
    for i in range(3):
        manual = (int.from_bytes(base, "big") ^ i).to_bytes(12, "big")
        assert manual.hex() == OUT["stream_nonces"][i]
    assert len({crypto.chunk_nonce(base, i) for i in range(1000)}) == 1000


def test_client_opens_the_vector_answers():
    session = envelope.ClientSession(
        request=envelope.ConfidentialRequest.from_json(OUT["request"]),
        key=h(OUT["aes_key"]),
        node_signing_key=h(OUT["node_ed25519_public_key"]),
    )
    answer = envelope.ConfidentialResponse.from_json(OUT["response"])
    assert session.open_response(answer) == IN["response_body"].encode()
    opener = session.stream_opener()
    chunk, final = (envelope.ConfidentialResponse.from_json(c, chunk=True) for c in OUT["stream"])
    assert opener.open_chunk(chunk) == IN["stream_chunk_body"].encode()
    assert opener.open_chunk(final) is None
    opener.finish()
    assert opener.usage == IN["usage"]


def test_attestation_report_data_is_atomas_blake3_nonce():
    key = h(OUT["node_x25519_public_key"])
    expected = blake3.blake3(
        IN["rotation_nonce"].to_bytes(8, "little") + key + IN["device_slot"].to_bytes(2, "little")
    ).hexdigest()
    assert expected == OUT["attestation_report_data"]
    assert attestation.report_data(IN["rotation_nonce"], key, IN["device_slot"]).hex() == expected


def test_canonical_usage_refuses_what_has_no_canonical_form():
    assert signing.canonical_usage(None) == b"null"
    for bad in ({"prompt_tokens": 1.0}, {"prompt_tokens": -1}, {"prompt_tokens": True}, {"prompt_tokens": "1"}):
        with pytest.raises(ValueError):
            signing.canonical_usage(bad)


def test_atoma_style_request_built_with_cryptography_alone_round_trips():
    """Atoma's client rules with pyca/cryptography only (no code of ours): our node opens the request,
    and its answer decrypts with the same rules (same key, the answer's own nonce)."""
    import os

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    node_private = crypto.new_private_key()
    client = X25519PrivateKey.generate()
    shared = client.exchange(X25519PublicKey.from_public_bytes(crypto.public_key(node_private)))
    salt, nonce = os.urandom(16), os.urandom(12)
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"").derive(shared)
    body = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
    document = {
        "ciphertext": base64.b64encode(AESGCM(key).encrypt(nonce, body, None)).decode(),
        "stack_small_id": 1,
        "nonce": base64.b64encode(nonce).decode(),
        "salt": base64.b64encode(salt).decode(),
        "client_dh_public_key": base64.b64encode(client.public_key().public_bytes_raw()).decode(),
        "node_dh_public_key": base64.b64encode(crypto.public_key(node_private)).decode(),
        "plaintext_body_hash": base64.b64encode(hashlib.blake2b(body, digest_size=32).digest()).decode(),
        "model_name": "m",
    }
    opened, node = envelope.open_request(
        envelope.ConfidentialRequest.from_json(document), node_private, SigningKey.generate()
    )
    assert opened == body
    answer = node.seal_response(b'{"choices":[]}', {"prompt_tokens": 1}).to_json()
    plain = AESGCM(key).decrypt(_b64(answer["nonce"]), _b64(answer["ciphertext"]), None)
    assert plain == b'{"choices":[]}'
    assert _b64(answer["response_hash"]) == hashlib.blake2b(plain, digest_size=32).digest()
