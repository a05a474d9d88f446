"""A PostgreSQL and a Redis of a test's own, to stop and start again (outage tests).

    with own_postgres() as postgres:        # initdb + pg_ctl on a free port, in a temporary directory
        url = postgres.create_database("atoma")
        postgres.stop(); postgres.start()
    with own_redis() as redis:              # redis-server on a free port, nothing persisted
        redis.stop(); redis.start()

Never the machine's shared servers: those other tests (and other people) use. initdb refuses to run as
root, so as root the cluster belongs to the `postgres` user (`runuser`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from tests.support.processes import free_port

__all__ = ["OwnPostgres", "OwnRedis", "own_postgres", "own_redis", "postgres_binaries"]

_STARTUP_ATTEMPTS = 400  # x 0.05 s


def postgres_binaries() -> Path | None:
    """The directory of initdb and pg_ctl (the newest installed PostgreSQL), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_owner(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@dataclass
class OwnPostgres:
    bin: Path
    data: Path
    port: int

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _pg_ctl(self, *args: str) -> None:
        command = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", *args]
        subprocess.run(_as_owner(command), check=True, capture_output=True, timeout=90)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._pg_ctl("-l", str(self.data / "server.log"), "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """`fast` ends the sessions and shuts down cleanly; `immediate` is a crash (recovery at the next start)."""
        self._pg_ctl("-m", mode, "stop")

    def _processes(self) -> list[int]:
        """The postmaster and its children (backends, checkpointer, ...): this cluster's processes only."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
        return [postmaster, *map(int, children)]

    def freeze(self) -> None:
        """SIGSTOP the whole cluster: connections are accepted by the kernel but nothing answers (a hung server)."""
        for pid in self._processes():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._processes():
            os.kill(pid, signal.SIGCONT)

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)


@contextlib.contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    """A fresh cluster (trust authentication, superuser `postgres`) running on a free port; removed afterwards."""
    binaries = postgres_binaries()
    if binaries is None:
        raise RuntimeError("PostgreSQL's initdb is not installed (/usr/lib/postgresql/*/bin)")
    directory = Path(tempfile.mkdtemp(prefix="atoma-own-pg-"))
    data = directory / "data"
    try:
        data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(directory, "postgres")
            shutil.chown(data, "postgres")
        init = [str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]
        subprocess.run(_as_owner(init), check=True, capture_output=True, timeout=120)
        postgres = OwnPostgres(binaries, data, free_port())
        postgres.start()
        try:
            yield postgres
        finally:
            with contextlib.suppress(OSError, ValueError):
                postgres.thaw()
            with contextlib.suppress(subprocess.SubprocessError):
                postgres.stop("immediate")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class OwnRedis:
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (again) on the same port, empty: nothing is persisted."""
        command = [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
        ]
        with (self.directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        for _ in range(_STARTUP_ATTEMPTS):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(64).startswith(b"+PONG"):
                    return
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited:\n{(self.directory / 'redis.log').read_text()}")
            time.sleep(0.05)
        raise RuntimeError("redis-server never answered PING")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None


@contextlib.contextmanager
def own_redis() -> Iterator[OwnRedis]:
    """redis-server on a free port, in a temporary directory; stopped and removed afterwards."""
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed")
    with tempfile.TemporaryDirectory(prefix="atoma-own-redis-") as directory:
        redis = OwnRedis(free_port(), Path(directory))
        redis.start()
        try:
            yield redis
        finally:
            redis.stop()
