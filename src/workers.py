"""Several processes serving one port: `atoma-proxy core` and `facade` with `workers` > 1 (Linux).

The parent starts each worker as a new interpreter, `atoma-proxy ... --as-worker N` (never a fork of a process
holding grpc or asyncio state). Every worker is a full instance that binds the same address with SO_REUSEPORT, and
the kernel spreads new connections over them. The parent forwards SIGINT and SIGTERM to the workers as SIGTERM, so
each drains its in-flight requests, and waits for them; a second signal kills them at once. It does not restart a
worker that exits on its own: it stops the others and exits non-zero, and the supervisor of the proxy (systemd,
Kubernetes, compose) restarts the whole, so restarts are decided in one place and never hidden behind a live port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence

__all__ = ["ATOMA_PROXY", "run_workers", "shared_metrics_directory", "shared_sockets", "stop_when_orphaned"]

log = logging.getLogger(__name__)

ATOMA_PROXY = (sys.executable, "-m", "atoma_proxy.cli")
_STOPS = (signal.SIGINT, signal.SIGTERM)
_STOPPED = (0, -signal.SIGTERM)  # a worker told to stop; the signal itself if it came before its handler
_POLL = 0.05


def run_workers(args: Sequence[str], count: int, *, forward: Sequence[signal.Signals] = ()) -> int:
    """Runs `atoma-proxy ARGS --as-worker N` for N in 1..count until stopped; returns the parent's exit status.

    `forward` signals (SIGHUP: reload the nodes) are passed on to the workers as they are.
    """
    received: list[int] = []  # the handlers only record; the loop acts

    def record(signum: int, _frame: object) -> None:
        received.append(signum)

    # Ignored while the workers start: they inherit that until they install their own handler.
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in forward}
    previous |= {sig: signal.signal(sig, record) for sig in _STOPS}
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(1, count + 1):
            # Their own process group: a terminal's Ctrl-C reaches the parent alone, which stops them in order.
            # Standard input: see stop_when_orphaned.
            worker = subprocess.Popen(
                [*ATOMA_PROXY, *args, "--as-worker", str(index)], stdin=subprocess.PIPE, process_group=0
            )
            workers.append(worker)
        for sig in forward:
            signal.signal(sig, record)
        log.info("%d workers started, pids %s", count, " ".join(str(worker.pid) for worker in workers))
        return _supervise(workers, received)
    finally:
        for worker in workers:
            if worker.poll() is None:  # only after an error in the parent itself
                worker.kill()
                worker.wait()
            if worker.stdin is not None:
                worker.stdin.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def shared_metrics_directory() -> Iterator[str]:
    """PROMETHEUS_MULTIPROC_DIR for the workers, emptied first: an operator's, or a temporary one removed after.

    Every worker writes its metrics there and each one's /metrics sums them all (core/telemetry/metrics.py).
    """
    name = "PROMETHEUS_MULTIPROC_DIR"
    given = os.environ.get(name)
    if given:
        os.makedirs(given, exist_ok=True)
        for leftover in os.listdir(given):  # a previous run's counters would be counted again
            if leftover.endswith(".db"):
                os.unlink(os.path.join(given, leftover))
        yield given
        return
    directory = tempfile.mkdtemp(prefix="atoma-metrics-")
    os.environ[name] = directory
    try:
        yield directory
    finally:
        os.environ.pop(name, None)
        shutil.rmtree(directory, ignore_errors=True)


def _supervise(workers: list[subprocess.Popen[bytes]], received: list[int]) -> int:
    stopping = failed = False
    reported: set[int] = set()
    while True:
        while received:
            signum = received.pop(0)
            if signum in _STOPS and stopping:
                log.warning("stopping again: killing the workers")
                _send(workers, signal.SIGKILL)
            elif signum in _STOPS:
                log.info("stopping %d workers", len(workers))
                stopping = True
                _send(workers, signal.SIGTERM)
            elif not stopping:
                _send(workers, signum)
        for index, worker in enumerate(workers, start=1):
            if worker.poll() is None or index in reported:
                continue
            reported.add(index)
            if stopping and worker.returncode in _STOPPED:
                continue
            log.error("worker %d (pid %d) exited with status %d", index, worker.pid, worker.returncode)
            failed = True
            if not stopping:
                log.error("stopping the other workers: the proxy's supervisor is to restart it")
                stopping = True
                _send(workers, signal.SIGTERM)
        if len(reported) == len(workers):
            return 1 if failed else 0
        time.sleep(_POLL)


def _send(workers: list[subprocess.Popen[bytes]], signum: int) -> None:
    for worker in workers:
        if worker.returncode is None:
            worker.send_signal(signum)


def shared_sockets(host: str, port: int, *, reuse_port: bool = True) -> list[socket.socket]:
    """Bound TCP sockets on every address of host:port that the other workers bind too (SO_REUSEPORT;
    without `reuse_port`, sockets of this process alone)."""
    addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, _, _, _, address in dict.fromkeys(addresses):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:  # as asyncio does: the IPv4 address gets its own socket
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


@contextlib.contextmanager
def stop_when_orphaned(stop: asyncio.Event) -> Iterator[None]:
    """Sets `stop` if the parent exits without stopping this worker, until the block ends.

    A worker's standard input is a pipe from the parent that it never writes to: it reaches its end when the parent
    is gone, however it died.
    """
    loop = asyncio.get_running_loop()
    stdin = sys.stdin.fileno()

    def parent_gone() -> None:
        loop.remove_reader(stdin)
        log.warning("the parent process is gone: stopping")
        stop.set()

    loop.add_reader(stdin, parent_gone)
    try:
        yield
    finally:
        loop.remove_reader(stdin)
