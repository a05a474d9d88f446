"""OpenAI's duration format and the choice of the bucket the headers describe."""

from __future__ import annotations

import pytest

from atoma_proxy.core.ratelimit import format_duration
from atoma_proxy.core.ratelimit.gcra import Bucket, BucketState, Kind, Scope
from atoma_proxy.core.ratelimit.headers import ratelimit_headers


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.0001, "1ms"),
        (0.059, "59ms"),
        (0.999, "999ms"),
        (1, "1s"),
        (8.64, "8.64s"),
        (17.5, "17.5s"),
        (59.9991, "1m0s"),
        (60, "1m0s"),
        (360, "6m0s"),
        (361.25, "6m1.25s"),
        (3600, "1h0m0s"),
        (3723.5, "1h2m3.5s"),
        (-1, "0s"),
    ],
)
def test_durations_read_like_openais(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def _state(scope: Scope, kind: Kind, limit: int, remaining: int, reset: float) -> BucketState:
    return BucketState(Bucket(f"{scope}:{kind}", scope, kind, limit), remaining, reset)


def test_the_bucket_with_least_remaining_is_reported_per_kind() -> None:
    headers = ratelimit_headers(
        [
            _state("API key", "requests", 100, 7, 3.0),
            _state("user", "requests", 10, 9, 6.0),
            _state("API key", "tokens", 1000, 400, 36.0),
            _state("user", "tokens", 500, 400, 12.0),
        ]
    )
    assert headers == [
        ("x-ratelimit-limit-requests", "100"),
        ("x-ratelimit-remaining-requests", "7"),
        ("x-ratelimit-reset-requests", "3s"),
        # A tie on remaining: the smaller limit is the tighter one.
        ("x-ratelimit-limit-tokens", "500"),
        ("x-ratelimit-remaining-tokens", "400"),
        ("x-ratelimit-reset-tokens", "12s"),
    ]


def test_only_limited_kinds_have_headers() -> None:
    assert [name for name, _ in ratelimit_headers([_state("user", "tokens", 5, 5, 0)])] == [
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
    ]
    assert ratelimit_headers([]) == []
