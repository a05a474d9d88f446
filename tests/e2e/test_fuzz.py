"""Schemathesis over the running facade's OpenAPI document, with the real core behind it: no 5xx.

Generated bodies mostly name unknown models, so they exercise the facade's translation and the
core's validation and error mapping; a share of cases is pinned to a served model so that some
requests reach a node and come back 200.
"""

from __future__ import annotations

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.e2e.conftest import CHAT, EMBED, IMAGE, Stack

pytestmark = pytest.mark.slow

EXAMPLES = 150
SERVED = {
    "/v1/chat/completions": CHAT,
    "/v1/completions": CHAT,
    "/v1/embeddings": EMBED,
    "/v1/images/generations": IMAGE,
}


def test_no_5xx_against_the_real_core(stack: Stack) -> None:
    document = httpx.get(f"{stack.facade_url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    cases = st.one_of(schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE))
    seen: list[int] = []

    with requests.Session() as session:

        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=cases, pin_model=st.booleans())
        def call(case: schemathesis.Case, pin_model: bool) -> None:
            if pin_model and isinstance(case.body, dict) and case.path in SERVED:
                case.body["model"] = SERVED[case.path]
            response = case.call(
                base_url=stack.facade_url,
                session=session,
                headers={"authorization": f"Bearer {stack.api_key}"},
                timeout=30,
            )
            seen.append(response.status_code)
            assert response.status_code < 500, (case.method, case.path, case.body, response.text)

        call()

    assert 400 in seen or 404 in seen
