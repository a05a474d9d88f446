"""The Vercel AI SDK's default OpenAI provider (`createOpenAI(...)(model)`, the Responses API) streaming
through the facade: `streamText` in Node.js (tests/js/stream_text.mjs) against the real stack."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import CHAT, Stack
from tests.support.stack import IN_PROCESS, Topology

JS_TESTS = Path(__file__).resolve().parents[1] / "js"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


async def _stream_text(stack: Stack, max_tokens: int) -> dict[str, object]:
    assert (JS_TESTS / "node_modules" / "ai").exists(), "tests/js's npm packages are missing: run `make install`"
    env = {
        **os.environ,
        "ATOMA_BASE_URL": stack.base_url,
        "ATOMA_API_KEY": stack.api_key,
        "ATOMA_MODEL": CHAT,
        "ATOMA_MAX_TOKENS": str(max_tokens),
    }
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE, "stream_text.mjs", cwd=JS_TESTS, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        output, errors = await asyncio.wait_for(process.communicate(), timeout=120)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, errors.decode()
    result = json.loads(output.decode().strip().splitlines()[-1])
    assert isinstance(result, dict)
    return result


@pytest.mark.parametrize("stack", [Topology(IN_PROCESS, "sqlite")], indirect=True, ids=lambda t: t.id)
async def test_stream_text_with_the_default_provider(stack: Stack) -> None:
    result = await _stream_text(stack, 1000)
    assert result["error"] is None
    assert result["streamed"] and result["streamed"] == result["text"]
    assert result["finishReason"] == "stop"
    usage = result["usage"]
    assert isinstance(usage, dict)
    assert usage["outputTokens"] == len(str(result["text"]).split())
    assert usage["inputTokens"] > 0
