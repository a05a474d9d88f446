"""A real proxy for black-box tests: node simulators, core and facade as subprocesses, on a topology.

    with start_stack(tmp, Topology(IN_PROCESS, "sqlite"), nodes=[SimNode("a", chat=("m",))]) as stack:
        ...  # stack.base_url, stack.core_target, stack.nodes["a"], stack.database_url

A topology is how the proxy runs and on which database:
- `in-process`: `atoma-proxy serve`, the facade calling the core in-process (src/core/local_channel.py);
- `grpc`: `atoma-proxy core --migrate` and `atoma-proxy facade`, two processes talking gRPC.
The database is a fresh migrated one of that kind (tests/support/databases.py) unless `database_url` is given.
tests/e2e/conftest.py runs the shared `stack` on `TOPOLOGIES` and hands this function out as `stack_factory`.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from tests.support.databases import temporary_database_sync
from tests.support.processes import free_port, run_command, running, spawn, stop, wait_grpc_serving, wait_until_ready

__all__ = [
    "EMAIL",
    "IN_PROCESS",
    "OVER_GRPC",
    "TOPOLOGIES",
    "SimNode",
    "SimProcess",
    "Stack",
    "StackConfig",
    "StackFactory",
    "Topology",
    "start_stack",
]

IN_PROCESS, OVER_GRPC = "in-process", "grpc"
# Settings every stack starts from; `settings` adds tables and overrides keys.
BASE_SETTINGS: Mapping[str, Mapping[str, object]] = {"core": {"health_interval": 0.5}}
EMAIL = "e2e@atoma.test"


class Topology(NamedTuple):
    processes: str  # IN_PROCESS or OVER_GRPC
    database: str  # "sqlite" or "postgresql"

    @property
    def id(self) -> str:
        return f"{self.processes}-{self.database}"


# Every black-box test of the shared stack passes on each (the gRPC topology on PostgreSQL, what deployments run).
TOPOLOGIES = [Topology(IN_PROCESS, "sqlite"), Topology(IN_PROCESS, "postgresql"), Topology(OVER_GRPC, "postgresql")]


@dataclass(frozen=True)
class SimNode:
    """One `atoma-proxy node-sim` and its `[[nodes]]` table: it serves and is configured with these models."""

    id: str
    chat: tuple[str, ...] = ()
    embeddings: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    options: tuple[str, ...] = ()  # more node-sim options (faults, pacing, models it serves unconfigured)
    prices: tuple[int, int] = (0, 0)  # micro-USD per million prompt and generated tokens
    entry: Mapping[str, object] = field(default_factory=dict)  # more keys of its [[nodes]] table

    @property
    def models(self) -> list[str]:
        return [*self.chat, *self.embeddings, *self.images]

    def args(self, port: int) -> list[str]:
        models = [("--chat-model", self.chat), ("--embedding-model", self.embeddings), ("--image-model", self.images)]
        flags = [arg for flag, names in models for name in names for arg in (flag, name)]
        return ["node-sim", "--port", str(port), "--node-id", self.id, *flags, *self.options]


class SimProcess:
    """A node simulator process that can be killed and started again on the same port."""

    def __init__(self, node: SimNode, log: Path) -> None:
        self.node = node
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        self.process = spawn(self.node.args(self.port), self._log)

    def wait_ready(self) -> None:
        assert self.process is not None
        wait_until_ready(f"{self.url}/health", self.process, self._log)

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def _table(header: str, keys: Mapping[str, object]) -> str:
    return f"\n{header}\n" + "".join(f"{key} = {_toml(value)}\n" for key, value in keys.items())


@dataclass(frozen=True)
class StackConfig:
    """What the proxy's config.toml says: settings tables, [[models]], [[tokenizers]] and [[nodes]]."""

    nodes: tuple[SimNode, ...]
    settings: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    models: tuple[Mapping[str, object], ...] = ()
    sim_words: tuple[str, ...] = ()  # models counted by the simulator's tokenizer: exact estimates and charges

    def render(self, urls: Mapping[str, str]) -> str:
        """The file, with each node at `urls[node id]`."""
        tables = {name: dict(keys) for name, keys in BASE_SETTINGS.items()}
        for name, keys in self.settings.items():
            tables[name] = {**tables.get(name, {}), **keys}
        text = "".join(_table(f"[{name}]", keys) for name, keys in tables.items())
        text += "".join(_table("[[models]]", model) for model in self.models)
        text += "".join(_table("[[tokenizers]]", {"model": model, "kind": "sim-words"}) for model in self.sim_words)
        for node in self.nodes:
            price_in, price_out = node.prices
            keys = {"id": node.id, "url": urls[node.id], "models": node.models}
            keys |= {"input_price_per_million": price_in, "output_price_per_million": price_out, **node.entry}
            text += _table("[[nodes]]", keys)
        return text


