"""The active keys of the PostgreSQL store, kept in memory and told of every change.

Reading the database for every key check costs each request a round trip (about 40 us on
loopback, more across machines) and puts every request's load on the one database. Each
instance instead keeps every active key's principal in memory, and PostgreSQL itself says
when they change: a trigger on ``api_keys`` (``postgres_migrations`` step 004) sends
``NOTIFY ownlight_keys`` with every statement that writes the table, after its transaction
commits. So a key made or revoked anywhere (by an instance, by ``ownlight keys`` on an
operator's machine, or by hand in ``psql``) is heard by every instance within milliseconds,
and each reloads the active keys. PostgreSQL rather than Redis pub/sub: the notice comes from
the database that holds the truth, in the same commit, so no writer can forget to send it,
and instances without Redis get it too.

A cache that cannot hear may be wrong, so it fails closed. A thread holds one connection
that LISTENs and waits on its socket; whenever the server sends something, and at least
every ``HEARTBEAT`` seconds, it asks the server ``SELECT 1`` (which also reads the notices
that came); the cache is trusted only while the last answer is under ``STALE_AFTER``
seconds old. Otherwise (the server or the network gone, the thread stuck) every key check
reads the store as before this cache existed, and that read fails closed with 503 when the
store is unreachable too. A key the cache does not hold (one made a moment ago whose notice
is on its way, or a wrong one) is always looked up in the store: the cache can only
shorten the path of a key it has seen active, never admit one.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from typing import Any

import psycopg

from ownlight.principal import Principal
from ownlight.store.base import KeyRecord
from ownlight.store.keys import PostgresKeys
from ownlight.store.postgres import connect

log = logging.getLogger("ownlight.store")

CHANNEL = "ownlight_keys"
HEARTBEAT = 0.25  # seconds of silence after which the listener asks the server
STALE_AFTER = 1.0  # seconds since the server last answered after which the cache is not used
RECONNECT_EVERY = 1.0  # seconds between attempts to listen again
CONNECT_TIMEOUT = 5


class CachedKeys:
    """``KeyRows`` over PostgreSQL, with the active keys' principals held in memory."""

    def __init__(self, rows: PostgresKeys, url: str, *, wait: float = CONNECT_TIMEOUT):
        self.rows = rows
        self.url = url
        self._keys: dict[str, Principal] = {}
        self._heard = float("-inf")  # monotonic time the server last confirmed the cache
        self._dirty = threading.Event()
        self._loaded = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True,
                                        name="ownlight-key-listener")
        self._thread.start()
        self._loaded.wait(wait)  # not fatal: until it loads, checks read the store

    @property
    def live(self) -> bool:
        """Whether the cache is trusted now (the server answered the listener lately)."""
        return time.monotonic() - self._heard <= STALE_AFTER

    # -- the request path ---------------------------------------------------------------

    def principal(self, key_hash: str) -> Principal | None:
        if self.live:
            found = self._keys.get(key_hash)
            if found is not None:
                return found
        return self.rows.principal(key_hash)  # unheard of, or the cache cannot hear

    # -- everything else goes to the store (the trigger tells every cache) ----------------

    def insert(self, name: str, prefix: str, key_hash: str, tenant: str,
               groups: tuple[str, ...], created_at: str) -> int:
        return self.rows.insert(name, prefix, key_hash, tenant, groups, created_at)

    def insert_first(self, name: str, prefix: str, key_hash: str, tenant: str,
                     groups: tuple[str, ...], created_at: str) -> int | None:
        return self.rows.insert_first(name, prefix, key_hash, tenant, groups, created_at)

    def all(self) -> list[KeyRecord]:
        return self.rows.all()

    def revoke(self, ident: str, at: str) -> int:
        revoked = self.rows.revoke(ident, at)
        if revoked:  # this instance reads the store until its listener has reloaded
            self._heard = float("-inf")
            self._dirty.set()
        return revoked

    def owner(self, key_hash: str) -> tuple[str, str] | None:
        return self.rows.owner(key_hash)

    # -- the listener -------------------------------------------------------------------

    def _listen(self) -> None:
        failing = False
        while not self._closing.is_set():
            try:
                with connect(self.url, autocommit=True,
                                     connect_timeout=CONNECT_TIMEOUT) as conn:
                    conn.add_notify_handler(lambda _: self._dirty.set())
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._reload(conn)
                    if failing:
                        log.warning("key changes are heard again; keys are checked in memory")
                        failing = False
                    while not self._closing.is_set():
                        # Wake when the server sends something (a notice) or after the
                        # heartbeat; a statement reads what came (the handler sees notices)
                        # and shows the server still answers.
                        select.select([conn.fileno()], [], [], HEARTBEAT)
                        asked = time.monotonic()
                        conn.execute("SELECT 1")
                        if self._dirty.is_set():
                            self._reload(conn)
                        else:
                            self._heard = asked
            except psycopg.Error as exc:
                self._heard = float("-inf")
                if not failing:
                    log.error("key changes cannot be heard (%s); every key check reads the "
                              "store until they can", str(exc).strip())
                    failing = True
            self._closing.wait(RECONNECT_EVERY)

    def _reload(self, conn: psycopg.Connection[Any]) -> None:
        asked = time.monotonic()
        self._dirty.clear()
        rows = conn.execute("SELECT key_hash, id, name, tenant, groups FROM api_keys"
                            " WHERE revoked_at IS NULL").fetchall()
        self._keys = {h: Principal(int(i), n, t, tuple(g)) for h, i, n, t, g in rows}
        self._heard = asked
        self._loaded.set()

    def close(self) -> None:
        self._closing.set()
        self._thread.join(CONNECT_TIMEOUT + 1)
