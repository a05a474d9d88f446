"""The systems under test, each a set of real processes on loopback ports.

- `direct`: one `atoma-proxy node-sim` (zero added latency, 16-token replies). It is also the upstream
  of the two proxies, so every column talks to the same node.
- `atoma`: `atoma-proxy core` and `atoma-proxy facade` as two processes (as deployed: a core of the
  machine each), on a fresh PostgreSQL database, with an API key, and every optional feature the
  code has at run time switched on (see `feature_plan`).
- `litellm`: LiteLLM's proxy (pinned version, own virtualenv, see `litellm_env`), no database,
  a master key, one worker, its model_list pointing at the node.

A stack knows its server processes (for memory and CPU sampling, and for profiling) and stops them
with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODEL = "atoma/sim-chat"
CHAT_PATH = "/v1/chat/completions"
POSTGRES_ADMIN_URL = os.environ.get("BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BENCH_DATABASE = os.environ.get("BENCH_DATABASE", "atoma_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
ATOMA_PROXY = [sys.executable, "-m", "atoma_proxy.cli", "--log-level", "WARNING"]
BENCH_EMAIL = "bench@atoma.test"
GENEROUS_LIMIT = 1_000_000_000
GENEROUS_CREDIT = 10**12  # micro-USD: the largest single credit (README "Limits"), far beyond what a bench spends

_BASE_SECTIONS = {"database", "core", "facade", "nodes"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------------------------------- processes


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (from /proc/<pid>/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo.extend(int(child) for child in task.read_text().split())
    return found


def _status_kb(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (from /proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class ServerProcess:
    """One server process of a stack (its descendants are counted with it)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    url: str = ""  # where it serves HTTP, if it does

    @property
    def pid(self) -> int:
        return self.popen.pid

    def pids(self) -> list[int]:
        return process_tree(self.pid)

    def reset_peak(self) -> bool:
        """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs); False when not allowed."""
        ok = True
        for pid in self.pids():
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                ok = False
        return ok

    def peak_rss_mb(self) -> float:
        return sum(_status_kb(pid, "VmHWM") for pid in self.pids()) / 1024

    def rss_mb(self) -> float:
        return sum(_status_kb(pid, "VmRSS") for pid in self.pids()) / 1024

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids())

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                for pid in reversed(self.pids()):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.popen.wait()


def _log_tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _environment(env: Mapping[str, str | None] | None) -> dict[str, str]:
    """os.environ with `env` applied; a None value removes the variable."""
    merged = {**os.environ, **(env or {})}
    return {key: value for key, value in merged.items() if value is not None}


def start_process(
    name: str,
    args: list[str],
    *,
    ready_url: str,
    log: Path,
    env: Mapping[str, str | None] | None = None,
    timeout: float = 120,
) -> ServerProcess:
    """Start a server and wait until GET `ready_url` answers 200."""
    with log.open("wb") as out:
        popen = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=_environment(env), start_new_session=True
        )
    server = ServerProcess(name, popen, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"{name} exited with {popen.returncode}:\n{_log_tail(log)}")
        with contextlib.suppress(OSError, urllib.error.URLError, ConnectionError):
            with urllib.request.urlopen(ready_url, timeout=2) as response:
                if response.status == 200:
                    return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{name} was not ready at {ready_url} after {timeout:.0f} s:\n{_log_tail(log)}")


