"""The OpenAI surface beyond inference, against a running proxy: model info, quotes, CORS, request ids,
and errors that say what is wrong (issue 14)."""

from __future__ import annotations

import uuid

import httpx
import openai
import pytest

from tests.e2e.conftest import CHAT, CORS_ORIGIN, CREATED, EMBED, IMAGE, Stack

MESSAGES = [{"role": "user", "content": "one two three four"}]


def client(stack: Stack, api_key: str | None = None) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=stack.base_url, api_key=api_key or stack.api_key, max_retries=0)


def auth(stack: Stack) -> dict[str, str]:
    return {"authorization": f"Bearer {stack.api_key}"}


async def test_models_retrieve_with_a_slash_in_the_id(stack: Stack) -> None:
    async with client(stack) as api:
        model = await api.models.retrieve(CHAT)
    assert model.id == CHAT and model.object == "model" and model.owned_by == "atoma"
    assert model.created == CREATED  # configured, not the process start
    extra = model.model_extra or {}
    assert extra["kind"] == "chat"
    assert extra["context_length"] == 1024  # node `fast` overrides the model's 4096: the smallest wins
    assert extra["nodes"] == ["fast", "steady"]
    assert extra["price_range"]["input_per_million"] == {
        "min_micro_usd": 100_000,
        "max_micro_usd": 600_000,
        "min_usd": "0.1",
        "max_usd": "0.6",
    }
    assert extra["price_range"]["output_per_million"]["max_usd"] == "2"
    # OpenRouter's shape: USD per token at the cheapest node.
    assert extra["pricing"]["prompt"] == "0.0000001" and extra["pricing"]["completion"] == "0.0000004"


async def test_models_retrieve_unknown_is_openai_404(stack: Stack) -> None:
    async with client(stack) as api:
        with pytest.raises(openai.NotFoundError) as raised:
            await api.models.retrieve("atoma/no-such-model")
    assert raised.value.code == "model_not_found"
    assert raised.value.body["param"] == "model"  # type: ignore[index]


async def test_model_list_gives_kind_prices_and_a_stable_created(stack: Stack) -> None:
    async with client(stack) as api:
        models = {m.id: m for m in (await api.models.list()).data}
    assert (models[EMBED].model_extra or {})["kind"] == "embeddings"
    image = models[IMAGE].model_extra or {}
    assert image["kind"] == "images" and image["nodes"] == ["fast"]
    assert image["price_range"]["per_image"]["max_micro_usd"] == 30_000
    assert image["pricing"]["image"] == "0.03"
    assert {m.created for m in models.values() if (m.model_extra or {})["kind"]} == {CREATED}


