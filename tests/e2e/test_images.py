"""Images come from the proxy, never from a node's address: `b64_json` as asked, `url` as a data: URL."""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

import httpx
import openai

from tests.e2e.conftest import ADMIN_TOKEN, IMAGE, Stack


def client(stack: Stack) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=stack.base_url, api_key=stack.api_key, max_retries=0)


def _node_addresses(stack: Stack) -> list[str]:
    return [urlsplit(url).netloc for url in stack.nodes.values()]


async def test_url_is_a_data_url_and_no_node_address_leaks(stack: Stack) -> None:
    async with client(stack) as api:
        raw = await api.images.with_raw_response.generate(model=IMAGE, prompt="a node", n=2)
    images = raw.parse()
    assert len(images.data) == 2
    for image in images.data:
        assert image.b64_json is None
        assert image.url.startswith("data:image/png;base64,")
        assert base64.b64decode(image.url.split(",", 1)[1]).startswith(b"\x89PNG")
    assert not any(address in raw.text for address in _node_addresses(stack))
    assert "/sim/images/" not in raw.text


async def test_b64_json_as_asked(stack: Stack) -> None:
    async with client(stack) as api:
        images = await api.images.generate(model=IMAGE, prompt="a node", response_format="b64_json")
    assert images.data[0].url is None
    assert base64.b64decode(images.data[0].b64_json).startswith(b"\x89PNG")


async def test_unknown_response_format_is_refused(stack: Stack) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{stack.base_url}/images/generations",
            json={"model": IMAGE, "prompt": "a node", "response_format": "png"},
            headers={"authorization": f"Bearer {stack.api_key}"},
        )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "response_format"


async def test_images_are_priced_at_the_price_of_a_node_added_at_runtime(stack: Stack) -> None:
    """Issue 11: a node added through the admin API prices its images (it used to price them at 0)."""
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    user = {"authorization": f"Bearer {stack.api_key}"}
    node = {"node_id": "runtime-image", "url": stack.nodes["fast"], "models": [IMAGE], "price_per_image": 777_000}
    async with httpx.AsyncClient(base_url=stack.facade_url, timeout=30) as http:
        added = await http.post("/v1/admin/nodes", json=node, headers=admin)
        assert added.status_code == 200, added.text
        assert int(added.json()["node"]["price_per_image"]) == 777_000
        try:
            quoted = await http.post(
                "/v1/quote/images/generations", json={"model": IMAGE, "prompt": "a node", "n": 2}, headers=user
            )
            assert quoted.status_code == 200, quoted.text
            costs = {n["node_id"]: n["cost_micro_usd"] for n in quoted.json()["nodes"]}
            assert costs["runtime-image"] == 2 * 777_000
            assert quoted.json()["max_cost_micro_usd"] == 2 * 777_000  # the dearest node prices the hold
        finally:
            assert (await http.delete("/v1/admin/nodes/runtime-image", headers=admin)).status_code == 200
