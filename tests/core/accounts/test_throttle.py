"""Sign-in floods: Register, Login and RefreshToken throttled per client address and per email, over gRPC;
the argon2 queue bounded; the forwarded client address believed only from a trusted proxy."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
import redis.asyncio as aioredis
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.config import AccountsSettings, RateLimitSettings
from atoma_proxy.core.accounts import build_account_services
from atoma_proxy.core.accounts.passwords import PasswordHasher
from atoma_proxy.core.accounts.throttle import (
    AuthThrottle,
    LocalAttemptStore,
    RedisAttemptStore,
    auth_throttle_from_settings,
)
from atoma_proxy.core.auth import ApiKeyAuthenticator
from atoma_proxy.core.client_address import CLIENT_ADDRESS_KEY, TrustedProxies
from atoma_proxy.core.error_edge import ErrorEdgeInterceptor
from atoma_proxy.core.errors import RateLimited
from atoma_proxy.core.nodes.registry import NodeRegistry
from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2 as pb
from atoma_proxy.generated.atoma.accounts.v1 import account_service_pb2_grpc as pb_grpc
from tests.core.accounts.conftest import JWT_SECRET, FakeClock, cheap_hasher, new_email
from tests.core.ratelimit.conftest import REDIS_URL

PASSWORD = "password123"
LOOPBACK = ["127.0.0.1/32", "::1/128"]


async def _serve(
    sessions: async_sessionmaker[AsyncSession], throttle: AuthThrottle, hasher: PasswordHasher | None = None
) -> AsyncIterator[pb_grpc.AccountServiceStub]:
    api_keys = ApiKeyAuthenticator(sessions, 1.0)
    account_service, _ = build_account_services(
        AccountsSettings(jwt_secret=JWT_SECRET),
        sessions,
        api_keys,
        NodeRegistry.from_config([]),
        hasher=hasher or cheap_hasher(),
        clock=FakeClock(),
        throttle=throttle,
    )
    server = grpc.aio.server(interceptors=[ErrorEdgeInterceptor()])
    pb_grpc.add_AccountServiceServicer_to_server(account_service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield pb_grpc.AccountServiceStub(channel)
    finally:
        await server.stop(None)
        await throttle.aclose()


def _throttle(per_address: int, per_email: int, trusted: list[str] = LOOPBACK) -> AuthThrottle:
    return AuthThrottle(
        LocalAttemptStore(), per_address=per_address, per_email=per_email, proxies=TrustedProxies(trusted)
    )


def _from(address: str) -> tuple[tuple[str, str], ...]:
    return ((CLIENT_ADDRESS_KEY, address),)


async def _refused(call) -> float:  # type: ignore[no-untyped-def]
    """The retry delay of a call refused as RATE_LIMITED (RESOURCE_EXHAUSTED with ErrorInfo and RetryInfo)."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(raised.value)
    assert status is not None
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info) and info.reason == "RATE_LIMITED"
    assert any(detail.Unpack(retry) for detail in status.details[1:])
    return retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9


async def _wrong_login(stub: pb_grpc.AccountServiceStub, email: str, metadata=()) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    try:
        await stub.Login(pb.LoginRequest(email=email, password="wrong-password"), metadata=metadata)
    except grpc.aio.AioRpcError as error:
        return error.code()
    raise AssertionError("a wrong password logged in")


async def test_login_flood_from_one_address_is_refused_before_hashing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async for stub in _serve(sessions, _throttle(per_address=3, per_email=0)):
        codes = [await _wrong_login(stub, new_email()) for _ in range(3)]
        assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 3

        delay = await _refused(stub.Login(pb.LoginRequest(email=new_email(), password=PASSWORD)))
        assert 0 < delay <= 60
        # Register and RefreshToken count against the same address.
        await _refused(stub.Register(pb.RegisterRequest(email=new_email(), password=PASSWORD)))
        await _refused(stub.RefreshToken(pb.RefreshTokenRequest(refresh_token="rt-atoma-x")))
        # Another client, named by the trusted facade (this loopback peer), is not held up.
        assert await _wrong_login(stub, new_email(), _from("203.0.113.7")) == grpc.StatusCode.UNAUTHENTICATED


