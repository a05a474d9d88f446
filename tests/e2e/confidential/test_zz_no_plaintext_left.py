"""Runs last in this directory: the canary sent confidentially by the other tests (prompts, inputs) is
nowhere in the proxy's database, its logs (DEBUG level), or the sidecar's logs."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from atoma_proxy.clients import AsyncConfidentialClient
from tests.e2e.confidential.stack import CHAT, ConfidentialStack

CANARY = b"CANARY-7f3a9c-confidential-secret"


async def test_the_canary_is_nowhere_outside_the_engine(conf: ConfidentialStack) -> None:
    async with AsyncConfidentialClient.rest(conf.facade_url, api_key=conf.api_key) as client:
        result = await client.chat_completion_create(
            model=CHAT, messages=[{"role": "user", "content": CANARY.decode()}], max_tokens=2
        )
        assert result.data["choices"]  # the canary did travel, through the proxy, to the engine
        async for _ in client.chat_completion(model=CHAT, messages=[{"role": "user", "content": CANARY.decode()}]):
            pass
    if conf.database_url.startswith("sqlite"):
        database = Path(conf.database_url.removeprefix("sqlite:///"))
        stores = list(database.parent.glob(database.name + "*"))  # the file and its -wal / -shm
        assert database in stores
    else:  # every row of every table, as pg_dump writes it
        command = ["pg_dump", "--data-only", conf.database_url]
        dump = await asyncio.to_thread(subprocess.run, command, capture_output=True, check=True)
        assert b"COPY public.reservations" in dump.stdout
        stores = [conf.logs / "pg_dump.sql"]
        stores[0].write_bytes(dump.stdout)
    logs = [conf.logs / "proxy.log", *conf.logs.glob("sidecar*.log")]
    assert len(logs) == 4
    assert all(log.stat().st_size > 0 for log in logs)
    for path in [*stores, *logs]:
        assert CANARY not in path.read_bytes(), f"{path} holds plaintext"
