"""The shared state store: one PostgreSQL database that every Ownlight instance uses.

Several instances (and ``ownlight keys`` run by an operator on any machine) read and write
it at once, so, as with the SQLite file, nothing is cached here: every call is a statement.
(A server keeps the active keys in memory in front of this, ``store.key_cache``, which the
database tells of every change.)

Connections come from a psycopg pool in autocommit mode: a read is one statement, a write
that must be atomic runs in ``transaction()``. When the server cannot be reached, a call
fails closed with ``StoreUnavailable`` (503 with ``Retry-After``: no key is trusted while
the store cannot say whether it is revoked). A read is tried once more on a fresh
connection first, since a connection that broke while idle (the server restarted) is the
usual cause. The store calls are made on the event loop's thread, so once the server is
known to be down, calls fail at once instead of each waiting for a connection (the instance
stays responsive meanwhile), and a probe thread connects every second: when one works,
the pool's connections are renewed and calls go through again.

Schema steps (``postgres_migrations``) are applied when the store opens, by whichever
instance first takes the database's advisory lock; the others wait on the lock and then
find nothing left to do, so instances started together apply each step exactly once.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from ownlight.errors import ConfigError, StoreUnavailable
from ownlight.store.base import MigrationState
from ownlight.store.postgres_migrations import POSTGRES_MIGRATIONS

# pg_advisory_lock's key for migrating: any constant other programs sharing the database do
# not use ("OWNL" in ASCII).
MIGRATION_LOCK = 0x4F574E4C
CONNECT_TIMEOUT = 10.0  # seconds to reach the server when the store opens
WAIT_TIMEOUT = 1.0  # seconds a call waits for a pooled connection before failing closed
RETRY_AFTER = 5.0  # seconds a client is told to wait when the store is unreachable
PROBE_EVERY = 1.0  # seconds between attempts to reach a store known to be down

log = logging.getLogger("ownlight.store")


# libpq's liveness settings for every connection Ownlight opens, unless the URL sets its
# own: a PostgreSQL that stops answering without closing the connection (a partition, a
# host gone) is noticed in about 11 s (keepalive probes from 5 s idle, every 2 s, 3 lost)
# or 10 s after sent data goes unacknowledged, instead of after the operating system's
# default of two hours or more; the call then fails and is retried like a stopped server.
LIVENESS = {"keepalives": "1", "keepalives_idle": "5", "keepalives_interval": "2",
            "keepalives_count": "3", "tcp_user_timeout": "10000"}


def liveness(url: str) -> dict[str, Any]:
    """``LIVENESS`` less what ``url`` (a URL or a ``key=value`` string) already says; to
    pass to ``psycopg.connect`` (whose keyword arguments win over the URL's)."""
    try:
        given = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return {}  # psycopg will say what is wrong with it
    return {k: v for k, v in LIVENESS.items() if k not in given}


def connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """A connection to the store with ``LIVENESS`` (every connection Ownlight opens to
    PostgreSQL outside the pool comes from here; tests/test_shared_ledger.py checks)."""
    return psycopg.connect(url, **{**liveness(url), **kwargs})


PASSWORD_PARAMETER = re.compile(r"(password\s*=\s*)('[^']*'|[^&\s]*)", re.IGNORECASE)


def without_password(url: str) -> str:
    """``url`` safe to print: a password, in the URL's user part or as a ``password=``
    parameter (of the URL or of a ``key=value`` connection string), becomes ``****``."""
    url = PASSWORD_PARAMETER.sub(r"\1****", url)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:****@{netloc[2]}"))


class PostgresDatabase:
    """A pool of connections to the shared database, its schema up to date once opened."""

    def __init__(self, url: str, *, max_connections: int = 10, migrate: bool = True):
        self.url = url
        self._down = threading.Event()  # set while the server is known to be unreachable
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._probe: threading.Thread | None = None
        self.pool = ConnectionPool(
            url, min_size=1, max_size=max_connections, open=False, name="ownlight-store",
            kwargs={"autocommit": True, **liveness(url)}, timeout=WAIT_TIMEOUT)
        try:
            # One plain connection first: a refused or misspelt address fails at once with
            # the server's reason, where the pool would retry until its timeout.
            connect(url, connect_timeout=int(CONNECT_TIMEOUT)).close()
            self.pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except Exception as exc:
            self.pool.close()
            reason = str(exc).strip()
            for password in (urlsplit(url).password, *(
                    m.group(2).strip("'") for m in PASSWORD_PARAMETER.finditer(url))):
                if password:
                    reason = reason.replace(password, "****")
            raise ConfigError(f"cannot reach the store at {self.where}: {reason}") from None
        if migrate:
            self.migrate()

    @property
    def where(self) -> str:
        return without_password(self.url)

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """Run statements atomically; a failure rolls everything back."""
        self._check_up()
        try:
            with self.pool.connection() as conn:
                try:
                    with conn.transaction():
                        yield conn
                except psycopg.OperationalError as exc:
                    if conn.broken or conn.closed:
                        raise self._unavailable(exc) from None
                    raise  # the statement's own failure (a deadlock, a timeout)
        except PoolTimeout as exc:
            raise self._unavailable(exc) from None

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        self._check_up()
        lost: Exception | None = None
        for _ in range(2):  # a connection broken while idle is dropped: once more
            try:
                with self.pool.connection() as conn:
                    try:
                        return conn.execute(sql, params).fetchall()
                    except psycopg.OperationalError as exc:
                        if not (conn.broken or conn.closed):
                            raise
                        lost = exc
            except PoolTimeout as exc:  # no connection to be had: the server is down
                raise self._unavailable(exc) from None
        assert lost is not None
        raise self._unavailable(lost)

    # -- when the server is lost -----------------------------------------------------------

    def reachable(self) -> bool:
        """Whether the server answers now (at once False while it is known to be down)."""
        try:
            self.query("SELECT 1")
        except StoreUnavailable:
            return False
        return True

    def _check_up(self) -> None:
        if self._down.is_set():
            raise StoreUnavailable("Ownlight's state store is unreachable; try again shortly.",
                                   retry_after=RETRY_AFTER)

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        """Mark the store down (the probe starts) and say so to the caller."""
        with self._lock:
            if not self._down.is_set() and not self._closing.is_set():
                log.error("the store at %s is unreachable: %s", self.where, str(exc).strip())
                self._down.set()
                self._probe = threading.Thread(target=self._watch, daemon=True,
                                               name="ownlight-store-probe")
                self._probe.start()
        return StoreUnavailable("Ownlight's state store is unreachable; try again shortly.",
                                retry_after=RETRY_AFTER)

    def _watch(self) -> None:
        while not self._closing.wait(PROBE_EVERY):
            try:
                connect(self.url, connect_timeout=int(CONNECT_TIMEOUT)).close()
            except psycopg.Error:
                continue
            self.pool.check()  # drop the connections the outage broke, open fresh ones
            self._down.clear()
            log.warning("the store at %s is reachable again", self.where)
            return

    # -- migrations -------------------------------------------------------------------------

    def status(self) -> list[MigrationState]:
        done = self._applied_names()
        return [MigrationState(name, name in done) for name, _ in POSTGRES_MIGRATIONS]

    def _applied_names(self) -> set[str]:
        with self.pool.connection() as conn:
            exists = conn.execute("SELECT to_regclass('ownlight_migrations')").fetchone()
            if exists is None or exists[0] is None:
                return set()
            return {row[0] for row in conn.execute("SELECT name FROM ownlight_migrations")}

    def migrate(self) -> list[str]:
        """Apply pending steps under the advisory lock, each in its own transaction with
        its record in ``ownlight_migrations``."""
        applied: list[str] = []
        with self.pool.connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                conn.execute("CREATE TABLE IF NOT EXISTS ownlight_migrations ("
                             "name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL "
                             "DEFAULT now())")
                done = {row[0] for row in conn.execute("SELECT name FROM ownlight_migrations")}
                for name, statements in POSTGRES_MIGRATIONS:
                    if name in done:
                        continue
                    with conn.transaction():
                        for statement in statements:
                            conn.execute(statement)
                        conn.execute("INSERT INTO ownlight_migrations (name) VALUES (%s)",
                                     (name,))
                    applied.append(name)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        return applied

    def close(self) -> None:
        self._closing.set()
        if self._probe is not None:
            self._probe.join(CONNECT_TIMEOUT)
        self.pool.close()
