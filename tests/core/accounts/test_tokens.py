"""Access tokens: HS256 JWTs with a lifetime in minutes; refresh tokens: random, stored hashed."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from atoma_proxy.core.accounts.tokens import (
    AccessTokenCodec,
    hash_refresh_token,
    new_refresh_token,
    new_session_id,
)
from atoma_proxy.core.errors import Unauthenticated
from tests.core.accounts.conftest import ACCESS_MINUTES, JWT_SECRET, FakeClock


def _reason(error: pytest.ExceptionInfo[Unauthenticated]) -> str:
    return error.value.reason


def test_claims_and_a_lifetime_in_minutes(codec: AccessTokenCodec, clock: FakeClock) -> None:
    token = codec.issue(42, "s" * 32)

    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False})
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert claims["sub"] == "42" and claims["sid"] == "s" * 32 and claims["iss"] == "atoma-proxy"
    assert claims["iat"] == int(clock.now)
    assert claims["exp"] - claims["iat"] == ACCESS_MINUTES * 60  # minutes, not the original's days
    verified = codec.verify(token)
    assert (verified.user_id, verified.session_id) == (42, "s" * 32)


def test_a_token_expires_after_its_minutes(codec: AccessTokenCodec, clock: FakeClock) -> None:
    token = codec.issue(1, new_session_id())

    clock.advance(ACCESS_MINUTES * 60 - 1)
    assert codec.verify(token).user_id == 1
    clock.advance(1)
    with pytest.raises(Unauthenticated) as expired:
        codec.verify(token)
    assert _reason(expired) == "TOKEN_EXPIRED"


def _forge(claims: dict[str, object], header: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part(header)}.{part(claims)}."


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(
            lambda now: jwt.encode(_claims(now), "another-secret-0123456789abcdefghij-also-long-enough-for-hs512!!"),
            id="other-secret",
        ),
        pytest.param(lambda now: _forge(_claims(now), {"alg": "none", "typ": "JWT"}), id="alg-none"),
        pytest.param(lambda now: jwt.encode(_claims(now), JWT_SECRET, algorithm="HS512"), id="other-algorithm"),
        pytest.param(lambda now: jwt.encode({**_claims(now), "sid": None}, JWT_SECRET), id="no-session"),
        pytest.param(lambda now: jwt.encode({**_claims(now), "sub": "x"}, JWT_SECRET), id="bad-subject"),
        pytest.param(lambda now: jwt.encode({**_claims(now), "iss": "evil"}, JWT_SECRET), id="other-issuer"),
        pytest.param(lambda now: "sk-not-a-jwt", id="garbage"),
    ],
)
def test_forged_or_malformed_tokens_are_invalid(codec: AccessTokenCodec, clock: FakeClock, make_token) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Unauthenticated) as invalid:
        codec.verify(make_token(int(clock.now)))
    assert _reason(invalid) == "INVALID_TOKEN"


def test_a_tampered_payload_breaks_the_signature(codec: AccessTokenCodec) -> None:
    header, _, signature = codec.issue(1, "a" * 32).split(".")
    payload = base64.urlsafe_b64encode(json.dumps(_claims(0, user="2")).encode()).decode().rstrip("=")

    with pytest.raises(Unauthenticated) as invalid:
        codec.verify(f"{header}.{payload}.{signature}")
    assert _reason(invalid) == "INVALID_TOKEN"


def _claims(now: int, user: str = "1") -> dict[str, object]:
    return {"iss": "atoma-proxy", "sub": user, "sid": "a" * 32, "iat": now, "exp": now + 600}


def test_refresh_tokens_are_random_and_stored_as_sha256() -> None:
    first, second = new_refresh_token(), new_refresh_token()

    assert first != second and first.startswith("rt-atoma-") and len(first) >= 9 + 43
    assert len(hash_refresh_token(first)) == 64 and hash_refresh_token(first) == hash_refresh_token(first)
    assert hash_refresh_token(first) != hash_refresh_token(second)


def test_clock_fixture_is_independent(clock: FakeClock) -> None:
    assert clock() == clock.now
