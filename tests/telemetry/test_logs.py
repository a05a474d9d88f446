"""Log lines: JSON objects, one request id across the processes, and never a secret or a prompt.

The log scan runs a real stack (node simulator, core, facade as separate processes, JSON logs at DEBUG),
sends canary credentials and prompt text through it, on success and error paths, and greps every log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from atoma_proxy.core.telemetry.logs import JsonFormatter, RedactingFilter, redact
from tests.support.databases import temporary_database_sync
from tests.support.processes import free_port, run_command, running, spawn, stop, wait_grpc_serving

CHAT = "atoma/sim-chat"
CANARY_PASSWORD = "Canary-Password-7f3a9c1e"
CANARY_PROMPT = "canaryprompt4e8b2d unique words nobody logs"
CANARY_JWT_SECRET = "canary-jwt-secret-5d1e9b7a3c2f4e6d8b0a"
CANARY_ADMIN_TOKEN = "canary-admin-token-9a8b7c6d"
JSON_LOGS = ["--log-format", "json", "--log-level", "DEBUG"]


def test_redaction_of_the_secret_shapes() -> None:
    key = "sk-atoma-" + "A" * 40
    argon2 = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"
    text = redact(f"auth Bearer {key} key={key} password=hunter22 'token': 'abc' eyJhbGciOi.eyJzdWIi.c2ln {argon2} ok")
    for secret in (key, "hunter22", "abc'", "eyJhbGciOi", "c2FsdA"):
        assert secret not in text
    assert text.startswith("auth Bearer [REDACTED]") and text.endswith(" ok")
    assert redact("node at http://user:s3cret@node:8000/v1") == "node at http://[REDACTED]@node:8000/v1"


def test_json_lines_carry_extra_fields_and_redacted_exceptions() -> None:
    record = logging.LogRecord(
        "atoma_proxy.x", logging.ERROR, __file__, 1, "failed for %s", ("Bearer sk-atoma-zzzzzzzzzz",), None
    )
    try:
        raise ValueError("password=swordfish")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    record.request_id = "req-1"
    assert RedactingFilter().filter(record)
    entry = json.loads(JsonFormatter(worker=2).format(record))
    assert entry["message"] == "failed for Bearer [REDACTED]"
    assert entry["level"] == "ERROR" and entry["logger"] == "atoma_proxy.x" and entry["worker"] == 2
    assert entry["request_id"] == "req-1"
    assert "swordfish" not in entry["exception"] and "ValueError" in entry["exception"]


@pytest.fixture(scope="module")
def logged_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str, str]]:
    """(log directory, facade URL, node URL, api key) of a running stack logging JSON at DEBUG."""
    tmp = tmp_path_factory.mktemp("logscan")
    node_port, core_port, facade_port = free_port(), free_port(), free_port()
    node = f"http://127.0.0.1:{node_port}"
    config = tmp / "config.toml"
    config.write_text(
        f"[[tokenizers]]\nmodel = '{CHAT}'\nkind = 'sim-words'\n"
        f"[[nodes]]\nid = 'sim'\nurl = '{node}'\nmodels = ['{CHAT}']\ninput_price_per_million = 1000\n"
    )
    with ExitStack() as stack, temporary_database_sync("sqlite") as url:
        env = {
            "ATOMA_CONFIG": str(config),
            "ATOMA_DATABASE__URL": url,
            "ATOMA_CORE__LISTEN": f"127.0.0.1:{core_port}",
            "ATOMA_FACADE__PORT": str(facade_port),
            "ATOMA_FACADE__CORE_TARGET": f"127.0.0.1:{core_port}",
            "ATOMA_ACCOUNTS__JWT_SECRET": CANARY_JWT_SECRET,
            "ATOMA_ACCOUNTS__ADMIN_TOKEN": CANARY_ADMIN_TOKEN,
        }
        sim = [*JSON_LOGS, "node-sim", "--port", str(node_port), "--node-id", "sim", "--chat-model", CHAT]
        stack.enter_context(running(sim, ready_url=f"{node}/health", log=tmp / "node.log"))
        api_key = run_command("keys", "create", "--email", "logscan@atoma.test", env=env).strip()
        run_command("balance", "credit", "--email", "logscan@atoma.test", "--micro-usd", "1000000000", env=env)
        core = spawn([*JSON_LOGS, "core"], tmp / "core.log", env)
        stack.callback(stop, core)
        wait_grpc_serving(f"127.0.0.1:{core_port}", core, tmp / "core.log")
        facade_url = f"http://127.0.0.1:{facade_port}"
        facade = stack.enter_context(
            running([*JSON_LOGS, "facade"], ready_url=f"{facade_url}/health", log=tmp / "facade.log", env=env)
        )
        yield tmp, facade_url, node, api_key
        stop(facade)
        stop(core)


def _exercise(facade: str, api_key: str) -> str:
    """Requests that carry the canaries, on success and error paths; returns the access token it got."""
    chat = {"model": CHAT, "messages": [{"role": "user", "content": CANARY_PROMPT}]}
    with httpx.Client(base_url=facade, timeout=30) as client:
        auth = {"authorization": f"Bearer {api_key}"}
        registered = client.post("/v1/auth/register", json={"email": "canary@atoma.test", "password": CANARY_PASSWORD})
        assert registered.status_code == 200, registered.text
        login = client.post("/v1/auth/login", json={"email": "canary@atoma.test", "password": CANARY_PASSWORD})
        assert login.status_code == 200, login.text
        wrong = client.post("/v1/auth/login", json={"email": "canary@atoma.test", "password": CANARY_PASSWORD + "x"})
        assert wrong.status_code == 401
        token = login.json()["access_token"]
        assert client.get("/v1/api-keys", headers={"authorization": f"Bearer {token}"}).status_code == 200
        for stream in (False, True):
            answer = client.post(
                "/v1/chat/completions",
                headers=auth | {"x-request-id": f"logscan-{stream}"},
                json=chat | {"stream": stream},
            )
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-request-id"] == f"logscan-{stream}"
        assert (
            client.post("/v1/chat/completions", headers=auth, json=chat | {"model": CANARY_PROMPT}).status_code == 404
        )
        bad_key = {"authorization": f"Bearer {api_key[:-4]}zzzz"}
        assert client.post("/v1/chat/completions", headers=bad_key, json=chat).status_code == 401
        bad_json = client.post("/v1/chat/completions", headers=auth, content=b'{"messages": "' + CANARY_PROMPT.encode())
        assert bad_json.status_code == 400
    return str(token)


def test_a_run_logs_no_secret_and_one_request_id_end_to_end(logged_stack: tuple[Path, str, str, str]) -> None:
    logs, facade, node, api_key = logged_stack
    token = _exercise(facade, api_key)
    sent = httpx.get(f"{node}/sim/requests").json()
    ids = {entry["headers"].get("x-request-id") for entry in sent}
    assert {"logscan-False", "logscan-True"} <= ids  # the REST header reached the node

    lines = {name: (logs / f"{name}.log").read_text().splitlines() for name in ("core", "facade", "node")}
    for name, text in lines.items():
        joined = "\n".join(text)
        for canary in (
            api_key,
            api_key[:-4] + "zzzz",
            CANARY_PASSWORD,
            token,
            CANARY_PROMPT[:20],
            CANARY_JWT_SECRET,
            CANARY_ADMIN_TOKEN,
        ):
            assert canary not in joined, f"{name} logged {canary!r}"
    # The core and the facade write JSON objects, and both name the request id of each request.
    for name in ("core", "facade"):
        entries = [json.loads(line) for line in lines[name] if line.startswith("{")]
        assert entries, f"{name} wrote no JSON line"
        assert all(line.startswith("{") for line in lines[name] if line.strip()), f"{name} wrote a non-JSON line"
        logged_ids = {entry.get("request_id") for entry in entries}
        assert {"logscan-False", "logscan-True"} <= logged_ids, name


def test_the_logging_section_sets_format_and_level_unless_the_command_line_does(tmp_path: Path) -> None:
    from atoma_proxy import cli

    config = tmp_path / "config.toml"
    config.write_text("[logging]\nformat = 'json'\nlevel = 'WARNING'\n")
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)

    def start(*flags: str) -> None:  # what `main` does before a command runs, then the command's settings
        args = cli.build_parser().parse_args([*flags, "keys", "create", "--config", str(config)])
        cli._configure_logging(args)
        cli._settings(args)

    try:
        start()
        assert root.level == logging.WARNING
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        assert any(isinstance(f, RedactingFilter) for f in root.handlers[0].filters)
        start("--log-level", "DEBUG", "--log-format", "text")
        assert root.level == logging.DEBUG
        assert not isinstance(root.handlers[0].formatter, JsonFormatter)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