async def test_quote_prices_a_chat_request_over_its_nodes(stack: Stack) -> None:
    body = {"model": CHAT, "messages": MESSAGES, "max_tokens": 10, "n": 2}
    async with httpx.AsyncClient(base_url=stack.facade_url, headers=auth(stack)) as http:
        explicit = await http.post("/v1/quote/chat/completions", json=body)
        bare = await http.post("/v1/quote", json=body)
    assert explicit.status_code == 200, explicit.text
    quote = explicit.json()
    assert bare.json() == quote
    # sim-words: 4 words + 3 per message + 3 for the reply = 10 prompt tokens; 2 choices of 10.
    assert quote["prompt_tokens"] == 10 and quote["prompt_tokens_exact"] is True
    assert quote["max_completion_tokens"] == 10 and quote["reserved_completion_tokens"] == 20
    costs = {n["node_id"]: n["cost_micro_usd"] for n in quote["nodes"]}
    assert costs == {
        "fast": -(-(10 * 600_000 + 20 * 2_000_000) // 10**6),
        "steady": -(-(10 * 100_000 + 20 * 400_000) // 10**6),
    }
    assert (quote["min_cost_micro_usd"], quote["max_cost_micro_usd"]) == (costs["steady"], costs["fast"])
    assert quote["reserved_micro_usd"] == costs["fast"]


async def test_quote_of_images_and_embeddings(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.facade_url, headers=auth(stack)) as http:
        images = (await http.post("/v1/quote/images/generations", json={"model": IMAGE, "prompt": "x", "n": 3})).json()
        embeddings = (await http.post("/v1/quote", json={"model": EMBED, "input": ["a b", "c"]})).json()
    assert images["kind"] == "images" and images["images"] == 3
    assert images["min_cost_micro_usd"] == images["max_cost_micro_usd"] == 90_000
    assert embeddings["kind"] == "embeddings" and embeddings["prompt_tokens"] == 3
    assert embeddings["reserved_completion_tokens"] == 0


async def test_quote_of_unknown_model_is_404(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.facade_url, headers=auth(stack)) as http:
        answer = await http.post("/v1/quote", json={"model": "atoma/none", "messages": MESSAGES})
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "model_not_found"


async def test_embeddings_of_a_chat_model_are_refused_before_any_node(stack: Stack) -> None:
    marker = f"kind-check-{uuid.uuid4()}"
    async with client(stack) as api:
        with pytest.raises(openai.BadRequestError) as raised:
            await api.embeddings.create(model=CHAT, input=marker)
    assert raised.value.body["param"] == "model"  # type: ignore[index]
    assert "does not serve embeddings" in raised.value.message and EMBED in raised.value.message
    async with httpx.AsyncClient() as http:
        for node in ("fast", "steady"):
            assert marker not in (await http.get(f"{stack.nodes[node]}/sim/requests")).text


async def test_unknown_role_is_400(stack: Stack) -> None:
    async with client(stack) as api:
        with pytest.raises(openai.BadRequestError) as raised:
            await api.chat.completions.create(model=CHAT, messages=[{"role": "wizard", "content": "hi"}])  # type: ignore[misc,list-item]
    assert raised.value.body["param"] == "messages[0].role"  # type: ignore[index]
    assert raised.value.body["type"] == "invalid_request_error"  # type: ignore[index]


async def test_access_token_used_as_api_key_is_named(stack: Stack) -> None:
    email, password = f"{uuid.uuid4().hex[:12]}@atoma.test", "correct horse battery"
    async with httpx.AsyncClient(base_url=stack.facade_url) as http:
        assert (await http.post("/v1/auth/register", json={"email": email, "password": password})).status_code == 200
        login = (await http.post("/v1/auth/login", json={"email": email, "password": password})).json()
    async with client(stack, api_key=login["access_token"]) as api:
        with pytest.raises(openai.AuthenticationError) as raised:
            await api.chat.completions.create(model=CHAT, messages=MESSAGES)
    assert "access token was given where an API key is needed" in raised.value.message


@pytest.mark.parametrize(
    ("method", "path", "with_key"),
    [
        ("GET", "/v1/models", True),
        ("GET", "/v1/balance", True),
        ("GET", "/v1/models", False),  # 401
        ("GET", "/v1/nowhere", True),  # 404
        ("POST", "/v1/chat/completions", False),  # 401 on the fast path
        ("GET", "/health", False),
    ],
)
async def test_every_response_has_a_request_id(stack: Stack, method: str, path: str, with_key: bool) -> None:
    async with httpx.AsyncClient(base_url=stack.facade_url, headers=auth(stack) if with_key else {}) as http:
        fresh = await http.request(method, path, json={} if method == "POST" else None)
        echoed = await http.request(method, path, headers={"x-request-id": "trace-42"})
    assert len(fresh.headers["x-request-id"]) >= 16
    assert echoed.headers["x-request-id"] == "trace-42"


async def test_cors_preflight_and_exposed_headers(stack: Stack) -> None:
    preflight_headers = {
        "origin": CORS_ORIGIN,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, x-stainless-lang",
    }
    async with httpx.AsyncClient(base_url=stack.facade_url) as http:
        preflight = await http.options("/v1/chat/completions", headers=preflight_headers)
        answer = await http.post(
            "/v1/chat/completions",
            json={"model": CHAT, "messages": MESSAGES, "max_tokens": 2},
            headers={**auth(stack), "origin": CORS_ORIGIN},
        )
        other = await http.get("/v1/models", headers={**auth(stack), "origin": "https://evil.example"})
        foreign = await http.options(
            "/v1/chat/completions", headers={**preflight_headers, "origin": "https://evil.example"}
        )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == CORS_ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "x-stainless-lang" in preflight.headers["access-control-allow-headers"]
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == CORS_ORIGIN
    exposed = answer.headers["access-control-expose-headers"]
    for header in ("x-request-id", "x-atoma-node", "x-atoma-cost", "x-ratelimit-remaining-requests", "retry-after"):
        assert header in exposed
    assert "access-control-allow-origin" not in other.headers
    assert "access-control-allow-origin" not in foreign.headers


async def test_grpc_callers_see_the_same_model_and_quote(stack: Stack) -> None:
    from atoma_proxy.clients import NotFoundError, RoutingClient

    async with client(stack) as api:
        rest = await api.models.retrieve(CHAT)
    async with await RoutingClient.connect(stack.core_target, api_key=stack.api_key) as core:
        model = await core.get_model(CHAT)
        quote = await core.estimate_cost(
            chat_completion={"model": CHAT, "messages": MESSAGES, "max_tokens": 10, "n": 2}
        )
        with pytest.raises(NotFoundError):
            await core.get_model("atoma/none")
    assert (model.kind, model.context_length, model.created, list(model.nodes)) == (
        "chat",
        1024,
        CREATED,
        ["fast", "steady"],
    )
    assert (
        model.raw.pricing.input_per_million.max_micro_usd
        == (rest.model_extra or {})["price_range"]["input_per_million"]["max_micro_usd"]
    )
    assert (quote.prompt_tokens, quote.reserved_completion_tokens) == (10, 20)
    assert quote.min_cost_micro_usd < quote.max_cost_micro_usd == quote.reserved_micro_usd