async def test_login_flood_on_one_email_is_refused_from_any_address(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    victim = new_email()
    async for stub in _serve(sessions, _throttle(per_address=0, per_email=2)):
        for address in ("198.51.100.1", "198.51.100.2"):
            assert await _wrong_login(stub, victim, _from(address)) == grpc.StatusCode.UNAUTHENTICATED

        await _refused(stub.Login(pb.LoginRequest(email=victim.upper(), password=PASSWORD), metadata=_from("::7")))
        assert await _wrong_login(stub, new_email()) == grpc.StatusCode.UNAUTHENTICATED


async def test_forwarded_client_address_is_ignored_from_an_untrusted_peer(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async for stub in _serve(sessions, _throttle(per_address=2, per_email=0, trusted=[])):
        for address in ("198.51.100.1", "198.51.100.2"):
            assert await _wrong_login(stub, new_email(), _from(address)) == grpc.StatusCode.UNAUTHENTICATED

        # A third "address" claimed by the caller itself is still the same peer.
        await _refused(stub.Login(pb.LoginRequest(email=new_email(), password=PASSWORD), metadata=_from("10.9.9.9")))


async def test_throttle_in_redis_is_shared_by_core_instances() -> None:
    prefix = f"atoma-test:{secrets.token_hex(6)}:"
    settings = RateLimitSettings(redis_url=REDIS_URL, key_prefix=prefix)
    accounts = AccountsSettings(auth_attempts_per_address=0, auth_attempts_per_email=3)
    first, second = auth_throttle_from_settings(accounts, settings), auth_throttle_from_settings(accounts, settings)
    try:
        assert isinstance(first._store, RedisAttemptStore)
        email = new_email()
        for throttle in (first, second, first):
            await throttle.check("192.0.2.1", email)
        with pytest.raises(RateLimited) as refused:
            await second.check("192.0.2.2", email)
        assert refused.value.retry_after is not None and refused.value.retry_after > 0
    finally:
        await first.aclose()
        await second.aclose()
        client = aioredis.Redis.from_url(REDIS_URL)
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        assert keys and all(b"@" not in key for key in keys)  # emails are stored as digests only
        await client.delete(*keys)
        await client.aclose()


async def test_hashing_queue_is_bounded_and_refuses_at_once_beyond_it() -> None:
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, max_concurrent=1, max_waiting=2)

    results = await asyncio.gather(*(hasher.hash(f"password-{i}") for i in range(6)), return_exceptions=True)

    hashed = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, RateLimited)]
    assert (len(hashed), len(refused)) == (3, 3)  # one hashing, two waiting; the rest told to retry
    assert all(r.retry_after == 1.0 for r in refused)
    assert await hasher.verify(hashed[0], "password-0")  # the queue drained: hashing works again


async def test_login_beyond_the_hashing_queue_is_rate_limited_with_retry_info(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    slow = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, max_concurrent=1, max_waiting=1)
    release = asyncio.Event()
    original: Callable[..., object] = slow._verify

    def blocking_verify(stored: str, password: str) -> bool:  # holds the only slot until released
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=30)
        return bool(original(stored, password))

    loop = asyncio.get_running_loop()
    slow._verify = blocking_verify  # type: ignore[method-assign]
    slow._dummy_hash = await cheap_hasher().hash("dummy")
    async for stub in _serve(sessions, _throttle(per_address=0, per_email=0), hasher=slow):
        running = [asyncio.ensure_future(_wrong_login(stub, new_email())) for _ in range(2)]
        for _ in range(1000):  # until one verifies and one waits (bounded: 10 s)
            if slow._pending >= 2:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the two logins never reached the hasher")

        await _refused(stub.Login(pb.LoginRequest(email=new_email(), password=PASSWORD)))

        release.set()
        assert await asyncio.gather(*running) == [grpc.StatusCode.UNAUTHENTICATED] * 2


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    with pytest.raises(ValueError, match="trusted_proxies"):
        AccountsSettings(trusted_proxies=["facade.internal"])
