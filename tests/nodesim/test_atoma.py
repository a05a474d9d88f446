"""The simulator in Atoma-protocol mode: signed requests in, signed answers and chunks out."""

from __future__ import annotations

import httpx
import orjson
import pytest

from atoma_proxy.sui.crypto import InvalidSignature, SignatureScheme, SuiKeypair
from atoma_proxy.sui.node_protocol import sign_request, verify_response
from tests.nodesim.helpers import CHAT, EMBED, HELLO, StartSim, get_json, post_config

PROXY = SuiKeypair.generate(SignatureScheme.SECP256R1)
NODE = SuiKeypair.generate(SignatureScheme.ED25519)


def _signed(body: dict, keypair: SuiKeypair = PROXY) -> tuple[bytes, dict[str, str]]:
    data, signature = sign_request(keypair, body)
    return data, {"content-type": "application/json", "x-signature": signature, "x-user-id": "1"}


def _events(text: str) -> list[bytes]:
    return [line[6:].encode() for line in text.split("\n") if line.startswith("data: ") and line != "data: [DONE]"]


async def test_answers_are_signed_by_the_node_key(start_sim: StartSim) -> None:
    sim = await start_sim(protocol="atoma", sui_keystring=NODE.keystring(), allowed_signers=[PROXY.address])
    assert (await get_json(sim, "/sim/config"))["sui_address"] == NODE.address
    async with httpx.AsyncClient(base_url=sim.url) as client:
        for path, body in (
            ("/v1/chat/completions", {"model": CHAT, "messages": HELLO, "temperature": 0.5}),
            ("/v1/embeddings", {"model": EMBED, "input": "hi"}),
        ):
            data, headers = _signed(body)
            response = await client.post(path, content=data, headers=headers)
            assert response.status_code == 200
            assert int(response.headers["content-length"]) == len(response.content)
            assert verify_response(response.content, signer=NODE.address).signer == NODE.address
        data, headers = _signed({"model": CHAT, "messages": HELLO, "stream": True})
        response = await client.post("/v1/chat/completions", content=data, headers=headers)
        chunks = _events(response.text)
        assert len(chunks) > 3 and response.text.rstrip().endswith("data: [DONE]")
        for chunk in chunks:
            verify_response(chunk, signer=NODE.address)


async def test_unsigned_forged_or_foreign_requests_are_refused(start_sim: StartSim) -> None:
    sim = await start_sim(protocol="atoma", allowed_signers=[PROXY.address])
    body = {"model": CHAT, "messages": HELLO}
    data, headers = _signed(body)
    async with httpx.AsyncClient(base_url=sim.url) as client:
        missing = await client.post("/v1/chat/completions", content=data, headers={"content-type": "application/json"})
        assert missing.status_code == 401 and "missing X-Signature" in missing.json()["error"]["message"]
        forged = await client.post("/v1/chat/completions", content=data.replace(b"Hello", b"Howdy"), headers=headers)
        assert forged.status_code == 401
        foreign_data, foreign_headers = _signed(body, SuiKeypair.generate())
        foreign = await client.post("/v1/chat/completions", content=foreign_data, headers=foreign_headers)
        assert foreign.status_code == 401 and "not an allowed proxy" in foreign.json()["error"]["message"]
        # Spacing differs from what was signed: the node re-serializes, as Atoma's does.
        spaced = await client.post(
            "/v1/chat/completions",
            content=orjson.dumps(orjson.loads(data), option=orjson.OPT_INDENT_2),
            headers=headers,
        )
        assert spaced.status_code == 200


async def test_tampering_from_a_chosen_chunk(start_sim: StartSim) -> None:
    sim = await start_sim(protocol="atoma")
    assert (await post_config(sim, bad_hash_rate=1, tamper_from_chunk=2)).status_code == 200
    data, headers = _signed({"model": CHAT, "messages": HELLO, "stream": True})
    async with httpx.AsyncClient(base_url=sim.url) as client:
        chunks = _events((await client.post("/v1/chat/completions", content=data, headers=headers)).text)
        verify_response(chunks[0])
        verify_response(chunks[1])
        with pytest.raises(InvalidSignature, match="response_hash does not match"):
            verify_response(chunks[2])
        assert (await post_config(sim, bad_hash_rate=0, bad_signature_rate=1, tamper_from_chunk=0)).status_code == 200
        data, headers = _signed({"model": CHAT, "messages": HELLO})
        answer = (await client.post("/v1/chat/completions", content=data, headers=headers)).content
        with pytest.raises(InvalidSignature, match="does not verify"):
            verify_response(answer)


async def test_a_request_nobody_pays_for_is_refused(start_sim: StartSim) -> None:
    sim = await start_sim(protocol="atoma")
    data, headers = _signed({"model": CHAT, "messages": HELLO})
    del headers["x-user-id"]
    async with httpx.AsyncClient(base_url=sim.url) as client:
        unpaid = await client.post("/v1/chat/completions", content=data, headers=headers)
        assert unpaid.status_code == 400 and "nobody pays" in unpaid.json()["error"]["message"]
        bad_stack = await client.post(
            "/v1/chat/completions", content=data, headers={**headers, "x-stack-small-id": "seven"}
        )
        assert bad_stack.status_code == 400 and "X-Stack-Small-Id" in bad_stack.json()["error"]["message"]
        stack_paid = await client.post(
            "/v1/chat/completions", content=data, headers={**headers, "x-stack-small-id": "7"}
        )
        assert stack_paid.status_code == 200
