"""A running confidential deployment: node simulator, `confidential-node` sidecar in front of it, and
`atoma-proxy serve` (core + facade) that knows the sidecar's signing key and the attestation authority."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from nacl.signing import SigningKey

from tests.support.processes import free_port, run_command, running

CHAT = "conf/chat"
EMBED = "conf/embed"
IMAGE = "conf/image"
PLAIN_ONLY = "conf/plain-only"
NODE_ID = "secure"
PRICE_IN, PRICE_OUT, PRICE_IMAGE = 600_000, 2_000_000, 5_000
ADMIN_TOKEN = "sidecar-admin-token-0123456789"


@dataclass(frozen=True)
class ConfidentialStack:
    facade_url: str
    core_target: str
    api_key: str
    database_url: str
    sidecar_url: str
    engine_url: str
    logs: Path
    authority: SigningKey
    identity: SigningKey
    env: dict[str, str]


def _seed_file(path: Path, key: SigningKey) -> Path:
    path.write_text(base64.b64encode(bytes(key)).decode())
    return path


def _wait_for_key(sidecar_url: str, attempts: int = 600) -> None:
    for _ in range(attempts):
        try:
            if httpx.get(f"{sidecar_url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the sidecar never registered its key")


def _wait_until_core_sees_it_healthy(target: str, api_key: str, attempts: int = 600) -> None:
    import grpc

    from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
    from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc

    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.RoutingServiceStub(channel)
        for _ in range(attempts):
            nodes = stub.ListNodes(pb.ListNodesRequest(), metadata=(("authorization", f"Bearer {api_key}"),)).nodes
            if any(n.node_id == NODE_ID and n.healthy for n in nodes):
                return
            time.sleep(0.05)
    raise RuntimeError("the core never saw the sidecar healthy")


@contextmanager
def confidential_stack(tmp: Path, database_url: str) -> Iterator[ConfidentialStack]:
    authority, identity = SigningKey.generate(), SigningKey.generate()
    engine_port, sidecar_port, core_port, facade_port = (free_port() for _ in range(4))
    engine_url, sidecar_url = f"http://127.0.0.1:{engine_port}", f"http://127.0.0.1:{sidecar_port}"
    config = tmp / "config.toml"
    config.write_text(
        "[core]\nhealth_interval = 0.2\n"
        f"[confidential]\nattestation_authority_key = '{base64.b64encode(bytes(authority.verify_key)).decode()}'\n"
        f"\n[[nodes]]\nid = '{NODE_ID}'\nurl = '{sidecar_url}'\nmodels = ['{CHAT}', '{EMBED}', '{IMAGE}']\n"
        f"input_price_per_million = {PRICE_IN}\noutput_price_per_million = {PRICE_OUT}\n"
        f"price_per_image = {PRICE_IMAGE}\n"
        f"confidential_signing_key = '{base64.b64encode(bytes(identity.verify_key)).decode()}'\n"
        f"\n[[nodes]]\nid = 'plain'\nurl = '{engine_url}'\nmodels = ['{PLAIN_ONLY}']\n"
    )
    env = {
        **os.environ,
        "ATOMA_CONFIG": str(config),
        "ATOMA_DATABASE__URL": database_url,
        "ATOMA_FACADE__PORT": str(facade_port),
        "ATOMA_CORE__LISTEN": f"127.0.0.1:{core_port}",
        "ATOMA_FACADE__CORE_TARGET": f"127.0.0.1:{core_port}",
    }
    (tmp / "admin-token").write_text(ADMIN_TOKEN)
    with ExitStack() as stack:
        sim = ["node-sim", "--port", str(engine_port), "--node-id", "engine", "--chat-model", CHAT]
        sim += ["--chat-model", PLAIN_ONLY, "--embedding-model", EMBED, "--image-model", IMAGE]
        stack.enter_context(running(sim, ready_url=f"{engine_url}/health", log=tmp / "engine.log"))
        api_key = run_command("keys", "create", "--email", "conf@atoma.test", env=env).strip()
        run_command("balance", "credit", "--email", "conf@atoma.test", "--micro-usd", str(10**12), env=env)
        sidecar = [
            "--log-level",
            "DEBUG",
            "confidential-node",
            "--node-id",
            NODE_ID,
            "--engine-url",
            engine_url,
            "--core",
            f"127.0.0.1:{core_port}",
            "--signing-key-file",
            str(_seed_file(tmp / "identity.key", identity)),
            "--attestation-authority-key-file",
            str(_seed_file(tmp / "authority.key", authority)),
            "--port",
            str(sidecar_port),
            "--admin-token-file",
            str(tmp / "admin-token"),
        ]
        stack.enter_context(running(sidecar, ready_url=None, log=tmp / "sidecar.log"))
        facade = f"http://127.0.0.1:{facade_port}"
        serve = ["--log-level", "DEBUG", "serve"]
        stack.enter_context(running(serve, ready_url=f"{facade}/health", log=tmp / "proxy.log", env=env))
        _wait_for_key(sidecar_url)
        _wait_until_core_sees_it_healthy(f"127.0.0.1:{core_port}", api_key)
        yield ConfidentialStack(
            facade,
            f"127.0.0.1:{core_port}",
            api_key,
            database_url,
            sidecar_url,
            engine_url,
            tmp,
            authority,
            identity,
            env,
        )
