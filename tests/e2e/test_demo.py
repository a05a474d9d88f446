"""`atoma-proxy demo` as a new user meets it: the README's accounts walkthrough run as written, a
restart that keeps secrets and key, the data directory, and a second instance on taken ports (issue 14)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.processes import ATOMA_PROXY, free_port, stop, wait_until_ready

README = Path(__file__).resolve().parents[2] / "README.md"


@dataclass
class Demo:
    base: str
    api_key: str
    admin_token: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path


def _env(data_dir: Path, facade_port: int, core_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATOMA_")}
    return {
        **env,
        "ATOMA_DATA_DIR": str(data_dir),
        "ATOMA_FACADE__PORT": str(facade_port),
        "ATOMA_CORE__LISTEN": f"127.0.0.1:{core_port}",
        "ATOMA_FACADE__CORE_TARGET": f"127.0.0.1:{core_port}",
    }


def _banner_line(log: Path, prefix: str) -> str:
    for _ in range(200):
        match = re.search(rf"^{prefix}: (\S+)$", log.read_text(), re.MULTILINE)
        if match:
            return match[1]
        time.sleep(0.05)
    raise AssertionError(f"no {prefix!r} line:\n{log.read_text()}")


def _start(env: dict[str, str], log: Path) -> Demo:
    with log.open("wb") as out:
        process = subprocess.Popen([*ATOMA_PROXY, "demo"], stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{env['ATOMA_FACADE__PORT']}"
    try:
        wait_until_ready(f"{base}/health", process, log)
        return Demo(base, _banner_line(log, "API key"), _banner_line(log, "Admin token"), env, process, log)
    except BaseException:
        stop(process)
        raise


def _start_on_free_ports(data_dir: Path, log: Path) -> Demo:
    """A demo on ports that were free a moment ago; another process may take one in between (free_port
    only asks the kernel), so a demo that says a port is in use is started again on others."""
    for attempt in range(3):
        core_port = free_port()
        env = _env(data_dir, free_port(), core_port)
        try:
            return _start(env, log)
        except AssertionError:
            if attempt == 2 or "is in use" not in log.read_text():
                raise
    raise AssertionError("unreachable")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    running = _start_on_free_ports(tmp_path / "data", tmp_path / "demo.log")
    try:
        yield running
    finally:
        stop(running.process)


def _walkthrough() -> str:
    text = README.read_text()
    marker = text.index("<!-- accounts-walkthrough -->")
    block = re.search(r"```bash\n(.*?)```", text[marker:], re.DOTALL)
    assert block is not None
    return block[1]


def _json_values(text: str) -> list[dict]:
    decoder, values, index = json.JSONDecoder(), [], 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        value, index = decoder.raw_decode(text, index)
        values.append(value)
    return values


def test_readme_accounts_walkthrough_ends_in_a_completion(demo: Demo) -> None:
    script = _walkthrough()
    assert "ADMIN_TOKEN" in script and "/v1/chat/completions" in script
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env={**demo.env, "BASE": demo.base, "ADMIN_TOKEN": demo.admin_token},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    credit, completion = _json_values(result.stdout)[-2:]
    assert credit["balance"]["available_micro_usd"] == "5000000", credit
    assert completion["object"] == "chat.completion", completion
    assert completion["usage"]["completion_tokens"] == 8


def test_restart_keeps_secrets_key_and_logins(tmp_path: Path) -> None:
    env = _env(tmp_path / "data", free_port(), free_port())
    first = _start(env, tmp_path / "first.log")
    try:
        account = {"email": "grace@example.com", "password": "correct horse"}
        assert httpx.post(f"{first.base}/v1/auth/register", json=account).status_code == 200
        token = httpx.post(f"{first.base}/v1/auth/login", json=account).json()["access_token"]
    finally:
        stop(first.process)
    secrets = tmp_path / "data" / "demo-secrets.json"
    assert secrets.stat().st_mode & 0o777 == 0o600
    second = _start(env, tmp_path / "second.log")
    try:
        assert (second.api_key, second.admin_token) == (first.api_key, first.admin_token)
        profile = httpx.get(f"{second.base}/v1/account", headers={"authorization": f"Bearer {token}"})
        assert profile.status_code == 200, profile.text  # same JWT secret: still logged in
        models = httpx.get(f"{second.base}/v1/models", headers={"authorization": f"Bearer {second.api_key}"})
        assert models.status_code == 200
    finally:
        stop(second.process)
    assert (tmp_path / "second.log").read_text().count("API key: ") == 1


def test_second_demo_on_taken_ports_says_so_in_one_line(demo: Demo) -> None:
    result = subprocess.run([*ATOMA_PROXY, "demo"], env=demo.env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    core_port = demo.env["ATOMA_CORE__LISTEN"].rpartition(":")[2]
    assert f"port {core_port} is in use" in result.stderr and "ATOMA_CORE__LISTEN" in result.stderr
    assert "Traceback" not in result.stderr and "Failed to add port" not in result.stderr
    # The core's port free, the facade's taken: the facade says so.
    other = {**demo.env, "ATOMA_CORE__LISTEN": f"127.0.0.1:{free_port()}"}
    result = subprocess.run([*ATOMA_PROXY, "demo"], env=other, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert f"port {demo.env['ATOMA_FACADE__PORT']} is in use" in result.stderr and "ATOMA_FACADE__PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_finds_the_demo_database_from_any_directory(demo: Demo, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [*ATOMA_PROXY, "balance", "show", "--email", "demo@atoma.proxy"],
        env=demo.env,
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    database = Path(demo.env["ATOMA_DATA_DIR"]) / "atoma-proxy.db"
    assert f"atoma-proxy balance show: database sqlite:///{database}" in result.stderr
    assert "10000000" in result.stdout  # the demo's credit: the same database
    assert not list(elsewhere.iterdir())  # nothing made in the working directory


def test_the_banner_command_runs_as_printed(demo: Demo, tmp_path: Path) -> None:
    match = re.search(r"^Balance: .*\(`(.+)`\)$", demo.log.read_text(), re.MULTILINE)
    assert match is not None, demo.log.read_text()
    result = subprocess.run(
        ["bash", "-c", match[1]], env=demo.env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "10000000" in result.stdout
