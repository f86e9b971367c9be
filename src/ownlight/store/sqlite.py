"""The embedded state store: one SQLite file in WAL mode, with ordered append-only migrations.

Several processes share the file (the server, and ``ownlight keys`` run by an
operator), so every statement goes to the database and nothing is cached: a key
revoked from the command line stops working on the very next request.

The file is made 0600 (its directory 0700) before SQLite opens it, whatever the umask;
SQLite gives its ``-wal`` and ``-shm`` files the database's mode.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ownlight.store.base import MigrationState
from ownlight.store.files import create_private_file, make_private_dir
from ownlight.store.migrations import STATE_MIGRATIONS


class StateStore:
    """A thread-safe handle on the state database."""

    def __init__(self, path: Path | str, *, migrate: bool = True):
        self.path = Path(path)
        if str(path) != ":memory:":
            make_private_dir(self.path.parent)
            create_private_file(self.path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=10.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        if migrate:
            self.migrate()

    @property
    def where(self) -> str:
        return str(self.path)

    def migrate(self) -> list[str]:
        """Apply the steps this file has not seen, in one transaction (``BEGIN IMMEDIATE``
        holds the write lock, so processes opening the file together apply each once)."""
        applied = []
        with self.transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY)")
            done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
            for name, step in STATE_MIGRATIONS:
                if name not in done:
                    step(db)
                    db.execute("INSERT INTO _migrations (name) VALUES (?)", (name,))
                    applied.append(name)
        return applied

    def status(self) -> list[MigrationState]:
        tables = self.query("SELECT 1 FROM sqlite_master WHERE name = '_migrations'")
        done = {str(r[0]) for r in self.query("SELECT name FROM _migrations")} if tables else set()
        return [MigrationState(name, name in done) for name, _ in STATE_MIGRATIONS]

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run statements atomically; a failure rolls everything back."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()
