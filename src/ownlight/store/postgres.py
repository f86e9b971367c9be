"""The shared state store: one PostgreSQL database that every Ownlight instance uses.

Several instances (and ``ownlight keys`` run by an operator on any machine) read and write
it at once, so, as with the SQLite file, nothing is cached here: every call is a statement,
and a key revoked anywhere is refused on the next request that reaches any instance.

Connections come from a psycopg pool in autocommit mode: a read is one statement, a write
that must be atomic runs in ``transaction()``. When the server cannot be reached, a call
fails closed with ``StoreUnavailable`` (503 with ``Retry-After``: no key is trusted while
the store cannot say whether it is revoked). A read is tried once more on a fresh
connection first, since a connection that broke while idle (the server restarted) is the
usual cause. The pool reconnects in the background, so service comes back with the server.

Schema steps (``postgres_migrations``) are applied when the store opens, by whichever
instance first takes the database's advisory lock; the others wait on the lock and then
find nothing left to do, so instances started together apply each step exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from ownlight.errors import ConfigError, StoreUnavailable
from ownlight.store.base import MigrationState
from ownlight.store.postgres_migrations import POSTGRES_MIGRATIONS

# pg_advisory_lock's key for migrating: any constant other programs sharing the database do
# not use ("OWNL" in ASCII).
MIGRATION_LOCK = 0x4F574E4C
CONNECT_TIMEOUT = 10.0  # seconds to reach the server when the store opens
WAIT_TIMEOUT = 3.0  # seconds a call waits for a pooled connection before failing closed
RETRY_AFTER = 5.0  # seconds a client is told to wait when the store is unreachable
UNREACHABLE = (psycopg.OperationalError, PoolTimeout)

log = logging.getLogger("ownlight.store")


def without_password(url: str) -> str:
    """``url`` safe to print: the password, if any, is replaced by ``****``."""
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
        self.pool = ConnectionPool(
            url, min_size=1, max_size=max_connections, open=False, name="ownlight-store",
            kwargs={"autocommit": True}, timeout=WAIT_TIMEOUT)
        try:
            # One plain connection first: a refused or misspelt address fails at once with
            # the server's reason, where the pool would retry until its timeout.
            psycopg.connect(url, connect_timeout=int(CONNECT_TIMEOUT)).close()
            self.pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except Exception as exc:
            self.pool.close()
            reason = str(exc).strip()
            password = urlsplit(url).password
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
        try:
            with self.pool.connection() as conn, conn.transaction():
                yield conn
        except UNREACHABLE as exc:
            raise self._unavailable(exc) from None

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._query(sql, params)
        except PoolTimeout as exc:  # no connection to be had: the server is down
            raise self._unavailable(exc) from None
        except psycopg.OperationalError:
            pass  # a connection broken while idle is dropped by the pool: once more
        try:
            return self._query(sql, params)
        except UNREACHABLE as exc:
            raise self._unavailable(exc) from None

    def _query(self, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        with self.pool.connection() as conn:
            return conn.execute(sql, params).fetchall()

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        log.warning("the store at %s is unreachable: %s", self.where, str(exc).strip())
        return StoreUnavailable("Ownlight's state store is unreachable; try again shortly.",
                                retry_after=RETRY_AFTER)

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
        self.pool.close()