@dataclass(frozen=True)
class Stack:
    facade_url: str
    core_targets: tuple[str, ...]  # the core the facade calls first, then any more cores on the same database
    api_key: str  # of EMAIL, when the stack was started with `funds`; else ""
    sims: dict[str, SimProcess]
    database_url: str
    config_path: Path
    config: StackConfig
    proxy: subprocess.Popen[bytes]  # `serve`, or the first `core`: the process that reloads on SIGHUP

    @property
    def base_url(self) -> str:
        return f"{self.facade_url}/v1"

    @property
    def core_target(self) -> str:
        return self.core_targets[0]

    @property
    def nodes(self) -> dict[str, str]:
        """Node id -> base URL."""
        return {node_id: sim.url for node_id, sim in self.sims.items()}

    def write_config(self, config: StackConfig, extra: str = "") -> None:
        """Rewrite config.toml (the proxy reads it again on SIGHUP); `extra` is appended as it is."""
        self.config_path.write_text(config.render(self.nodes) + extra)


@contextlib.contextmanager
def start_stack(
    tmp: Path,
    topology: Topology,
    *,
    nodes: Sequence[SimNode],
    settings: Mapping[str, Mapping[str, object]] | None = None,
    models: Sequence[Mapping[str, object]] = (),
    sim_words: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    funds: int | None = None,
    database_url: str | None = None,
    cores: int = 1,
) -> Iterator[Stack]:
    """Nodes, then the proxy on `topology`, until the block ends; logs in `tmp`.

    `funds`: a key for EMAIL credited that much (0: a key, no credit). `env`: more ATOMA_* variables.
    `cores`: more `atoma-proxy core` processes on the same configuration and database (`core_targets`).
    """
    config = StackConfig(tuple(nodes), settings or {}, tuple(models), tuple(sim_words))
    with ExitStack() as stack:
        if database_url is None:
            database_url = stack.enter_context(temporary_database_sync(topology.database))
        sims = {node.id: SimProcess(node, tmp / f"{node.id}.log") for node in nodes}
        for sim in sims.values():  # started together, waited for together
            stack.callback(sim.stop)
            sim.launch()
        for sim in sims.values():
            sim.wait_ready()
        config_path = tmp / "config.toml"
        config_path.write_text(config.render({node_id: sim.url for node_id, sim in sims.items()}))
        facade_port = free_port()
        targets = tuple(f"127.0.0.1:{free_port()}" for _ in range(cores))
        variables = {
            "ATOMA_CONFIG": str(config_path),
            "ATOMA_DATABASE__URL": database_url,
            "ATOMA_FACADE__PORT": str(facade_port),
            "ATOMA_CORE__LISTEN": targets[0],
            "ATOMA_FACADE__CORE_TARGET": targets[0],
            **(env or {}),
        }
        api_key = ""
        if funds is not None:
            api_key = run_command("keys", "create", "--email", EMAIL, env=variables).strip()
            if funds:
                run_command("balance", "credit", "--email", EMAIL, "--micro-usd", str(funds), env=variables)
        facade = f"http://127.0.0.1:{facade_port}"
        if topology.processes == IN_PROCESS:
            proxy = stack.enter_context(
                running(["serve"], ready_url=f"{facade}/health", log=tmp / "proxy.log", env=variables)
            )
        else:
            proxy = stack.enter_context(
                running(["core", "--migrate"], ready_url=None, log=tmp / "core.log", env=variables)
            )
            wait_grpc_serving(targets[0], proxy, tmp / "core.log")
        more = [(target, tmp / f"core-{n}.log") for n, target in enumerate(targets[1:], 1)]
        others = [
            stack.enter_context(
                running(["core"], ready_url=None, log=log, env={**variables, "ATOMA_CORE__LISTEN": target})
            )
            for target, log in more
        ]
        for process, (target, log) in zip(others, more, strict=True):
            wait_grpc_serving(target, process, log)
        if topology.processes == OVER_GRPC:
            stack.enter_context(
                running(["facade"], ready_url=f"{facade}/health", log=tmp / "facade.log", env=variables)
            )
        yield Stack(facade, targets, api_key, sims, database_url, config_path, config, proxy)


# `start_stack` without its first argument (tests/e2e/conftest.py's `stack_factory` fixture).
StackFactory = Callable[..., contextlib.AbstractContextManager[Stack]]
