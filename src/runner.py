"""Running the proxy's parts in one asyncio process: core, facade, simulated nodes.

Deployments run `core` and `facade` as separate processes; `serve` and `demo` put them in one
event loop, where the facade calls the core's services in-process (src/core/local_channel.py:
no serialization, no loopback connection; the gRPC port stays open for other clients).
Everything stops on SIGINT/SIGTERM, the core last so in-flight streams that the facade still
relays can finish. A worker (src/workers.py) is one such process that shares its port with the
other workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from atoma_proxy.config import Settings
from atoma_proxy.core.persistence import upgrade_database
from atoma_proxy.core.server import CoreServer
from atoma_proxy.core.telemetry import tracing
from atoma_proxy.workers import shared_sockets, stop_when_orphaned

__all__ = ["FacadeServer", "PortInUse", "run_until_stopped", "stop_event_on_signals"]


class PortInUse(Exception):
    """A listen address is taken (another proxy running?): the message says which and what to set."""


def _refuse_taken_core_port(listen: str) -> None:
    """PortInUse when `core.listen`'s TCP port is taken: said before gRPC logs its own bind error."""
    host, _, port = listen.rpartition(":")
    if not port.isdigit() or int(port) == 0 or listen.startswith("unix"):
        return
    try:
        for sock in shared_sockets(host.strip("[]"), int(port), reuse_port=False):
            sock.close()
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"port {port} is in use (another atoma-proxy running?); set core.listen / ATOMA_CORE__LISTEN"
            ) from None


def stop_event_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the runner owns SIGINT/SIGTERM."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()


class FacadeServer:
    """The FastAPI facade under uvicorn, as a task of the current loop; `reuse_port` for the workers of `facade`."""

    def __init__(
        self, settings: Settings, *, reuse_port: bool = False, core_channel: Callable[[], Any] | None = None
    ) -> None:
        """`core_channel`: the in-process channel of a core in this process, else gRPC to `facade.core_targets`."""
        from atoma_proxy.facade.app import create_app
        from atoma_proxy.facade.http_protocol import facade_protocol

        config = uvicorn.Config(
            create_app(settings, core_channel),
            host=settings.facade.host,
            port=settings.facade.port,
            loop="none",
            http=facade_protocol(settings.facade),
            log_level="warning",
            log_config=None,  # uvicorn's lines go through the root handler: its format, its redaction
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=int(settings.core.shutdown_grace),
        )
        self._server = _EmbeddedUvicorn(config)
        self._task: asyncio.Task[None] | None = None
        self._reuse_port = reuse_port
        self.port = settings.facade.port

    async def start(self) -> int:
        config = self._server.config
        try:
            sockets = shared_sockets(config.host, config.port, reuse_port=self._reuse_port)
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            raise PortInUse(
                f"port {config.port} is in use (another atoma-proxy running?); set facade.port / ATOMA_FACADE__PORT"
            ) from None
        self._task = asyncio.create_task(self._server.serve(sockets), name="facade")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the facade stopped while starting")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task


async def run_until_stopped(
    settings: Settings,
    *,
    core: bool,
    facade: bool,
    migrate: bool,
    on_ready: Callable[[CoreServer | None, FacadeServer | None], Awaitable[None]] | None = None,
    worker: bool = False,
) -> None:
    """Serves until SIGINT/SIGTERM; a `worker` shares its port and also stops when its parent is gone."""
    stop = stop_event_on_signals()
    if core and not worker:
        _refuse_taken_core_port(settings.core.listen)
    service = "atoma-proxy" if core and facade else "atoma-proxy-core" if core else "atoma-proxy-facade"
    tracing.install(settings.telemetry, service)  # before the servers: their gRPC interceptors depend on it
    if migrate:
        await upgrade_database(settings.database.url)
    core_server = CoreServer(settings, reuse_port=worker) if core else None
    # Core and facade in one process: the facade calls the core in-process (unless `facade.in_process` is off).
    in_process = core_server is not None and settings.facade.in_process
    local = core_server.local_channel if core_server is not None and in_process else None
    facade_server = FacadeServer(settings, reuse_port=worker, core_channel=local) if facade else None
    with stop_when_orphaned(stop) if worker else contextlib.nullcontext():
        try:
            if core_server is not None:
                try:
                    await core_server.start()
                except RuntimeError as error:  # grpc's "Failed to bind"
                    if "bind" not in str(error).lower():
                        raise
                    port = settings.core.listen.rpartition(":")[2]
                    raise PortInUse(
                        f"port {port} is in use (another atoma-proxy running?); set core.listen / ATOMA_CORE__LISTEN"
                    ) from None
            if facade_server is not None:
                await facade_server.start()
            if on_ready is not None:
                await on_ready(core_server, facade_server)
            await stop.wait()
        finally:
            if facade_server is not None:
                await facade_server.stop()
            if core_server is not None:
                await core_server.stop()
