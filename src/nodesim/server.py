"""Running a simulated node: in the caller's event loop (demo, tests) or blocking (CLI).

The listening socket is bound here, before uvicorn starts, so a busy port raises OSError in the
caller instead of uvicorn's sys.exit inside a task, and port 0 yields the real port at once.
In-process servers do not install signal handlers (uvicorn would otherwise take over Ctrl+C for
the whole process); the blocking CLI server does.

Logging is kept per server where uvicorn allows it: no dictConfig (log_config=None), and the
access log is switched off in a protocol subclass rather than with `access_log=False`, which
would strip the handlers of the process-wide "uvicorn.access" logger (the proxy's own uvicorn
may share this process). `log_level="warning"` does set uvicorn's logger levels process-wide;
a uvicorn configured later (e.g. the proxy's facade) sets them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from atoma_proxy.nodesim.app import build_app
from atoma_proxy.nodesim.config import SimConfig
from atoma_proxy.nodesim.state import SimState

__all__ = ["RunningNodeSim", "run_node_sim", "start_node_sim"]


class _QuietHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol without access-log lines."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.access_log = False


class _SimServer(uvicorn.Server):
    """uvicorn.Server that signals readiness with an event and, when embedded, leaves signals alone."""

    def __init__(self, config: uvicorn.Config, *, embedded: bool) -> None:
        super().__init__(config)
        self.embedded = embedded
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.ready.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if self.embedded:
            yield  # the embedding application owns the signals
        else:
            with super().capture_signals():
                yield

    async def start(self, sock: socket.socket, name: str) -> asyncio.Task[None]:
        """Serve on `sock` in a new task; return it once listening (raise if startup failed)."""
        task = asyncio.create_task(self.serve(sockets=[sock]), name=name)
        ready = asyncio.ensure_future(self.ready.wait())
        await asyncio.wait((task, ready), return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if not self.started:
            sock.close()
            await task  # raises the startup failure, if it ended with one
            raise RuntimeError("the node simulator stopped during startup")
        return task


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio enables TCP_NODELAY only on sockets whose proto says TCP
    # (with proto 0, every keep-alive response would stall ~40 ms on Nagle + delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _uvicorn_config(app: Starlette) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        loop="asyncio",
        http=_QuietHttpToolsProtocol,
        lifespan="off",
        log_config=None,
        log_level="warning",
        timeout_graceful_shutdown=1,
    )


class RunningNodeSim:
    """A simulator serving in the current event loop; `await stop()` when done.

    `config` is live (the same object POST /sim/config changes); `state` gives in-process access to
    the counters, request log and metrics that /sim/stats, /sim/requests and /metrics report.
    """

    def __init__(
        self, config: SimConfig, url: str, state: SimState, server: uvicorn.Server, task: asyncio.Task[None]
    ) -> None:
        self.config = config
        self.url = url
        self.state = state
        self._server = server
        self._task = task

    async def stop(self) -> None:
        """Stop listening and close connections; requests still running after 1 s are cancelled."""
        self._server.should_exit = True
        await self._task

    async def __aenter__(self) -> RunningNodeSim:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


async def start_node_sim(config: SimConfig, host: str = "127.0.0.1", port: int = 0) -> RunningNodeSim:
    """Start a simulator as a task of the running loop; returns once it accepts connections."""
    app = build_app(config)
    sock = _bind(host, port)
    server = _SimServer(_uvicorn_config(app), embedded=True)
    task = await server.start(sock, f"nodesim:{config.node_id}")
    return RunningNodeSim(config, _url(sock), app.state.sim, server, task)


def run_node_sim(config: SimConfig, host: str = "127.0.0.1", port: int = 8100) -> None:
    """Serve until interrupted (SIGINT/SIGTERM); prints one line with the URL once listening."""

    async def main() -> None:
        sock = _bind(host, port)
        server = _SimServer(_uvicorn_config(build_app(config)), embedded=False)
        task = await server.start(sock, f"nodesim:{config.node_id}")
        print(f"node simulator {config.node_id} listening on {_url(sock)}", flush=True)
        await task

    asyncio.run(main())
