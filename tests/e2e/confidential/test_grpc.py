"""Confidential inference over gRPC against a running sidecar + node simulator: round trips charged
exactly the signed usage, and every tampering a clean specific error that charges nothing."""

from __future__ import annotations

import dataclasses

import grpc
import orjson
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from atoma_proxy.confidential import envelope, wire
from atoma_proxy.core.ledger import token_cost
from atoma_proxy.core.ledger.pricing import TokenPrice
from atoma_proxy.generated.atoma.routing.v1 import confidential_pb2 as cpb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from tests.e2e._ledger import stored_ledger
from tests.e2e.confidential.stack import (
    CHAT,
    EMBED,
    IMAGE,
    NODE_ID,
    PRICE_IMAGE,
    PRICE_IN,
    PRICE_OUT,
    ConfidentialStack,
)

CANARY = "CANARY-7f3a9c-confidential-secret"
EMAIL = "conf@atoma.test"
PRICE = TokenPrice(PRICE_IN, PRICE_OUT)


def _md(stack: ConfidentialStack) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {stack.api_key}"),)


def _reason(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    assert status is not None, error
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info.reason


async def _lock(stub, stack, model=CHAT, endpoint=cpb.CONFIDENTIAL_ENDPOINT_CHAT_COMPLETIONS, **fields):  # type: ignore[no-untyped-def]
    return await stub.LockNode(cpb.LockNodeRequest(model=model, endpoint=endpoint, **fields), metadata=_md(stack))


def _seal(lock: cpb.LockNodeResponse, body: dict, *, stream: bool = False) -> envelope.ClientSession:
    return envelope.seal_request(
        orjson.dumps(body),
        lock.public_key,
        stack_small_id=lock.stack_small_id,
        model_name=body["model"],
        stream=stream,
        node_signing_key=lock.node_signing_key,
    )


def _chat_body(text: str = f"hello {CANARY}", max_tokens: int = 6) -> dict:
    return {"model": CHAT, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens}


async def _charged(stack: ConfidentialStack) -> tuple[int, int, int]:
    ledger = await stored_ledger(stack.database_url, EMAIL)
    return ledger.debited, ledger.charged, ledger.held


@pytest.fixture
async def stub(conf: ConfidentialStack):  # type: ignore[no-untyped-def]
    async with grpc.aio.insecure_channel(conf.core_target) as channel:
        yield pb_grpc.RoutingServiceStub(channel)


async def test_chat_round_trip_charges_exactly_the_signed_usage(conf, stub) -> None:  # type: ignore[no-untyped-def]
    before = await _charged(conf)
    lock = await _lock(stub, conf, max_num_tokens=64)
    assert lock.node_id == NODE_ID and len(lock.public_key) == 32
    session = _seal(lock, _chat_body())
    events = [
        e
        async for e in stub.ConfidentialChatCompletion(
            cpb.ConfidentialChatCompletionRequest(envelope=wire.envelope_to_proto(session.request)), metadata=_md(conf)
        )
    ]
    assert [e.WhichOneof("event") for e in events] == ["answer", "end"]
    answer = wire.sealed_from_proto(events[0].answer, chunk=False)
    completion = orjson.loads(session.open_response(answer))  # decrypts, hash and node signature checked
    assert completion["object"] == "chat.completion" and completion["choices"][0]["message"]["content"]
    usage = answer.usage
    assert usage is not None and usage["completion_tokens"] == 6
    expected = token_cost(usage["prompt_tokens"], usage["completion_tokens"], PRICE)
    assert events[1].end.cost_micro_usd == expected > 0
    after = await _charged(conf)
    assert (after[0] - before[0], after[1] - before[1]) == (expected, expected)
    assert after[2] <= before[2]  # the request's hold settled (other tests' locks may expire meanwhile)


async def test_streaming_chat_decrypts_in_order_and_charges_the_final_usage(conf, stub) -> None:  # type: ignore[no-untyped-def]
    before = await _charged(conf)
    lock = await _lock(stub, conf, max_num_tokens=64)
    session = _seal(lock, _chat_body(max_tokens=5), stream=True)
    request = cpb.ConfidentialChatCompletionRequest(envelope=wire.envelope_to_proto(session.request))
    events = [e async for e in stub.ConfidentialChatCompletion(request, metadata=_md(conf))]
    assert events[-1].WhichOneof("event") == "end"
    opener = session.stream_opener()
    texts = []
    for event in events[:-1]:
        plain = opener.open_chunk(wire.sealed_from_proto(event.chunk, chunk=True))
        if plain is not None:
            delta = orjson.loads(plain)["choices"]
            texts += [c["delta"].get("content") or "" for c in delta]
    opener.finish()
    assert "".join(texts).strip() and opener.usage is not None
    expected = token_cost(opener.usage["prompt_tokens"], opener.usage["completion_tokens"], PRICE)
    assert opener.usage["completion_tokens"] == 5
    assert events[-1].end.cost_micro_usd == expected
    after = await _charged(conf)
    assert after[1] - before[1] == expected and after[2] <= before[2]


async def test_streaming_completion_round_trip(conf, stub) -> None:  # type: ignore[no-untyped-def]
    lock = await _lock(stub, conf, endpoint=cpb.CONFIDENTIAL_ENDPOINT_COMPLETIONS, max_num_tokens=32)
    session = _seal(lock, {"model": CHAT, "prompt": f"say {CANARY}", "max_tokens": 3}, stream=True)
    request = cpb.ConfidentialCompletionRequest(envelope=wire.envelope_to_proto(session.request))
    events = [e async for e in stub.ConfidentialCompletion(request, metadata=_md(conf))]
    opener = session.stream_opener()
    chunks = [opener.open_chunk(wire.sealed_from_proto(e.chunk, chunk=True)) for e in events[:-1]]
    opener.finish()
    assert any(b'"text"' in c for c in chunks if c)
    assert events[-1].end.cost_micro_usd == token_cost(
        opener.usage["prompt_tokens"], opener.usage["completion_tokens"], PRICE
    )


async def test_embeddings_and_images_round_trip(conf, stub) -> None:  # type: ignore[no-untyped-def]
    before = await _charged(conf)
    lock = await _lock(stub, conf, model=EMBED, endpoint=cpb.CONFIDENTIAL_ENDPOINT_EMBEDDINGS, max_num_tokens=64)
    session = _seal(lock, {"model": EMBED, "input": f"embed {CANARY}"})
    result = await stub.ConfidentialEmbeddings(
        cpb.ConfidentialEmbeddingsRequest(envelope=wire.envelope_to_proto(session.request)), metadata=_md(conf)
    )
    answer = wire.sealed_from_proto(result.answer, chunk=False)
    assert orjson.loads(session.open_response(answer))["data"][0]["embedding"]
    embed_cost = token_cost(answer.usage["prompt_tokens"], 0, PRICE)
    assert result.cost_micro_usd == embed_cost > 0

    lock = await _lock(stub, conf, model=IMAGE, endpoint=cpb.CONFIDENTIAL_ENDPOINT_IMAGES_GENERATIONS, max_num_tokens=2)
    session = _seal(lock, {"model": IMAGE, "prompt": f"draw {CANARY}", "n": 2, "size": "256x256"})
    result = await stub.ConfidentialGenerateImages(
        cpb.ConfidentialGenerateImagesRequest(envelope=wire.envelope_to_proto(session.request)), metadata=_md(conf)
    )
    answer = wire.sealed_from_proto(result.answer, chunk=False)
    assert len(orjson.loads(session.open_response(answer))["data"]) == 2
    assert answer.usage == {"images": 2}
    assert result.cost_micro_usd == 2 * PRICE_IMAGE
    after = await _charged(conf)
    assert after[1] - before[1] == embed_cost + 2 * PRICE_IMAGE


async def _expect_error(conf, stub, session_request, reason: str, code: grpc.StatusCode, released: int = 1) -> None:  # type: ignore[no-untyped-def]
    before = await _charged(conf)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in stub.ConfidentialChatCompletion(
            cpb.ConfidentialChatCompletionRequest(envelope=wire.envelope_to_proto(session_request)), metadata=_md(conf)
        ):
            pass
    assert (raised.value.code(), _reason(raised.value)) == (code, reason)
    after = await _charged(conf)
    assert after[:2] == before[:2], "a failed confidential request charged something"
    # the failed request's lock released its reservation (other tests' locks may expire meanwhile)
    assert after[2] <= before[2] - released, "a failed request's reservation is still held"


def _flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:]


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("ciphertext", "CONFIDENTIAL_DECRYPTION_FAILED"),
        ("nonce", "CONFIDENTIAL_DECRYPTION_FAILED"),
        ("salt", "CONFIDENTIAL_DECRYPTION_FAILED"),
        ("plaintext_body_hash", "PLAINTEXT_HASH_MISMATCH"),
    ],
)
async def test_tampered_request_is_reported_by_the_node_and_charges_nothing(conf, stub, field, reason) -> None:  # type: ignore[no-untyped-def]
    lock = await _lock(stub, conf)
    request = _seal(lock, _chat_body()).request
    tampered = dataclasses.replace(request, **{field: _flip(getattr(request, field))})
    await _expect_error(conf, stub, tampered, reason, grpc.StatusCode.INVALID_ARGUMENT)


