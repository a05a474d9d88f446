"""Every field an attacker between client and node can touch, touched: each fails with its own error."""

from __future__ import annotations

import dataclasses

import pytest
from nacl.signing import SigningKey

from atoma_proxy.confidential import crypto, envelope, signing

BODY = b'{"model":"m","messages":[{"role":"user","content":"secret"}]}'
USAGE = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}


@pytest.fixture
def node():
    private = crypto.new_private_key()
    return private, SigningKey.generate()


def _flip(data: bytes, at: int = 0) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def _sealed(node, **kwargs):
    private, _ = node
    return envelope.seal_request(BODY, crypto.public_key(private), stack_small_id=1, model_name="m", **kwargs)


def test_round_trip(node):
    private, signer = node
    client = _sealed(node, node_signing_key=signer.verify_key.encode())
    body, session = envelope.open_request(client.request, private, signer)
    assert body == BODY
    answer = session.seal_response(b"answer", USAGE)
    answer.verify(client.request, signer.verify_key.encode())
    assert client.open_response(answer) == b"answer"


@pytest.mark.parametrize("field", ["ciphertext", "nonce", "salt", "client_dh_public_key"])
def test_tampered_request_fields_do_not_decrypt(node, field):
    private, signer = node
    request = _sealed(node).request
    tampered = dataclasses.replace(request, **{field: _flip(getattr(request, field))})
    with pytest.raises(crypto.DecryptionFailed):
        envelope.open_request(tampered, private, signer)


def test_tampered_hash_is_a_hash_mismatch(node):
    private, signer = node
    request = _sealed(node).request
    tampered = dataclasses.replace(request, plaintext_body_hash=_flip(request.plaintext_body_hash))
    with pytest.raises(envelope.HashMismatch):
        envelope.open_request(tampered, private, signer)


def test_request_to_an_old_key_is_stale(node):
    _, signer = node
    request = _sealed(node).request
    with pytest.raises(envelope.StaleNodeKey):
        envelope.open_request(request, crypto.new_private_key(), signer)


def test_tampered_usage_or_signature_does_not_verify(node):
    private, signer = node
    client = _sealed(node)
    _, session = envelope.open_request(client.request, private, signer)
    answer = session.seal_response(b"answer", USAGE)
    key = signer.verify_key.encode()
    for forged in (
        dataclasses.replace(answer, usage={**USAGE, "completion_tokens": 1}),
        dataclasses.replace(answer, usage=None),
        dataclasses.replace(answer, signature=_flip(answer.signature)),
        dataclasses.replace(answer, response_hash=_flip(answer.response_hash)),
    ):
        with pytest.raises(signing.SignatureInvalid):
            forged.verify(client.request, key)
    with pytest.raises(signing.SignatureInvalid):  # another node's key
        answer.verify(client.request, SigningKey.generate().verify_key.encode())
    # the same signed answer does not verify for another request (another one-off client key)
    other = _sealed(node).request
    with pytest.raises(signing.SignatureInvalid):
        answer.verify(other, key)


def test_tampered_answer_ciphertext_fails_for_the_client(node):
    private, signer = node
    client = _sealed(node)
    _, session = envelope.open_request(client.request, private, signer)
    answer = session.seal_response(b"answer", USAGE)
    with pytest.raises(crypto.DecryptionFailed):
        client.open_response(dataclasses.replace(answer, ciphertext=_flip(answer.ciphertext)))


def _stream(node, count=3):
    private, signer = node
    client = _sealed(node, stream=True, node_signing_key=signer.verify_key.encode())
    _, session = envelope.open_request(client.request, private, signer)
    sealer = session.stream_sealer()
    chunks = [sealer.seal_chunk(f"chunk {i}".encode()) for i in range(count)]
    return client, [*chunks, sealer.seal_final(USAGE)]


def test_stream_in_order_opens(node):
    client, chunks = _stream(node)
    opener = client.stream_opener()
    assert [opener.open_chunk(c) for c in chunks] == [b"chunk 0", b"chunk 1", b"chunk 2", None]
    opener.finish()
    assert opener.usage == USAGE


@pytest.mark.parametrize(
    "order",
    [[1, 0, 2, 3], [0, 2, 3], [0, 0, 1, 2, 3], [0, 1, 2, 3, 3], [0, 1, 2, 3, 2]],
    ids=["reordered", "dropped", "replayed", "final-replayed", "after-final"],
)
def test_stream_reordered_dropped_or_replayed_is_detected(node, order):
    client, chunks = _stream(node)
    opener = client.stream_opener()
    with pytest.raises(envelope.StreamOutOfOrder):
        for i in order:
            opener.open_chunk(chunks[i])


def test_stream_chunk_with_a_rewritten_index_does_not_decrypt(node):
    # a proxy that renumbers chunk 2 as chunk 1 (and rewrites its nonce) still fails: the nonce is computed
    client, chunks = _stream(node)
    opener = client.stream_opener()
    opener.open_chunk(chunks[0])
    moved = dataclasses.replace(chunks[2], chunk_index=1, nonce=chunks[1].nonce)
    with pytest.raises(crypto.DecryptionFailed):
        opener.open_chunk(moved)


def test_stream_truncated_is_detected(node):
    client, chunks = _stream(node)
    opener = client.stream_opener()
    for chunk in chunks[:-1]:
        opener.open_chunk(chunk)
    with pytest.raises(envelope.StreamTruncated):
        opener.finish()


def test_forged_final_marker_is_refused(node):
    # marking a content chunk final (to end the stream early) breaks its signature and its end-marker check
    client, chunks = _stream(node)
    opener = client.stream_opener()
    with pytest.raises((envelope.StreamOutOfOrder, signing.SignatureInvalid)):
        opener.open_chunk(dataclasses.replace(chunks[0], final=True))


def test_node_never_reuses_the_request_nonce(node):
    private, signer = node
    client = _sealed(node)
    _, session = envelope.open_request(client.request, private, signer)
    with pytest.raises(ValueError):
        session.seal_response(b"answer", USAGE, nonce=client.request.nonce)


@pytest.mark.parametrize(
    "change",
    [
        {"nonce": "AAAA"},
        {"salt": "not base64!"},
        {"client_dh_public_key": None},
        {"stack_small_id": -1},
        {"stack_small_id": "1"},
        {"stream": "yes"},
        {"model_name": ""},
        {"ciphertext": ""},
    ],
)
def test_malformed_request_fields_are_envelope_errors(node, change):
    document = {**_sealed(node).request.to_json(), **change}
    with pytest.raises(envelope.EnvelopeError):
        envelope.ConfidentialRequest.from_json(document)
