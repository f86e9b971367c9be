"""The store interfaces: one small protocol per kind of shared state.

Ownlight keeps its state in SQLite beside one process by default, or in PostgreSQL shared by
every instance (``[store] url``). The code that uses the state (the key check, budgets, the
Responses API) talks to these protocols only, so it never knows which database answers;
``ownlight.store.open`` picks the implementations, all from one database at once.

Each protocol is what its one user needs and no more, so a new database (or a cache in
front of one, such as ``store.key_cache.CachedKeys``, the in-memory key set PostgreSQL's
notices keep current) adds a class, never a branch. The knowledge index has its own
interface (``knowledge.store``); the audit ledger still lives in the SQLite state file of
each instance.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from ownlight.errors import NotFound
from ownlight.principal import Principal
from ownlight.protocol.model import Json


@dataclass(frozen=True)
class KeyRecord:
    """One API key as listed: never the key itself, only its first characters."""

    id: int
    name: str
    prefix: str
    tenant: str
    groups: tuple[str, ...]
    created_at: str  # ISO 8601, UTC, to the second
    revoked_at: str | None


class KeyRows(Protocol):
    """Principals and their keys, stored by the key's sha256 (``auth.hash_key``)."""

    def insert(self, name: str, prefix: str, key_hash: str, tenant: str,
               groups: tuple[str, ...], created_at: str) -> int:
        """Store a new key; returns its id."""
        ...

    def insert_first(self, name: str, prefix: str, key_hash: str, tenant: str,
                     groups: tuple[str, ...], created_at: str) -> int | None:
        """Store a key only if there is none at all, atomically (instances starting together
        on an empty store make one first key between them); its id, or None."""
        ...

    def all(self) -> list[KeyRecord]:
        """Every key, revoked ones too, oldest first."""
        ...

    def revoke(self, ident: str, at: str) -> int:
        """Revoke the active keys whose id, name or prefix is ``ident``; how many were."""
        ...

    def principal(self, key_hash: str) -> Principal | None:
        """The principal of an active key, or None (unknown or revoked)."""
        ...

    def owner(self, key_hash: str) -> tuple[str, str] | None:
        """(name, tenant) of any key with this hash, revoked or not: for refusal records."""
        ...


class ResponseStore(Protocol):
    """Stored responses of the Responses API: only the principal who made one sees it;
    for anyone else it does not exist (``NotFound``, as for an id never made)."""

    def save(self, principal: Principal, body: Json, context: list[Json]) -> None:
        """Keep a response and its input items (previous turns and this request's input)."""
        ...

    def get(self, principal: Principal, response_id: str) -> tuple[Json, list[Json]]:
        """(response object, input items); NotFound for an unknown id or another's."""
        ...

    def delete(self, principal: Principal, response_id: str) -> None:
        """Forget a response; NotFound for an unknown id or another's."""
        ...


SpendEntry = tuple[str, str, str]  # (scope, subject, period): ("key", "alice", "2026-12")


class SpendRows(Protocol):
    """Money spent per (scope, subject, period), as ``routing.budgets`` counts it.

    These are the durable sums. With ``[redis] url``, the reservations before a call and
    their settlement are kept in Redis beside them (``routing.counters``), which seeds its
    sums from ``spent`` and is told every real cost that ``add`` is.
    """

    def spent(self, entry: SpendEntry) -> float:
        """USD spent so far in this period (0 when nothing was)."""
        ...

    def add(self, entries: Iterable[SpendEntry], usd: float) -> None:
        """Add ``usd`` to every entry, atomically."""
        ...


class Statements(Protocol):
    """Statements inside one transaction (a ``sqlite3`` or psycopg connection)."""

    def execute(self, sql: str, params: Any = ..., /) -> Any:
        """Run one statement; the cursor (``fetchone``, ``fetchall``, iteration)."""
        ...


class RegistryDatabase(Protocol):
    """Where the model registry and eval runs keep their rows (``models.registry``,
    ``evals.scores``): the same tables in SQLite and PostgreSQL, reached with portable
    statements whose parameters are ``?`` (``store.registry_rows`` translates them for
    PostgreSQL). Few statements, no hot path but the one-row generation read, so the
    registry keeps its SQL beside its logic rather than one method per query."""

    def transaction(self) -> AbstractContextManager[Statements]:
        """Run statements atomically; a failure rolls everything back."""
        ...

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """The rows of one read."""
        ...


class McpTokenRows(Protocol):
    """Each principal's OAuth tokens for an upstream MCP server, as one sealed (encrypted)
    string per (server, principal): the store never sees a token in the clear."""

    def get(self, server: str, principal: str) -> str | None:
        """The sealed tokens of this principal at this server, or None."""
        ...

    def put(self, server: str, principal: str, sealed: str) -> None:
        """Keep (or replace) the sealed tokens of this principal at this server."""
        ...

    def delete(self, server: str, principal: str) -> bool:
        """Forget them; whether there were any."""
        ...

    def latest(self, server: str) -> tuple[str, str] | None:
        """(principal, sealed) most recently stored for the server, or None."""
        ...


@dataclass(frozen=True)
class MigrationState:
    name: str
    applied: bool


class Migrations(Protocol):
    """A database's ordered schema steps: which are applied, and applying the rest once."""

    @property
    def where(self) -> str:
        """The database, for people: a path, or a URL without its password."""
        ...

    def status(self) -> list[MigrationState]:
        """Every step, in order, and whether this database has it (changes nothing)."""
        ...

    def migrate(self) -> list[str]:
        """Apply the pending steps, in order; the names applied by this call."""
        ...


def response_not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param="response_id")