async def test_unknown_reused_and_foreign_locks(conf, stub) -> None:  # type: ignore[no-untyped-def]
    lock = await _lock(stub, conf)
    unknown = dataclasses.replace(_seal(lock, _chat_body()).request, stack_small_id=lock.stack_small_id ^ 1)
    await _expect_error(conf, stub, unknown, "LOCK_NOT_FOUND", grpc.StatusCode.NOT_FOUND, released=0)
    session = _seal(lock, _chat_body())
    async for _ in stub.ConfidentialChatCompletion(
        cpb.ConfidentialChatCompletionRequest(envelope=wire.envelope_to_proto(session.request)), metadata=_md(conf)
    ):
        pass
    again = _seal(lock, _chat_body())
    await _expect_error(conf, stub, again.request, "LOCK_ALREADY_USED", grpc.StatusCode.FAILED_PRECONDITION, released=0)
    # another user's key on this user's lock
    from tests.e2e._ledger import funded_key

    _, other_key = await funded_key(conf.database_url, 10**9)
    lock = await _lock(stub, conf)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in stub.ConfidentialChatCompletion(
            cpb.ConfidentialChatCompletionRequest(envelope=wire.envelope_to_proto(_seal(lock, _chat_body()).request)),
            metadata=(("authorization", f"Bearer {other_key}"),),
        ):
            pass
    assert _reason(raised.value) == "LOCK_OF_ANOTHER_USER"