def run_atoma_command(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [*ATOMA_PROXY, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=180
    )
    if result.returncode != 0:
        raise RuntimeError(f"atoma-proxy {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout


# -------------------------------------------------------------------------------------------- stacks


@dataclass
class Stack:
    """A running system under test: where to send requests, with which key, and its processes."""

    key: str  # "direct" | "atoma1" | "atoma" | "litellm1" | "litellm"
    label: str
    base_url: str
    api_key: str | None
    processes: list[ServerProcess]
    features: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra_stop: list[ServerProcess] = field(default_factory=list)  # e.g. the node of `direct` is shared

    @property
    def url(self) -> str:
        return self.base_url + CHAT_PATH

    def describe(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "url": self.url,
            "processes": {p.name: p.pid for p in self.processes},
            "features": self.features,
            "notes": self.notes,
        }

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def start_node(work: Path, reply_tokens: int = 16) -> ServerProcess:
    port = free_port()
    args = [
        *ATOMA_PROXY,
        "node-sim",
        "--port",
        str(port),
        "--node-id",
        "bench-node",
        "--chat-model",
        MODEL,
        "--ttft-ms",
        "0",
        "--tokens-per-second",
        "0",
        "--reply-tokens",
        str(reply_tokens),
    ]
    process = start_process("node", args, ready_url=f"http://127.0.0.1:{port}/health", log=work / "node.log")
    process.url = f"http://127.0.0.1:{port}"
    return process


def direct_stack(node: ServerProcess) -> Stack:
    return Stack(
        "direct",
        "node direct",
        node.url,
        None,
        [node],
        features=["none (the upstream itself)"],
        notes=["node-sim: --ttft-ms 0 --tokens-per-second 0 --reply-tokens 16"],
    )


# --- atoma


@dataclass
class FeaturePlan:
    """Environment overrides that switch on the optional features the code has, and what they are."""

    env: dict[str, str] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    sections: dict[str, list[str]] = field(default_factory=dict)  # optional section -> its fields
    wants_credit: bool = False
    uses_redis: bool = False
    admin_token: str | None = None


_LIMIT_WORDS = ("limit", "per_minute", "per_second", "per_hour", "per_day", "rpm", "tpm", "rps", "burst", "capacity")
_NOT_A_LIMIT = ("window", "interval", "timeout", "ttl", "seconds", "retry", "cooldown")


def _submodel_fields(annotation: Any) -> dict[str, Any]:
    fields = getattr(annotation, "model_fields", None)
    if fields is not None:
        return dict(fields)
    for arg in getattr(annotation, "__args__", ()):  # Optional[Model]
        fields = getattr(arg, "model_fields", None)
        if fields is not None:
            return dict(fields)
    return {}


def _plain_type(annotation: Any) -> Any:
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    return args[0] if len(args) == 1 else annotation


def feature_plan(settings_cls: Any | None = None) -> FeaturePlan:
    """Inspect `Settings.model_fields` and turn every optional feature on.

    Sections beyond database/core/facade/nodes are the optional features (e.g. `ledger`,
    `rate_limits`, `routing`). In each: a bool `enabled` is set true; a string field naming Redis
    gets the bench's Redis URL; in rate-limit sections, integer limits get a huge value so the checks
    run on every request but never refuse. A `ledger`/accounting section also asks for the bench
    user to be credited (with `atoma-proxy balance credit` when that command exists).
    """
    if settings_cls is None:
        from atoma_proxy.config import Settings

        settings_cls = Settings
    plan = FeaturePlan()
    for section, info in settings_cls.model_fields.items():
        if section in _BASE_SECTIONS:
            continue
        fields = _submodel_fields(info.annotation)
        plan.sections[section] = sorted(fields)
        if getattr(info.annotation, "__origin__", None) is list:
            plan.features.append(f"{section} (a list; none configured)")
            continue
        prefix = f"ATOMA_{section.upper()}__"
        set_here: list[str] = []
        if "strategy" in fields:
            set_here.append(f"strategy={fields['strategy'].default} (default)")
        if "admin_token" in fields:  # the admin API may be how the bench user gets credit
            plan.admin_token = "bench-admin-" + secrets.token_hex(16)
            plan.env[prefix + "ADMIN_TOKEN"] = plan.admin_token
            set_here.append("admin_token=<random>")
        is_rate_limit = "rate" in section or "limit" in section
        for name, finfo in fields.items():
            kind = _plain_type(finfo.annotation)
            if name == "enabled" and kind is bool:
                plan.env[prefix + "ENABLED"] = "true"
                set_here.append("enabled=true")
            elif "redis" in name and kind is str:
                plan.env[prefix + name.upper()] = REDIS_URL
                plan.uses_redis = True
                set_here.append(f"{name}={REDIS_URL}")
            elif (
                is_rate_limit
                and kind is int
                and any(word in name for word in _LIMIT_WORDS)
                and not any(word in name for word in _NOT_A_LIMIT)
            ):
                plan.env[prefix + name.upper()] = str(GENEROUS_LIMIT)
                set_here.append(f"{name}={GENEROUS_LIMIT}")
        if any(word in section for word in ("ledger", "account", "billing", "balance")):
            plan.wants_credit = True
        plan.features.append(f"{section} ({', '.join(set_here) if set_here else 'defaults'})")
    return plan


def reset_database(name: str = BENCH_DATABASE) -> str:
    """Drop and create the bench database; returns its URL."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def table_row_counts(database_url: str) -> dict[str, int]:
    """Rows per table of the bench database: shows which tables the hot path writes (e.g. a ledger)."""
    import psycopg
    from psycopg import sql

    counts: dict[str, int] = {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        ).fetchall()
        for (table,) in tables:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
            counts[table] = row[0] if row else 0
    return counts


def flush_redis(url: str = REDIS_URL) -> bool:
    """FLUSHDB on the bench's Redis database (raw RESP, no client library needed)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    db = (parts.path or "/0").lstrip("/") or "0"
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=2) as sock:
            sock.sendall(f"*2\r\n$6\r\nSELECT\r\n${len(db)}\r\n{db}\r\n*1\r\n$7\r\nFLUSHDB\r\n".encode())
            reply = b""
            while reply.count(b"\r\n") < 2:
                chunk = sock.recv(256)
                if not chunk:
                    break
                reply += chunk
            return reply.startswith(b"+OK")
    except OSError:
        return False


def _credit_with_cli(env: dict[str, str]) -> str | None:
    """Credit the bench user with `atoma-proxy balance credit`; None when the command does not exist."""
    probe = subprocess.run(
        [*ATOMA_PROXY, "balance", "credit", "--help"], env={**os.environ, **env}, capture_output=True, text=True
    )
    if probe.returncode != 0:
        return None
    usage = probe.stdout
    args = ["balance", "credit"]
    if "--email" in usage:
        args += ["--email", BENCH_EMAIL]
    if "--amount" in usage:
        args += ["--amount", str(GENEROUS_CREDIT)]
    elif "--micro-usd" in usage:
        args += ["--micro-usd", str(GENEROUS_CREDIT)]
    else:
        args.append(str(GENEROUS_CREDIT))
    try:
        out = run_atoma_command(*args, env=env).strip()
    except RuntimeError as error:
        return f"credit FAILED: {error}"
    return f"credited via `atoma-proxy {' '.join(args)}`" + (f" -> {out.splitlines()[-1]}" if out else "")


def _credit_with_admin_api(core_target: str, admin_token: str, database_url: str) -> str:
    """Credit the bench user through AccountAdminService.CreditBalance (when the core serves it)."""
    try:
        import grpc
        import psycopg

        from atoma_proxy.generated.atoma.accounts.v1 import account_admin_service_pb2 as admin_pb
        from atoma_proxy.generated.atoma.accounts.v1 import account_admin_service_pb2_grpc as admin_grpc
    except ImportError as error:
        return f"bench user NOT credited (no CLI command, no admin API stubs: {error})"
    try:
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT id FROM users WHERE email = %s", (BENCH_EMAIL,)).fetchone()
        if row is None:
            return "bench user NOT credited: user row not found"
        with grpc.insecure_channel(core_target) as channel:
            stub = admin_grpc.AccountAdminServiceStub(channel)
            request = admin_pb.CreditBalanceRequest(
                user_id=row[0], amount_micro_usd=GENEROUS_CREDIT, idempotency_key="bench", note="bench"
            )
            stub.CreditBalance(request, metadata=[("authorization", f"Bearer {admin_token}")], timeout=10)
    except Exception as error:  # report, do not stop the bench: errors show in the results
        detail = error.details() if isinstance(error, grpc.RpcError) else error  # type: ignore[attr-defined]
        return f"bench user NOT credited (no CLI command; admin API CreditBalance failed: {detail})"
    return f"credited {GENEROUS_CREDIT} micro-USD via AccountAdminService.CreditBalance"


def atoma_stack(
    node_url: str,
    work: Path,
    extra_env: dict[str, str] | None = None,
    *,
    one_process: bool = False,
    database_url: str | None = None,
    launcher: Sequence[str] = (),
) -> tuple[Stack, str]:
    """All optional features on, on PostgreSQL; returns (stack, db url).

    Topologies: core + facade as separate processes (`atoma`), or one `atoma-proxy serve` whose facade
    calls the core in-process (`atoma1`, `one_process`). `database_url`: an existing bench database
    (another topology's), else a fresh one. `launcher`: a command the server processes run under
    (`valgrind ...` for bench/instructions.py); the CLI's setup commands run without it.
    """
    fresh = database_url is None
    database_url = database_url or reset_database()
    plan = feature_plan()
    name = "atoma1" if one_process else "atoma"
    config = work / f"{name}.toml"
    config.write_text(
        "[core]\nhealth_interval = 5.0\n\n"
        f"[[nodes]]\nid = 'bench-node'\nurl = '{node_url}'\nmodels = ['{MODEL}']\n"
        "input_price_per_million = 100000\noutput_price_per_million = 400000\n"
    )
    core_port, facade_port = free_port(), free_port()
    env = {
        "ATOMA_CONFIG": str(config),
        "ATOMA_DATABASE__URL": database_url,
        "ATOMA_CORE__LISTEN": f"127.0.0.1:{core_port}",
        "ATOMA_FACADE__PORT": str(facade_port),
        "ATOMA_FACADE__CORE_TARGET": f"127.0.0.1:{core_port}",
        **plan.env,
        **(extra_env or {}),
    }
    notes = [f"PostgreSQL database {BENCH_DATABASE} (dropped and created for this run, shared by the topologies)"]
    if plan.uses_redis and fresh:
        notes.append(f"Redis {REDIS_URL} flushed: {flush_redis()}")
    if fresh:
        run_atoma_command("db", "upgrade", env=env)
    api_key = run_atoma_command("keys", "create", "--email", BENCH_EMAIL, "--name", "bench", env=env).strip()
    api_key = api_key.splitlines()[-1].strip()
    credited = _credit_with_cli(env) if plan.wants_credit else None
    if extra_env:
        notes.append("extra env: " + ", ".join(f"{k}={v}" for k, v in extra_env.items()))
    if one_process:
        return _one_process_stack(env, work, api_key, plan, notes, credited, launcher), database_url
    core = start_core(env, work / "core.log", launcher)
    if plan.wants_credit and credited is None:
        if plan.admin_token:
            credited = _credit_with_admin_api(env["ATOMA_FACADE__CORE_TARGET"], plan.admin_token, database_url)
        else:
            credited = "bench user NOT credited (no CLI command, no admin token setting)"
    if credited:
        notes.append(credited)
    try:
        facade = start_process(
            "facade",
            [*launcher, *ATOMA_PROXY, "facade"],
            ready_url=f"http://127.0.0.1:{facade_port}/health",  # 200 only once the core reports SERVING
            timeout=600 if launcher else 120,
            log=work / "facade.log",
            env=env,
        )
    except Exception:
        core.stop()
        raise
    features = ["auth (API key, SHA-256 hashed, cached)", "routing (core's default node selection)"]
    features += plan.features or ["no optional feature sections in Settings (ledger/rate limits not in the code yet)"]
    stack = Stack("atoma", "atoma-proxy", f"http://127.0.0.1:{facade_port}", api_key, [core, facade], features, notes)
    return stack, database_url


def _one_process_stack(
    env: dict[str, str],
    work: Path,
    api_key: str,
    plan: FeaturePlan,
    notes: list[str],
    credited: str | None,
    launcher: Sequence[str] = (),
) -> Stack:
    """`atoma-proxy serve`: core and facade in one process, the facade calling the core in-process."""
    if credited:
        notes.append(credited)
    elif plan.wants_credit:
        notes.append("bench user NOT credited (no CLI command)")
    facade_port = env["ATOMA_FACADE__PORT"]
    serve = start_process(
        "serve",
        [*launcher, *ATOMA_PROXY, "serve", "--no-migrate"],
        ready_url=f"http://127.0.0.1:{facade_port}/health",
        timeout=600 if launcher else 120,
        log=work / "serve.log",
        env=env,
    )
    features = ["auth (API key, SHA-256 hashed, cached)", "routing (core's default node selection)"]
    features += plan.features or ["no optional feature sections in Settings"]
    notes.append("core and facade in one process: the facade calls the core in-process (no gRPC hop)")
    label = "atoma-proxy (1 process)"
    return Stack("atoma1", label, f"http://127.0.0.1:{facade_port}", api_key, [serve], features, notes)


def start_core(env: dict[str, str], log: Path, launcher: Sequence[str] = ()) -> ServerProcess:
    """`atoma-proxy core` with `env`; returns once its port (ATOMA_CORE__LISTEN) accepts connections."""
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [*launcher, *ATOMA_PROXY, "core"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )
    core = ServerProcess("core", popen, log)
    host, port = env["ATOMA_CORE__LISTEN"].rsplit(":", 1)
    deadline = time.monotonic() + (600 if launcher else 60)
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"core exited with {popen.returncode}:\n{_log_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1):
            return core
        time.sleep(0.1)
    core.stop()
    raise RuntimeError(f"core did not listen on {host}:{port}:\n{_log_tail(log)}")


# --- litellm


LITELLM_MASTER_KEY = "sk-bench-litellm"


def litellm_stack(node_url: str, work: Path, litellm_bin: Path, workers: int = 1, key: str = "litellm") -> Stack:
    """LiteLLM's proxy, no database, master-key auth, `workers` uvicorn workers, upstream = the node."""
    config = work / f"{key}.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {node_url}/v1\n"
        "      api_key: sk-node-unused\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_MASTER_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  drop_params: true\n"
    )
    port = free_port()
    env: dict[str, str | None] = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no network here: do not fetch the cost map at startup
        "LITELLM_LOG": "ERROR",
        "LITELLM_MODE": "PRODUCTION",
        "DISABLE_SCHEMA_UPDATE": "True",
        "DATABASE_URL": None,  # no database: LiteLLM refuses an empty one
    }
    args = [
        str(litellm_bin),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        str(workers),
        "--telemetry",
        "False",
    ]
    process = start_process(
        "litellm",
        args,
        ready_url=f"http://127.0.0.1:{port}/health/liveliness",
        log=work / f"{key}.log",
        env=env,
        timeout=180,
    )
    notes = [
        f"no database, master_key auth, {workers} worker(s), model_list -> node (openai/ provider, api_base)",
        f"{workers} process(es): compared with the atoma-proxy topology of as many processes",
    ]
    return Stack(
        key,
        f"LiteLLM 1.100.0 ({workers} worker{'s' if workers > 1 else ''})",
        f"http://127.0.0.1:{port}",
        LITELLM_MASTER_KEY,
        [process],
        ["master-key auth only (no DB: no spend tracking, no budgets, no rate limits)"],
        notes,
    )
