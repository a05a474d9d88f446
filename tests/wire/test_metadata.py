"""The metadata names of src/wire/metadata.py are the ones the core actually sends."""

from __future__ import annotations

from atoma_proxy.core.ratelimit.gcra import Bucket, BucketState
from atoma_proxy.core.ratelimit.headers import ratelimit_headers
from atoma_proxy.core.status import NO_RETRY
from atoma_proxy.facade.cors import EXPOSED_HEADERS
from atoma_proxy.wire import metadata


def test_rate_limit_headers_are_the_ones_the_rate_limiter_sends() -> None:
    states = [
        BucketState(Bucket("k", "API key", "requests", 10), remaining=9, reset=6.0),
        BucketState(Bucket("k", "API key", "tokens", 1000), remaining=900, reset=6.0),
    ]

    names = [name for name, _ in ratelimit_headers(states)]

    assert names == list(metadata.RATE_LIMIT_HEADERS)
    assert all(name.startswith(metadata.RATE_LIMIT_PREFIX) for name in names)


def test_browsers_may_read_every_routing_and_rate_limit_header() -> None:
    wanted = {metadata.REQUEST_ID, metadata.NODE, metadata.ATTEMPTS, metadata.COST, *metadata.RATE_LIMIT_HEADERS}

    assert wanted | {metadata.RETRY_AFTER, metadata.RETRY_AFTER_MS} == set(EXPOSED_HEADERS)


def test_names_are_lower_case_metadata_keys() -> None:
    names = [value for name, value in vars(metadata).items() if name.isupper() and isinstance(value, str)]

    assert names and all(name == name.lower() and " " not in name for name in names)
    assert NO_RETRY == (metadata.RETRY_PUSHBACK_MS, "-1")
