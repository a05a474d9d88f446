"""Schemathesis over the facade's own /openapi.json: whatever it sends, the facade never answers 5xx.

The fake core answers every call normally, so a 5xx could only come from the facade itself
(an unchecked type reaching the proto, a crash in translation). The HTTP calls are blocking
(requests), so they run in a worker thread while this loop keeps serving the facade and core.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.facade.conftest import API_KEY, RunningFacade
from tests.facade.fake_core import FakeCore

pytestmark = pytest.mark.slow

EXAMPLES = 300


async def test_no_5xx_for_generated_requests(facade: RunningFacade, core: FakeCore) -> None:
    async with httpx.AsyncClient(base_url=facade.base_url) as http:
        document = (await http.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(document)
    cases = st.one_of(schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE))
    seen: list[tuple[str, str, int]] = []

    def fuzz() -> None:
        with requests.Session() as session:

            @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            @given(case=cases)
            def call(case: schemathesis.Case) -> None:
                response = case.call(
                    base_url=facade.base_url,
                    session=session,
                    headers={"authorization": f"Bearer {API_KEY}"},
                    timeout=10,
                )
                seen.append((case.method, case.path, response.status_code))
                assert response.status_code < 500, (case.method, case.path, case.body, response.text)

            call()

    await asyncio.to_thread(fuzz)

    statuses = {status for _, _, status in seen}
    paths = {path for _, path, _ in seen}
    # The run reached the core (200s) and exercised the facade's own rejections (400s).
    assert 200 in statuses and 400 in statuses
    assert {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/images/generations"} <= paths
