"""Images come from the proxy, never from a node's address: `b64_json` as asked, `url` as a data: URL."""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

import httpx
import openai

from tests.e2e.conftest import IMAGE, Stack


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
