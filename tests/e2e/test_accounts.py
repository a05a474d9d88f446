"""Accounts, black-box: REST through the facade, gRPC against the core, and two cores sharing one database.

The first tests drive the shared e2e stack (facade + core + simulated nodes, on SQLite and on PostgreSQL) the
way a user would: register, log in, get credit, make a key, chat with it through the official `openai` SDK,
see the request in the usage history, revoke the key. The last one starts two `atoma-proxy core` processes on
one PostgreSQL database and checks the issue's acceptance: a key revoked through one is refused by both within
a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import openai
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atoma_proxy.clients import AccountClient, AuthenticationError, RoutingClient
from atoma_proxy.config import DatabaseSettings
from atoma_proxy.core.accounts import AccessTokenCodec, PasswordHasher
from atoma_proxy.core.accounts.logins import Logins
from atoma_proxy.core.accounts.users_admin import create_user
from atoma_proxy.core.errors import AlreadyExists
from atoma_proxy.core.persistence import create_engine, session_factory
from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2 as pb
from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2_grpc as pb_grpc
from tests.e2e.conftest import ADMIN_TOKEN, CHAT, Stack
from tests.support.databases import temporary_database_sync
from tests.support.processes import ATOMA_PROXY, free_port

PASSWORD = "correct horse battery"
# Bounded polling of things the core does after answering (metering, "last used"): 100 x 0.05 s at most.
POLL_ATTEMPTS, POLL_INTERVAL = 100, 0.05


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


ADMIN = _bearer(ADMIN_TOKEN)


@pytest.fixture
async def rest(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.facade_url, timeout=30) as client:
        yield client


async def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


async def _account(rest: httpx.AsyncClient) -> tuple[str, str, dict[str, Any]]:
    """A new account: (user id, email, the login grant)."""
    email = f"e2e-{secrets.token_hex(6)}@example.com"
    registered = await _ok(await rest.post("/v1/auth/register", json={"email": email, "password": PASSWORD}))
    grant = await _ok(await rest.post("/v1/auth/login", json={"email": email, "password": PASSWORD}))
    return registered["user"]["id"], email, grant


async def _poll(check) -> Any:  # type: ignore[no-untyped-def]
    """`await check()` until it returns something truthy, at most POLL_ATTEMPTS times."""
    for _ in range(POLL_ATTEMPTS):
        result = await check()
        if result:
            return result
        await asyncio.sleep(POLL_INTERVAL)
    raise AssertionError("the condition never held")


async def test_register_login_key_chat_usage_revoke(stack: Stack, rest: httpx.AsyncClient) -> None:
    user_id, email, grant = await _account(rest)
    token = _bearer(grant["access_token"])
    credit = {"amount_micro_usd": "5000000", "idempotency_key": f"e2e-{user_id}"}

    credited = await _ok(await rest.post(f"/v1/admin/users/{user_id}/credits", json=credit, headers=ADMIN))
    created = await _ok(await rest.post("/v1/api-keys", json={"name": "sdk"}, headers=token))
    key = created["secret"]
    async with openai.AsyncOpenAI(base_url=stack.base_url, api_key=key, max_retries=0) as sdk:
        response = await sdk.chat.completions.with_raw_response.create(
            model=CHAT, messages=[{"role": "user", "content": "hello"}], max_tokens=3
        )
        completion = response.parse()
        request_id = response.headers["x-request-id"]

        async def metered() -> list[dict[str, Any]]:
            usage = await _ok(await rest.get("/v1/usage", headers=_bearer(key)))
            return [record for record in usage["records"] if record["request_id"] == request_id]

        [record] = await _poll(metered)
        balance = await _ok(await rest.get("/v1/balance", headers=token))

        async def used_key() -> list[dict[str, Any]]:
            listed = await _ok(await rest.get("/v1/api-keys", headers=token))
            return [k for k in listed["api_keys"] if k["id"] == created["api_key"]["id"] and "last_use_time" in k]

        [listed_key] = await _poll(used_key)
        revoked = await _ok(await rest.delete(f"/v1/api-keys/{created['api_key']['id']}", headers=token))
        with pytest.raises(openai.AuthenticationError) as refused:
            await sdk.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "again"}])

    assert credited["applied"] is True and credited["balance"]["available_micro_usd"] == "5000000"
    assert created["api_key"]["state"] == "API_KEY_STATE_ACTIVE" and key.startswith(created["api_key"]["prefix"])
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    assert (record["model"], record["completion_tokens"]) == (CHAT, "3")
    assert int(balance["balance"]["available_micro_usd"]) == 5_000_000 - int(record["cost_micro_usd"])
    assert int(balance["balance"]["debited_micro_usd"]) == int(record["cost_micro_usd"]) > 0
    assert listed_key["name"] == "sdk" and listed_key["prefix"] == key[:16]
    assert revoked["api_key"]["state"] == "API_KEY_STATE_REVOKED" and revoked["api_key"]["revoke_time"]
    assert refused.value.status_code == 401 and refused.value.code == "invalid_api_key"
    summary = await _ok(await rest.get("/v1/usage/summary", headers=token))
    assert [(m["model"], m["requests"]) for m in summary["models"]] == [(CHAT, "1")]
    profile = await _ok(await rest.get("/v1/account", headers=token))
    assert (profile["user"]["id"], profile["user"]["email"], profile["user"]["has_password"]) == (user_id, email, True)


async def test_refresh_rotation_and_reuse_over_rest(rest: httpx.AsyncClient) -> None:
    _, _, grant = await _account(rest)

    rotated = await _ok(await rest.post("/v1/auth/refresh", json={"refresh_token": grant["refresh_token"]}))
    reused = await rest.post("/v1/auth/refresh", json={"refresh_token": grant["refresh_token"]})
    descendant = await rest.post("/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    access = await rest.get("/v1/account", headers=_bearer(rotated["access_token"]))

    assert rotated["refresh_token"] != grant["refresh_token"] and rotated["token_type"] == "Bearer"
    for response in (reused, descendant, access):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "token_revoked"
        assert response.json()["error"]["type"] == "authentication_error"


async def test_rest_errors_are_openai_envelopes(rest: httpx.AsyncClient) -> None:
    user_id, email, grant = await _account(rest)
    key = (await _ok(await rest.post("/v1/api-keys", json={"name": "k"}, headers=_bearer(grant["access_token"]))))[
        "secret"
    ]

    cases = [
        (await rest.post("/v1/auth/register", json={"email": email, "password": PASSWORD}), 409, "email_taken"),
        (await rest.post("/v1/auth/login", json={"email": email, "password": "nope-nope"}), 401, "invalid_credentials"),
        (await rest.post("/v1/auth/register", json={"email": "x", "password": PASSWORD}), 400, "invalid_request"),
        (await rest.get("/v1/balance"), 401, "missing_credentials"),
        (await rest.post("/v1/api-keys", json={"name": "more"}, headers=_bearer(key)), 403, "permission_denied"),
        (await rest.get(f"/v1/admin/users/{user_id}/balance", headers=_bearer(key)), 403, "permission_denied"),
        (await rest.get("/v1/admin/users/999999999/balance", headers=ADMIN), 404, "user_not_found"),
        (await rest.delete("/v1/api-keys/999999999", headers=_bearer(grant["access_token"])), 404, "api_key_not_found"),
    ]
    for response, status, code in cases:
        body = response.json()
        assert (response.status_code, body["error"]["code"]) == (status, code), body
        assert set(body["error"]) == {"message", "type", "param", "code"}
    assert cases[2][0].json()["error"]["param"] == "email"


async def test_account_rpcs_over_grpc_stubs(stack: Stack, rest: httpx.AsyncClient) -> None:
    user_id, email, grant = await _account(rest)

    async with grpc.aio.insecure_channel(stack.core_target) as channel:
        stub = pb_grpc.AccountServiceStub(channel)
        metadata = tuple(_bearer(grant["access_token"]).items())
        profile = await stub.GetProfile(pb.GetProfileRequest(), metadata=metadata)
        created = await stub.CreateApiKey(pb.CreateApiKeyRequest(name="grpc"), metadata=metadata)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateApiKey(
                pb.CreateApiKeyRequest(name="x"), metadata=(("authorization", f"Bearer {created.secret}"),)
            )

    assert (str(profile.user.id), profile.user.email) == (user_id, email)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_users_create_makes_a_user_that_can_log_in(tmp_path: Path) -> None:
    email = f"cli-{secrets.token_hex(6)}@example.com"
    with temporary_database_sync("sqlite") as url:
        env = {**os.environ, "ATOMA_CONFIG": str(tmp_path / "none.toml"), "ATOMA_DATABASE__URL": url}
        (tmp_path / "none.toml").write_text("")
        command = [*ATOMA_PROXY, "users", "create", "--email", email.upper(), "--password"]
        created = await asyncio.to_thread(
            subprocess.run, command, input=PASSWORD + "\n", env=env, capture_output=True, text=True, timeout=120
        )
        assert created.returncode == 0 and created.stdout.strip().isdigit(), created.stderr
        engine = create_engine(DatabaseSettings(url=url))
        try:
            codec = AccessTokenCodec(JWT_SECRET, 15)
            logins = Logins(session_factory(engine), PasswordHasher(), codec, refresh_token_days=1, clock=time.time)
            grant = await logins.login(email, PASSWORD)
        finally:
            await engine.dispose()
        with pytest.raises(AlreadyExists):
            await create_user(url, email=email)

    assert codec.verify(grant.access_token).user_id == int(created.stdout)


# Two cores on one database: revocation reaches every instance within a second.

KEY_CACHE_TTL = 1.0  # core.api_key_cache_ttl's default, which the cores below run with
ROUND_INTERVAL = 0.1  # seconds slept between polling rounds
MAX_ROUNDS = 50  # a generous bound, so a core that never refuses fails the test instead of hanging it
JWT_SECRET = "two-cores-jwt-secret-0123456789abcdef"


def _serving(target: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


@contextlib.contextmanager
def _cores(database_url: str, tmp: Path, count: int) -> Iterator[list[str]]:
    """`count` `atoma-proxy core` processes on one database; yields their gRPC targets once all serve."""
    targets = [f"127.0.0.1:{free_port()}" for _ in range(count)]
    (tmp / "empty.toml").write_text("")
    processes = []
    try:
        for n, target in enumerate(targets):
            env = {
                **os.environ,
                "ATOMA_CONFIG": str(tmp / "empty.toml"),
                "ATOMA_DATABASE__URL": database_url,
                "ATOMA_CORE__LISTEN": target,
                "ATOMA_ACCOUNTS__JWT_SECRET": JWT_SECRET,
                "ATOMA_CORE__SHUTDOWN_GRACE": "0",
            }
            with (tmp / f"core-{n}.log").open("wb") as log:
                processes.append(
                    subprocess.Popen([*ATOMA_PROXY, "core"], stdout=log, stderr=subprocess.STDOUT, env=env)
                )
        for n, (process, target) in enumerate(zip(processes, targets, strict=True)):
            for _ in range(600):
                assert process.poll() is None, (tmp / f"core-{n}.log").read_text()
                if _serving(target):
                    break
                time.sleep(0.05)
            else:
                raise AssertionError(f"core {n} never served:\n{(tmp / f'core-{n}.log').read_text()}")
        yield targets
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def two_cores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    with temporary_database_sync("postgresql") as url, _cores(url, tmp_path_factory.mktemp("two-cores"), 2) as cores:
        yield cores


async def _refused(client: RoutingClient) -> bool:
    try:
        await client.list_models(timeout=10)
    except AuthenticationError as error:
        assert error.reason == "INVALID_API_KEY"
        return True
    return False


async def test_a_revoked_key_is_refused_by_every_instance_within_one_second(two_cores: list[str]) -> None:
    target_a, target_b = two_cores
    async with await AccountClient.connect(target_a) as accounts:
        email = f"two-cores-{secrets.token_hex(6)}@example.com"
        await accounts.register(email=email, password=PASSWORD)
        await accounts.login(email=email, password=PASSWORD)
        created = await accounts.create_api_key(name="shared")
        async with (
            await RoutingClient.connect(target_a, api_key=created.secret) as core_a,
            await RoutingClient.connect(target_b, api_key=created.secret) as core_b,
        ):
            # Both instances accept the key, and now hold it in their caches.
            assert not await _refused(core_a) and not await _refused(core_b)

            await accounts.revoke_api_key(key_id=created.api_key.id)

            first_refusal: dict[str, int] = {}
            for round_number in range(MAX_ROUNDS):
                refused_a, refused_b = await asyncio.gather(_refused(core_a), _refused(core_b))
                for name, refused in (("a", refused_a), ("b", refused_b)):
                    if refused:
                        first_refusal.setdefault(name, round_number)
                    else:
                        assert name not in first_refusal, f"core {name} accepted the key again after refusing it"
                if len(first_refusal) == 2:
                    break
                await asyncio.sleep(ROUND_INTERVAL)

    # Round k starts after k sleeps of ROUND_INTERVAL since the revoke: refusing by round TTL / interval means
    # refusing within the key cache's TTL of one second (a slow machine only adds time, so only helps).
    assert first_refusal.get("a") == 0, f"the instance that revoked the key must refuse it at once: {first_refusal}"
    assert first_refusal.get("b") is not None, f"core b still accepted the key after {MAX_ROUNDS} rounds"
    assert first_refusal["b"] <= math.ceil(KEY_CACHE_TTL / ROUND_INTERVAL), first_refusal
