"""The one place that chooses a database: ``[store] url`` set means PostgreSQL for every
shared kind of state at once, unset means the SQLite state file in the data dir.

Everything else receives the interfaces of ``store.base`` from here and never learns which
database answers them, so an instance cannot end up with its keys in one database and its
spend in another.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ownlight.config import Config
from ownlight.knowledge.base import index_path
from ownlight.knowledge.postgres_store import PostgresKnowledgeStore
from ownlight.knowledge.sqlite_store import SQLiteKnowledgeStore
from ownlight.knowledge.store import KnowledgeStore
from ownlight.store.base import KeyRows, Migrations, RegistryDatabase, ResponseStore, SpendRows
from ownlight.store.key_cache import CachedKeys
from ownlight.store.keys import PostgresKeys, SqliteKeys
from ownlight.store.postgres import PostgresDatabase
from ownlight.store.registry_rows import PostgresRegistryRows
from ownlight.store.spend import PostgresSpend, SqliteSpend
from ownlight.store.sqlite import StateStore
from ownlight.store.stored_responses import PostgresResponses, SqliteResponses


@dataclass
class Stores:
    """The shared state of one Ownlight, whichever database holds it."""

    keys: KeyRows
    responses: ResponseStore
    spend: SpendRows
    database: Migrations
    registry: RegistryDatabase  # the model registry's and eval runs' rows
    _owned: PostgresDatabase | None = None
    _cache: CachedKeys | None = None

    @property
    def shared(self) -> bool:
        """True when the state is in PostgreSQL, shared with other instances."""
        return self._owned is not None

    def reachable(self) -> bool:
        """Whether the shared store answers (the SQLite file always does)."""
        return self._owned is None or self._owned.reachable()

    def close(self) -> None:
        """Close what was opened here (the SQLite file belongs to whoever opened it)."""
        if self._cache is not None:
            self._cache.close()
        if self._owned is not None:
            self._owned.close()


def store_url(config: Config) -> str | None:
    """The PostgreSQL URL of ``[store] url`` (its secret read now), or None for SQLite."""
    secret = config.settings.store.url
    url = secret.reveal().strip() if secret is not None else ""
    return url or None


@contextmanager
def open_database(config: Config) -> Iterator[Migrations]:
    """The configured store's database alone, its schema left as it is (for ``ownlight
    db``): PostgreSQL without touching this machine's SQLite file, or that file."""
    url = store_url(config)
    database: PostgresDatabase | StateStore = (
        PostgresDatabase(url, max_connections=2, migrate=False) if url is not None
        else StateStore(config.data_dir / "state.db", migrate=False))
    try:
        yield database
    finally:
        database.close()


def open_stores(config: Config, state: StateStore, *, migrate: bool = True,
                cache_keys: bool = False) -> Stores:
    """The configured stores. ``state`` is this instance's SQLite file, which holds them
    when no ``[store] url`` is set. With ``migrate`` false, PostgreSQL's schema is left as
    it is. With ``cache_keys`` (a server), PostgreSQL's active keys are kept in memory and
    reloaded whenever the database says they changed (``store.key_cache``)."""
    url = store_url(config)
    if url is None:
        return Stores(SqliteKeys(state), SqliteResponses(state), SqliteSpend(state), state,
                      state)
    db = PostgresDatabase(url, max_connections=config.settings.store.max_connections,
                          migrate=migrate)
    registry = PostgresRegistryRows(db)
    if not cache_keys:
        return Stores(PostgresKeys(db), PostgresResponses(db), PostgresSpend(db), db,
                      registry, db)
    cache = CachedKeys(PostgresKeys(db), url)
    return Stores(cache, PostgresResponses(db), PostgresSpend(db), db, registry, db, cache)


def open_knowledge_store(config: Config, data_dir: Path | None = None) -> KnowledgeStore:
    """The configured knowledge index: in PostgreSQL, shared by every instance, when
    ``[store] url`` is set, else ``knowledge.db`` in ``data_dir`` (default: the config's)."""
    url = store_url(config)
    if url is None:
        return SQLiteKnowledgeStore(index_path(data_dir or config.data_dir))
    return PostgresKnowledgeStore.connect(url)
