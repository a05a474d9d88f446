"""A core killed with SIGKILL mid-stream leaves its reservation held; a restarted core's sweeper frees it.

    node-sim (slow stream) ◀── core A ── SIGKILL mid-stream
                           ◀── core B (restarted on the same database) ── sweeps

The stream's reservation expires at its deadline (3 s) plus `ledger.reservation_margin` (0.5 s);
core B sweeps every 0.2 s. Afterwards the ledger is exact: nothing is held, what was debited is
exactly what the usage records charged, and the killed request charged nothing (the proxy cannot
prove what the node produced after its core died).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import grpc
import pytest

from atoma_proxy.generated.atoma.routing.v1 import chat_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2_grpc as pb_grpc
from tests.e2e._ledger import funded_key, start_core, stop, stored_ledger, wait_serving
from tests.e2e.conftest import CHAT, SLOW_CHAT
from tests.support.databases import DATABASE_KINDS, temporary_database_sync
from tests.support.processes import free_port, running

pytestmark = pytest.mark.slow

CREDIT = 10_000_000


def _config(tmp: Path, node: str) -> Path:
    config = tmp / "config.toml"
    config.write_text(
        "[core]\nhealth_interval = 0.5\n\n"
        "[ledger]\nreservation_margin = 0.5\nsweep_interval = 0.2\n"
        + "".join(f"\n[[tokenizers]]\nmodel = '{m}'\nkind = 'sim-words'\n" for m in (CHAT, SLOW_CHAT))
        + f"\n[[nodes]]\nid = 'sim'\nurl = '{node}'\nmodels = ['{CHAT}', '{SLOW_CHAT}']\n"
        "input_price_per_million = 1000000\noutput_price_per_million = 3000000\n"
    )
    return config


def _chat(model: str, *, stream: bool) -> pb.ChatCompletionRequest:
    return pb.ChatCompletionRequest(
        model=model, messages=[chat_pb2.ChatMessage(role="user", text="tell me a long story")], stream=stream
    )


async def _poll(check, attempts: int = 300):  # type: ignore[no-untyped-def]
    """`check()` until it returns something truthy, every 0.1 s, `attempts` times at most."""
    for _ in range(attempts):
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError("the condition never held")


@pytest.mark.parametrize("kind", DATABASE_KINDS)
async def test_a_core_killed_mid_stream_leaves_an_exact_ledger(kind: str, tmp_path: Path) -> None:
    with temporary_database_sync(kind) as database_url:
        port = free_port()
        node = f"http://127.0.0.1:{port}"
        node_args = [
            "node-sim",
            "--port",
            str(port),
            "--chat-model",
            CHAT,
            "--chat-model",
            SLOW_CHAT,
            "--tokens-per-second",
            "20",
            "--reply-tokens",
            "400",
        ]
        with running(node_args, ready_url=f"{node}/health", log=tmp_path / "node.log"):
            email, key = await funded_key(database_url, CREDIT)
            metadata = (("authorization", f"Bearer {key}"),)
            env = {"ATOMA_CONFIG": str(_config(tmp_path, node)), "ATOMA_DATABASE__URL": database_url}
            first = {**env, "ATOMA_CORE__LISTEN": f"127.0.0.1:{free_port()}"}
            core_a = start_core(first, tmp_path / "core-a.log")
            try:
                wait_serving(first["ATOMA_CORE__LISTEN"], core_a, tmp_path / "core-a.log")
                async with grpc.aio.insecure_channel(first["ATOMA_CORE__LISTEN"]) as channel:
                    stub = pb_grpc.RoutingServiceStub(channel)
                    # One request completes and is settled before the crash.
                    request = pb.ChatCompletionRequest(
                        model=CHAT, messages=[chat_pb2.ChatMessage(role="user", text="hi")], max_tokens=3
                    )
                    done = [e async for e in stub.ChatCompletion(request, metadata=metadata, timeout=30)]
                    paid = done[-1].end.cost_micro_usd
                    assert paid == -(-(7 * 1_000_000 + 3 * 3_000_000) // 1_000_000)  # 7 prompt, 3 generated
                    # The next one streams slowly; the core dies while it does.
                    call = stub.ChatCompletion(_chat(SLOW_CHAT, stream=True), metadata=metadata, timeout=3)
                    chunks = 0
                    async for _ in call:
                        chunks += 1
                        if chunks == 3:
                            break
                    during = await stored_ledger(database_url, email)
                    assert during.held == 1 and during.reserved > 0
                    core_a.send_signal(signal.SIGKILL)
                    core_a.wait()
                    call.cancel()
            finally:
                stop(core_a)

            second = {**env, "ATOMA_CORE__LISTEN": f"127.0.0.1:{free_port()}"}
            core_b = start_core(second, tmp_path / "core-b.log")
            try:
                wait_serving(second["ATOMA_CORE__LISTEN"], core_b, tmp_path / "core-b.log")

                async def swept():  # type: ignore[no-untyped-def]
                    ledger = await stored_ledger(database_url, email)
                    return ledger if ledger.held == 0 else None

                ledger = await _poll(swept)
                assert ledger.reserved == 0
                assert ledger.debited == ledger.charged == paid
                assert ledger.credited - ledger.debited == CREDIT - paid
                assert sorted((r.outcome, r.cost) for r in ledger.records) == [("expired", 0), ("ok", paid)]

                # The restarted core meters as before.
                async with grpc.aio.insecure_channel(second["ATOMA_CORE__LISTEN"]) as channel:
                    stub = pb_grpc.RoutingServiceStub(channel)
                    again = [e async for e in stub.ChatCompletion(request, metadata=metadata, timeout=30)]
                after = await stored_ledger(database_url, email)
                assert again[-1].end.cost_micro_usd == paid
                assert (after.held, after.reserved, after.debited, after.charged) == (0, 0, 2 * paid, 2 * paid)
            finally:
                stop(core_b)
