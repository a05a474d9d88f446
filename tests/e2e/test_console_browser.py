"""The web console in a real browser: Debian's headless chromium, driven by playwright-core from Node.

tests/browser/console_flow.mjs signs up and logs in through the console's forms, creates a key there and
hands its secret over; this test credits the new user through the admin API and makes a chat request with
the key through the official `openai` SDK; the script then reads the overview's usage charts and recent
requests and the models page, revokes the key (which the API then refuses) and opens the operator view (nodes,
traffic, top users), where it adds a node and drains it (removed again at the end: the stack is shared).
Screenshots land in build/screenshots/<topology>-<database kind>/ (`make test` installs chromium and the npm package).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import ADMIN_TOKEN, CHAT, IMAGE, Stack

ROOT = Path(__file__).resolve().parents[2]
BROWSER_TESTS = ROOT / "tests" / "browser"
SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Each step of the script (a page load, a click) waits 20 s at most; the whole run is bounded here.
STEP_TIMEOUT = 120
# The node the operator view adds and drains: the "steady" simulator again, for a model no other test asks for.
EXTRA_NODE, EXTRA_MODEL = "console-added", "atoma/console-only"


def _remove_node(stack: Stack, node_id: str) -> None:
    with httpx.Client(base_url=stack.facade_url, timeout=30) as rest:
        removed = rest.delete(f"/v1/admin/nodes/{node_id}", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert removed.status_code in (200, 404), removed.text


def _read_line(process: subprocess.Popen[str], prefix: str) -> str:
    assert process.stdout is not None
    for line in process.stdout:  # ends at EOF, when the script exits
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    process.wait(timeout=STEP_TIMEOUT)
    stderr = process.stderr.read() if process.stderr is not None else ""
    raise AssertionError(f"the browser script exited ({process.returncode}) before {prefix!r}:\n{stderr}")


def _chat_with(stack: Stack, secret: str) -> Any:
    """Credit the key's user through the admin API, then one chat completion with the key."""
    with httpx.Client(base_url=stack.facade_url, timeout=30) as rest:
        account = rest.get("/v1/account", headers={"authorization": f"Bearer {secret}"})
        assert account.status_code == 200, account.text
        user_id = account.json()["user"]["id"]
        credit = {"amount_micro_usd": "5000000", "idempotency_key": f"console-{uuid.uuid4()}"}
        credited = rest.post(
            f"/v1/admin/users/{user_id}/credits", json=credit, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert credited.status_code == 200, credited.text
    client = openai.OpenAI(base_url=stack.base_url, api_key=secret, max_retries=0)
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=CHAT, messages=[{"role": "user", "content": "hello from the console test"}]
        )
    finally:
        client.close()
    # Metering ends after the answer: wait until the record is there before the console looks (100 x 0.05 s).
    with httpx.Client(base_url=stack.facade_url, timeout=30) as rest:
        for _ in range(100):
            usage = rest.get("/v1/usage", headers={"authorization": f"Bearer {secret}"}).json()
            if usage["records"]:
                return raw
            time.sleep(0.05)
    raise AssertionError("the request was never metered")


def test_console_sign_up_key_request_usage_and_operator_view(stack: Stack, request: pytest.FixtureRequest) -> None:
    assert Path(CHROMIUM).exists(), "chromium is missing: `make test` installs it (apt-get install chromium)"
    assert (BROWSER_TESTS / "node_modules" / "playwright-core").is_dir(), "run `make install` (npm ci in tests/browser)"
    topology, kind = request.node.callspec.params["stack"]
    shots = SCREENSHOTS / f"{topology}-{kind}"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    email = f"console-{uuid.uuid4().hex[:12]}@atoma.test"
    env = {
        **os.environ,
        "CONSOLE_URL": stack.facade_url + "/",
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "EMAIL": email,
        "PASSWORD": secrets.token_urlsafe(12),
        "SCREENSHOTS": str(shots),
        "CHROMIUM": CHROMIUM,
        "EXTRA_NODE_ID": EXTRA_NODE,
        "EXTRA_NODE_URL": stack.nodes["steady"],
        "EXTRA_NODE_MODEL": EXTRA_MODEL,
    }
    with subprocess.Popen(
        ["node", "console_flow.mjs"],
        cwd=BROWSER_TESTS,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            secret = _read_line(process, "SECRET ")
            assert secret.startswith("sk-atoma-")
            raw = _chat_with(stack, secret)
            node = raw.headers["x-atoma-node"]
            completion = raw.parse()
            assert process.stdin is not None
            process.stdin.write("GO\n")
            process.stdin.flush()
            result = json.loads(_read_line(process, "RESULT "))
            assert process.wait(timeout=STEP_TIMEOUT) == 0, process.stderr.read() if process.stderr else ""
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            _remove_node(stack, EXTRA_NODE)  # the stack is shared: leave its registry as it was

    assert result["landingUrl"] == stack.facade_url + "/console/"
    assert result["signedInAs"] == email
    assert result["keyRows"] == 1
    assert result["consoleErrors"] == []
    # Today's bar of the spend chart holds what the request cost; the token bars hold its tokens.
    today = datetime.now(UTC).strftime("%m-%d")
    assert [bar["label"] for bar in result["spendBars"]] == [today]
    assert result["spendBars"][0]["value"] > 0
    tokens = {bar["series"]: bar["value"] for bar in result["tokenBars"]}
    assert completion.usage is not None
    assert tokens == {"prompt": completion.usage.prompt_tokens, "completion": completion.usage.completion_tokens}
    # The recent requests: one row, with the node that served it and its model.
    [row] = result["recentRequests"]
    assert row[1] == CHAT and row[2] == node
    assert row[3] == str(completion.usage.prompt_tokens)
    assert row[5].startswith("$")
    # The models with their nodes and prices (the stack's chat model is on "fast" and "steady").
    models = {row[0]: dict(zip(result["modelColumns"], row, strict=True)) for row in result["models"]}
    assert models[CHAT]["Nodes"] == "faststeady"
    assert (models[CHAT]["Input"], models[CHAT]["Output"]) == ("$0.10 – $0.60 / 1M", "$0.40 – $2.00 / 1M")
    assert models[IMAGE]["Per image"].startswith("$") and models[CHAT]["Per image"] == "—"
    assert result["keyStates"] == ["revoked"]
    with httpx.Client(base_url=stack.facade_url, timeout=30) as rest:
        refused = rest.get("/v1/balance", headers={"authorization": f"Bearer {secret}"})
    assert refused.status_code == 401
    # The operator view lists every node of the stack, and the new user among those who spent.
    assert sorted(cells[0].split("http")[0] for cells in result["nodes"]) == sorted(stack.nodes)
    assert sum(bar["value"] for bar in result["trafficBars"]) >= 1
    assert any(email in cell for cell in result["topUsers"]) or len(result["topUsers"]) == 10
    # The node added through the form, then drained through its button.
    assert result["addedNode"][0].startswith(EXTRA_NODE) and stack.nodes["steady"] in result["addedNode"][0]
    assert result["addedNode"][2] == "active" and EXTRA_MODEL in result["addedNode"][8]
    assert result["drainedNode"][2] == "draining"
    for name in ("01-sign-up", "02-api-key-created", "03-overview", "04-models", "05-operator"):
        assert (shots / f"{name}.png").stat().st_size > 10_000
