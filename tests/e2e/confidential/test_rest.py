"""The REST routes with a raw HTTP client: Atoma's JSON shapes, exact charges, errors in OpenAI's envelope."""

from __future__ import annotations

import base64

import httpx
import orjson
import pytest

from atoma_proxy.confidential import envelope
from atoma_proxy.core.ledger import token_cost
from atoma_proxy.core.ledger.pricing import TokenPrice
from tests.e2e._ledger import stored_ledger
from tests.e2e.confidential.stack import CHAT, PRICE_IN, PRICE_OUT, ConfidentialStack

CANARY = "CANARY-7f3a9c-confidential-secret"
EMAIL = "conf@atoma.test"


@pytest.fixture
async def http(conf: ConfidentialStack):  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=conf.facade_url, headers={"authorization": f"Bearer {conf.api_key}"}) as c:
        yield c


async def _sealed(http: httpx.AsyncClient, *, stream: bool) -> envelope.ClientSession:
    locked = await http.post("/v1/nodes/lock", json={"model": CHAT, "max_num_tokens": 64, "timeout": 10})
    assert locked.status_code == 200, locked.text
    grant = locked.json()
    assert isinstance(grant["stack_small_id"], int) and isinstance(grant["node_small_id"], int)
    body = {"model": CHAT, "messages": [{"role": "user", "content": CANARY}], "max_tokens": 3}
    return envelope.seal_request(
        orjson.dumps(body),
        base64.b64decode(grant["public_key"]),
        stack_small_id=grant["stack_small_id"],
        model_name=CHAT,
        stream=stream,
        node_signing_key=base64.b64decode(grant["node_signing_key"]),
    )


async def test_rest_round_trip_charges_exactly_the_signed_usage(conf: ConfidentialStack, http) -> None:  # type: ignore[no-untyped-def]
    session = await _sealed(http, stream=False)
    before = await stored_ledger(conf.database_url, EMAIL)
    answered = await http.post("/v1/confidential/chat/completions", json=session.request.to_json())
    assert answered.status_code == 200, answered.text
    assert set(answered.json()) == {"ciphertext", "nonce", "signature", "response_hash", "usage"}
    answer = envelope.ConfidentialResponse.from_json(answered.json())
    assert orjson.loads(session.open_response(answer))["choices"]
    usage = answer.usage
    assert usage is not None
    after = await stored_ledger(conf.database_url, EMAIL)
    expected = token_cost(usage["prompt_tokens"], usage["completion_tokens"], TokenPrice(PRICE_IN, PRICE_OUT))
    assert after.charged - before.charged == expected > 0 and after.held < before.held


async def test_rest_stream_is_ordered_sealed_events_then_done(conf: ConfidentialStack, http) -> None:  # type: ignore[no-untyped-def]
    session = await _sealed(http, stream=True)
    async with http.stream("POST", "/v1/confidential/chat/completions", json=session.request.to_json()) as response:
        assert response.status_code == 200
        lines = [line async for line in response.aiter_lines() if line.startswith("data:")]
    assert lines[-1] == "data: [DONE]"
    opener = session.stream_opener()
    for line in lines[:-1]:
        opener.open_chunk(envelope.ConfidentialResponse.from_json(orjson.loads(line[5:]), chunk=True))
    opener.finish()
    assert opener.usage is not None and opener.usage["completion_tokens"] == 3


async def test_rest_tampered_hash_is_a_specific_error_and_charges_nothing(conf: ConfidentialStack, http) -> None:  # type: ignore[no-untyped-def]
    document = (await _sealed(http, stream=False)).request.to_json()
    before = await stored_ledger(conf.database_url, EMAIL)
    document["plaintext_body_hash"] = base64.b64encode(bytes(32)).decode()
    refused = await http.post("/v1/confidential/chat/completions", json=document)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "plaintext_hash_mismatch"
    after = await stored_ledger(conf.database_url, EMAIL)
    assert (after.charged, after.debited) == (before.charged, before.debited) and after.held < before.held


async def test_rest_malformed_envelope_is_refused_before_the_core(http) -> None:  # type: ignore[no-untyped-def]
    refused = await http.post("/v1/confidential/chat/completions", json={"ciphertext": "AAAA"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_confidential_request"


async def test_rest_serves_the_attestation(conf: ConfidentialStack, http) -> None:  # type: ignore[no-untyped-def]
    from atoma_proxy.confidential import attestation

    served = await http.get("/v1/nodes/secure/attestation")
    assert served.status_code == 200, served.text
    document = served.json()
    evidence = attestation.AuthorityEvidence.decode(base64.b64decode(document["evidence"]))
    key = base64.b64decode(document["public_key"])
    assert evidence.report_data == attestation.report_data(int(document["rotation_nonce"]), key, 300)
    assert document["verified"] is True
    missing = await http.get("/v1/nodes/nobody/attestation")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "node_not_found"