async def test_expired_lock_is_refused_and_its_reservation_released(conf, stub) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    before = await _charged(conf)
    lock = await _lock(stub, conf, timeout=0.2)
    held = (await stored_ledger(conf.database_url, EMAIL)).held
    assert held >= 1
    for _ in range(200):  # the expiry releases the lock's reservation by itself
        if (await _charged(conf))[2] < held:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the expired lock's reservation was never released")
    await _expect_error(
        conf, stub, _seal(lock, _chat_body()).request, "LOCK_EXPIRED", grpc.StatusCode.FAILED_PRECONDITION, released=0
    )
    assert (await _charged(conf))[:2] == before[:2]
    records = (await stored_ledger(conf.database_url, EMAIL)).records
    assert "lock_expired" in {r.outcome for r in records}


async def test_stale_node_key_after_rotation(conf, stub) -> None:  # type: ignore[no-untyped-def]
    import httpx

    lock = await _lock(stub, conf)
    async with httpx.AsyncClient() as http:
        rotated = await http.post(
            f"{conf.sidecar_url}/v1/rotate-key", headers={"authorization": "Bearer sidecar-admin-token-0123456789"}
        )
    assert rotated.status_code == 200
    await _expect_error(
        conf, stub, _seal(lock, _chat_body()).request, "STALE_NODE_KEY", grpc.StatusCode.FAILED_PRECONDITION
    )
    fresh = await _lock(stub, conf)
    assert fresh.public_key != lock.public_key and fresh.rotation_counter > lock.rotation_counter


