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

from tests.e2e.confidential.tamperer import Tamperer, tamperer
from tests.support.processes import free_port, run_command, running

CHAT = "conf/chat"
EMBED = "conf/embed"
IMAGE = "conf/image"
PLAIN_ONLY = "conf/plain-only"
SHARED = "conf/shared"  # served by "secure" and "flaky" (whose engine fails every request)
TAMPERED = "conf/tampered"  # served by "evil" only, behind the tamperer
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
    tamperer: Tamperer


def _node(node_id: str, url: str, models: list[str], identity: SigningKey) -> str:
    key = base64.b64encode(bytes(identity.verify_key)).decode()
    return (
        f"\n[[nodes]]\nid = '{node_id}'\nurl = '{url}'\nmodels = {models!r}\n"
        f"input_price_per_million = {PRICE_IN}\noutput_price_per_million = {PRICE_OUT}\n"
        f"confidential_signing_key = '{key}'\n"
    )


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


def _wait_until_core_sees_it_healthy(target: str, api_key: str, node_id: str, attempts: int = 600) -> None:
    import grpc

    from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
    from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc

    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.RoutingServiceStub(channel)
        for _ in range(attempts):
            nodes = stub.ListNodes(pb.ListNodesRequest(), metadata=(("authorization", f"Bearer {api_key}"),)).nodes
            if any(n.node_id == node_id and n.healthy for n in nodes):
                return
            time.sleep(0.05)
    raise RuntimeError("the core never saw the sidecar healthy")


def _sidecar(name: str, engine: str, core: str, port: int, identity: Path, authority: Path) -> list[str]:
    args = ["--log-level", "DEBUG", "confidential-node", "--node-id", name, "--engine-url", engine, "--core", core]
    return [*args, "--signing-key-file", str(identity), "--attestation-authority-key-file", str(authority),
            "--port", str(port)]  # fmt: skip


@contextmanager
def confidential_stack(tmp: Path, database_url: str) -> Iterator[ConfidentialStack]:
    """Nodes: "secure" (sidecar + simulator: CHAT, EMBED, IMAGE, SHARED), "flaky" (sidecar in front of a
    simulator failing every request: SHARED), "evil" (sidecar behind the tamperer: TAMPERED), "plain"."""
    authority, identity = SigningKey.generate(), SigningKey.generate()
    flaky_identity, evil_identity = SigningKey.generate(), SigningKey.generate()
    engine_port, sidecar_port, core_port, facade_port, broken_port, flaky_port, evil_port = (
        free_port() for _ in range(7)
    )
    engine_url, sidecar_url = f"http://127.0.0.1:{engine_port}", f"http://127.0.0.1:{sidecar_port}"
    broken_url, flaky_url = f"http://127.0.0.1:{broken_port}", f"http://127.0.0.1:{flaky_port}"
    evil_sidecar_url, core = f"http://127.0.0.1:{evil_port}", f"127.0.0.1:{core_port}"
    authority_file = _seed_file(tmp / "authority.key", authority)
    (tmp / "admin-token").write_text(ADMIN_TOKEN)
    with ExitStack() as stack:
        tamper, tamper_url = stack.enter_context(tamperer(evil_sidecar_url))
        config = tmp / "config.toml"
        config.write_text(
            "[core]\nhealth_interval = 0.2\n"
            # The tests read the ledger right after each answer: answers wait for their commit here
            # (answering first is tested in tests/core/ledger and tests/e2e/test_core_failover.py).
            "[ledger]\nanswer_before_settlement = false\n"
            f"[confidential]\nattestation_authority_key = '{base64.b64encode(bytes(authority.verify_key)).decode()}'\n"
            + _node(NODE_ID, sidecar_url, [CHAT, EMBED, IMAGE, SHARED], identity)
            + f"price_per_image = {PRICE_IMAGE}\n"
            + f"\n[[nodes]]\nid = 'plain'\nurl = '{engine_url}'\nmodels = ['{PLAIN_ONLY}']\n"
            + _node("flaky", flaky_url, [SHARED], flaky_identity)
            + _node("evil", tamper_url, [TAMPERED], evil_identity)
        )
        env = {
            **os.environ,
            "ATOMA_CONFIG": str(config),
            "ATOMA_DATABASE__URL": database_url,
            "ATOMA_FACADE__PORT": str(facade_port),
            "ATOMA_CORE__LISTEN": core,
            "ATOMA_FACADE__CORE_TARGET": core,
        }
        sim = ["node-sim", "--port", str(engine_port), "--node-id", "engine", "--chat-model", CHAT]
        sim += ["--chat-model", PLAIN_ONLY, "--chat-model", SHARED, "--chat-model", TAMPERED]
        sim += ["--embedding-model", EMBED, "--image-model", IMAGE]
        stack.enter_context(running(sim, ready_url=f"{engine_url}/health", log=tmp / "engine.log"))
        broken = ["node-sim", "--port", str(broken_port), "--node-id", "broken", "--chat-model", SHARED]
        broken += ["--error-rate", "1", "--error-status", "500"]
        stack.enter_context(running(broken, ready_url=f"{broken_url}/health", log=tmp / "broken.log"))
        api_key = run_command("keys", "create", "--email", "conf@atoma.test", env=env).strip()
        run_command("balance", "credit", "--email", "conf@atoma.test", "--micro-usd", str(10**12), env=env)
        secure = _sidecar(
            NODE_ID, engine_url, core, sidecar_port, _seed_file(tmp / "secure.key", identity), authority_file
        )
        secure += ["--admin-token-file", str(tmp / "admin-token")]
        stack.enter_context(running(secure, ready_url=None, log=tmp / "sidecar.log"))
        for name, url, port, key in (
            ("flaky", broken_url, flaky_port, flaky_identity),
            ("evil", engine_url, evil_port, evil_identity),
        ):
            args = _sidecar(name, url, core, port, _seed_file(tmp / f"{name}.key", key), authority_file)
            stack.enter_context(running(args, ready_url=None, log=tmp / f"sidecar-{name}.log"))
        facade = f"http://127.0.0.1:{facade_port}"
        serve = ["--log-level", "DEBUG", "serve"]
        stack.enter_context(running(serve, ready_url=f"{facade}/health", log=tmp / "proxy.log", env=env))
        for url in (sidecar_url, flaky_url, evil_sidecar_url):
            _wait_for_key(url)
        for node in (NODE_ID, "flaky", "evil"):
            _wait_until_core_sees_it_healthy(core, api_key, node)
        yield ConfidentialStack(
            facade, core, api_key, database_url, sidecar_url, engine_url, tmp, authority, identity, env, tamper
        )
