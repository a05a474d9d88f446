"""The Atoma node protocol's signatures: requests (X-Signature) and responses (signature, response_hash)."""

from __future__ import annotations

import base64
import json

import pytest

from atoma_proxy.sui.crypto import InvalidSignature, SignatureScheme, SuiKeypair, blake2b256
from atoma_proxy.sui.node_protocol import sign_request, sign_response, verify_request, verify_response


@pytest.mark.parametrize("scheme", list(SignatureScheme))
def test_a_signed_request_verifies_after_the_node_reparses_it(scheme: SignatureScheme) -> None:
    proxy = SuiKeypair.generate(scheme)
    body = {"model": "m", "messages": [{"role": "user", "content": "hé"}], "temperature": 1.0}
    data, signature = sign_request(proxy, body)
    assert data == b'{"model":"m","messages":[{"role":"user","content":"h\xc3\xa9"}],"temperature":1.0}'
    assert verify_request(data, signature, signer=proxy.address).signer == proxy.address
    # The same JSON spaced differently hashes the same once re-serialized, as on an Atoma node.
    assert verify_request(json.dumps(body, indent=2).encode(), signature).signer == proxy.address
    tampered = data.replace(b'"m"', b'"n"')
    with pytest.raises(InvalidSignature):
        verify_request(tampered, signature)
    with pytest.raises(InvalidSignature, match="missing"):
        verify_request(data, None)
    with pytest.raises(InvalidSignature, match="signed by"):
        verify_request(data, signature, signer=SuiKeypair.generate().address)


def test_a_signed_response_carries_hash_and_signature_over_the_rest() -> None:
    node = SuiKeypair.generate(SignatureScheme.SECP256K1)
    answer = sign_response(node, {"id": "c1", "choices": [], "usage": {"prompt_tokens": 1}})
    assert list(answer)[-2:] == ["signature", "response_hash"]
    digest = blake2b256(b'{"id":"c1","choices":[],"usage":{"prompt_tokens":1}}')
    assert answer["response_hash"] == base64.b64encode(digest).decode()
    wire = json.dumps(answer).encode()
    assert verify_response(wire, signer=node.address).signer == node.address


def test_tampered_responses_are_refused() -> None:
    node = SuiKeypair.generate()
    answer = sign_response(node, {"id": "c1", "choices": [{"text": "a"}]})
    content_changed = {**answer, "choices": [{"text": "b"}]}
    with pytest.raises(InvalidSignature, match="does not match"):
        verify_response(json.dumps(content_changed).encode())
    # A hash recomputed for the new content, but the signature is over the old one.
    rehashed = sign_response(SuiKeypair.generate(), dict(content_changed))
    rehashed["signature"] = answer["signature"]
    with pytest.raises(InvalidSignature, match="does not verify"):
        verify_response(json.dumps(rehashed).encode())
    # Signed by another key: valid signature, wrong signer.
    with pytest.raises(InvalidSignature, match="signed by"):
        verify_response(json.dumps(sign_response(SuiKeypair.generate(), {"id": "x"})).encode(), signer=node.address)
    for missing in ("signature", "response_hash"):
        partial = {k: v for k, v in answer.items() if k != missing}
        with pytest.raises(InvalidSignature, match="lacks"):
            verify_response(json.dumps(partial).encode())
    with pytest.raises(InvalidSignature, match="not JSON"):
        verify_response(b"data")
    with pytest.raises(InvalidSignature, match="32-byte"):
        verify_response(json.dumps({**answer, "response_hash": "AAAA"}).encode())