async def test_attestation_is_served_and_bound_to_the_key(conf, stub) -> None:  # type: ignore[no-untyped-def]
    from atoma_proxy.confidential import attestation, signing

    lock = await _lock(stub, conf)
    served = await stub.GetNodeAttestation(cpb.GetNodeAttestationRequest(node_id=NODE_ID), metadata=_md(conf))
    assert served.public_key == lock.public_key and served.verified
    document = attestation.AuthorityEvidence.decode(served.evidence)
    assert document.report_data == attestation.report_data(served.rotation_nonce, served.public_key, 300)
    signing.verify(
        bytes(conf.authority.verify_key),
        attestation.authority_statement(NODE_ID, document.report_data),
        document.signature,
    )
    # release the lock now rather than waiting for its expiry (nothing else uses it)
    _ = lock


async def test_plaintext_for_another_model_than_routed_is_refused_by_the_node(conf, stub) -> None:  # type: ignore[no-untyped-def]
    # priced and routed as CHAT, but asking the engine for another model: the node refuses, nothing is charged
    lock = await _lock(stub, conf)
    body = {**_chat_body(), "model": "conf/plain-only"}
    session = envelope.seal_request(
        orjson.dumps(body), lock.public_key, stack_small_id=lock.stack_small_id, model_name=CHAT
    )
    await _expect_error(conf, stub, session.request, "INVALID_PLAINTEXT", grpc.StatusCode.INVALID_ARGUMENT)


async def test_more_units_than_locked_is_a_lock_mismatch(conf, stub) -> None:  # type: ignore[no-untyped-def]
    lock = await _lock(stub, conf, max_num_tokens=16)
    request = dataclasses.replace(_seal(lock, _chat_body()).request, num_compute_units=17)
    await _expect_error(conf, stub, request, "LOCK_MISMATCH", grpc.StatusCode.INVALID_ARGUMENT, released=0)
    embeddings_lock = await _lock(stub, conf, model=EMBED, endpoint=cpb.CONFIDENTIAL_ENDPOINT_EMBEDDINGS)
    wrong_endpoint = _seal(embeddings_lock, {"model": EMBED, "input": "x"}).request
    await _expect_error(conf, stub, wrong_endpoint, "LOCK_MISMATCH", grpc.StatusCode.INVALID_ARGUMENT, released=0)


async def test_plain_requests_pass_through_the_sidecar(conf) -> None:  # type: ignore[no-untyped-def]
    import httpx

    async with httpx.AsyncClient(base_url=conf.facade_url) as http:
        answer = await http.post(
            "/v1/chat/completions",
            json={"model": CHAT, "messages": [{"role": "user", "content": "plain"}], "max_tokens": 2},
            headers={"authorization": f"Bearer {conf.api_key}"},
        )
    assert answer.status_code == 200 and answer.headers["x-atoma-node"] == NODE_ID
    assert answer.json()["usage"]["completion_tokens"] == 2


@pytest.mark.parametrize(
    ("fields", "code", "reason"),
    [
        ({"max_num_tokens": 0}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"),
        ({"timeout": 0.0}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"),
        ({"timeout": 301.0}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"),
        ({"endpoint": cpb.CONFIDENTIAL_ENDPOINT_UNSPECIFIED}, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"),
        ({"model": "conf/plain-only"}, grpc.StatusCode.UNAVAILABLE, "NO_CONFIDENTIAL_NODE"),
        ({"model": "conf/nobody"}, grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND"),
    ],
)
async def test_bad_locks_are_refused_and_hold_nothing(conf, stub, fields, code, reason) -> None:  # type: ignore[no-untyped-def]
    before = await _charged(conf)
    request = cpb.LockNodeRequest(**{"model": CHAT, **fields})
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.LockNode(request, metadata=_md(conf))
    assert (raised.value.code(), _reason(raised.value)) == (code, reason)
    assert (await _charged(conf))[2] <= before[2]


async def test_confidential_rpcs_need_an_api_key(conf, stub) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.LockNode(cpb.LockNodeRequest(model=CHAT))
    assert _reason(raised.value) == "MISSING_API_KEY"
    lock = await _lock(stub, conf)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in stub.ConfidentialChatCompletion(
            cpb.ConfidentialChatCompletionRequest(envelope=wire.envelope_to_proto(_seal(lock, _chat_body()).request))
        ):
            pass
    assert _reason(raised.value) == "MISSING_API_KEY"
