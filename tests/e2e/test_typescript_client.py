"""The TypeScript client (src/clients/typescript) against the running core, through Node's test runner.

The package is compiled with its own tsc into a temporary directory, then `node --test` runs its tests
(test/*.test.ts) with the core's address, an API key, the models and the Python client's answer to the
same chat in the environment; this test asserts the runner's exit code and that every test passed.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path

import pytest

from atoma_proxy.clients import RoutingClient
from tests.e2e.conftest import CHAT, EMBED, SLOW_CHAT, Stack
from tests.support.processes import free_port
from tests.support.stack import IN_PROCESS, Topology

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "clients" / "typescript"
NODE = shutil.which("node")
# Every test of test/core.test.ts and test/units.test.ts must be among those that passed.
EXPECTED_TESTS = {
    "listModels returns the served models, sorted, OpenAI-shaped",
    "chatCompletion returns the chat.completion with usage, routing and cost",
    "streamChatCompletion yields chunks that concatenate to the answer, then usage",
    "completion and streamCompletion agree, as do their usages",
    "embeddings returns the list object with usage",
    "leaving the loop early cancels the RPC and the node's request",
    "cancel() ends the loop with CANCELLED and cancels the node's request",
    "an unknown model is NOT_FOUND with reason MODEL_NOT_FOUND and its param",
    "a streamed call fails the loop with the RoutingError",
    "bad parameters throw a TypeError before any call, a RoutingError never",
    "an authorization header in the call options replaces the client's key",
    "a bad API key is UNAUTHENTICATED with reason INVALID_API_KEY",
    "connecting to a port nobody listens on is UNAVAILABLE without a reason",
    "chatRequest types the known fields and passes the rest on as extra_json",
    "prompt and input take OpenAI's four shapes",
    "malformed parameters are refused before anything is sent",
    "a ConnectError's ErrorInfo, RetryInfo and routing headers become the RoutingError's fields",
    "a garbled ErrorInfo leaves the code and message intact",
}

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


async def _run(*args: str, env: dict[str, str] | None = None, cwd: Path = PACKAGE) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=300)
    finally:
        if process.returncode is None:  # timed out (or this test was cancelled): leave no process behind
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def _compile(out: Path) -> Path:
    """The package and its tests compiled into `out`, which resolves the npm packages of PACKAGE."""
    tsc = PACKAGE / "node_modules" / ".bin" / "tsc"
    assert tsc.exists(), "the TypeScript client's npm packages are missing: run `make install`"
    code, output = await _run(str(tsc), "-p", str(PACKAGE), "--outDir", str(out / "dist"))
    assert code == 0, f"tsc failed:\n{output}"
    (out / "node_modules").symlink_to(PACKAGE / "node_modules", target_is_directory=True)
    return out / "dist" / "src" / "clients" / "typescript" / "test"


async def _python_answer(stack: Stack) -> str:
    """The Python client's answer to the chat that core.test.ts sends (the simulator's replies are deterministic)."""
    async with await RoutingClient.connect(stack.core_target, api_key=stack.api_key) as client:
        result = await client.chat_completion_create(
            model=CHAT, messages=[{"role": "user", "content": "hello from typescript"}], max_tokens=6, seed=7
        )
    answer = result.data["choices"][0]["message"]["content"]
    assert isinstance(answer, str) and answer
    return answer


@pytest.mark.parametrize("stack", [Topology(IN_PROCESS, "sqlite")], indirect=True, ids=lambda t: t.id)
async def test_typescript_client_against_the_core(stack: Stack, tmp_path: Path) -> None:
    tests = await _compile(tmp_path)
    env = {
        "ATOMA_TS_TEST_CORE": stack.core_target,
        "ATOMA_TS_TEST_API_KEY": stack.api_key,
        "ATOMA_TS_TEST_CHAT_MODEL": CHAT,
        "ATOMA_TS_TEST_EMBED_MODEL": EMBED,
        "ATOMA_TS_TEST_EXPECTED_ANSWER": await _python_answer(stack),
        "ATOMA_TS_TEST_CLOSED_PORT": str(free_port()),
        "ATOMA_TS_TEST_SLOW_MODEL": SLOW_CHAT,
        "ATOMA_TS_TEST_SLOW_NODE": stack.nodes["slow"],
    }
    assert NODE is not None
    code, output = await _run(
        NODE,
        "--test",
        "--test-reporter=tap",
        "--test-timeout=60000",  # per test: a hang fails that test, with the others' results
        *(str(path) for path in sorted(tests.glob("*.test.js"))),
        env=env,
    )
    assert code == 0, output
    passed = set(re.findall(r"^\s*ok \d+ - (.+?)\s*$", output, re.MULTILINE))
    assert EXPECTED_TESTS <= passed, f"missing: {EXPECTED_TESTS - passed}\n{output}"
    counts = dict(re.findall(r"^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$", output, re.MULTILINE))
    assert counts["fail"] == counts["cancelled"] == counts["skipped"] == counts["todo"] == "0", output
    assert counts["pass"] == counts["tests"], output
