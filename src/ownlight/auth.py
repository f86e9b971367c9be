"""API keys and the principal each one carries.

A key is shown once, at creation; only its sha256 is stored. Keys are 32 random
bytes, so a plain hash is enough (a slow KDF protects low-entropy passwords, not these).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ownlight.errors import AuthenticationFailed
from ownlight.store.sqlite import StateStore

KEY_PREFIX = "ol-"


@dataclass(frozen=True)
class Principal:
    """Who is asking: every later stage (ACLs, routing policy, budgets) reads this."""

    key_id: int
    name: str
    tenant: str = "default"
    groups: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_admin(self) -> bool:
        """Admin keys are those in the ``admin`` group (the first key Ownlight makes is one)."""
        return "admin" in self.groups

    @property
    def identities(self) -> tuple[str, ...]:
        """The access-list entries this principal matches: user:NAME, group:G, public."""
        return (f"user:{self.name}", *(f"group:{g}" for g in self.groups), "public")


@dataclass(frozen=True)
class KeyRecord:
    id: int
    name: str
    prefix: str
    tenant: str
    groups: tuple[str, ...]
    created_at: str
    revoked_at: str | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    def __init__(self, store: StateStore):
        self.store = store

    def create(
        self, name: str, groups: tuple[str, ...] = (), tenant: str = "default"
    ) -> tuple[str, KeyRecord]:
        """Make a new key. The clear key is returned here and never again."""
        if not name.strip():
            raise ValueError("a key needs a name")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self.store.transaction() as db:
            cursor = db.execute(
                "INSERT INTO api_keys (name, prefix, key_hash, tenant, groups, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (name, key[:10], hash_key(key), tenant, json.dumps(list(groups)), now),
            )
        record = KeyRecord(int(cursor.lastrowid or 0), name, key[:10], tenant, groups, now, None)
        return key, record

    def list(self) -> list[KeyRecord]:
        rows = self.store.query(
            "SELECT id, name, prefix, tenant, groups, created_at, revoked_at"
            " FROM api_keys ORDER BY id"
        )
        return [
            KeyRecord(
                int(str(r[0])), str(r[1]), str(r[2]), str(r[3]), tuple(json.loads(str(r[4]))),
                str(r[5]), None if r[6] is None else str(r[6]),
            )
            for r in rows
        ]

    def revoke(self, ident: str) -> int:
        """Revoke by id, name or key prefix; returns how many keys were revoked."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self.store.transaction() as db:
            cursor = db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE revoked_at IS NULL"
                " AND (CAST(id AS TEXT) = ? OR name = ? OR prefix = ?)",
                (now, ident, ident, ident),
            )
        return cursor.rowcount

    def authenticate(self, key: str | None) -> Principal:
        """Map a presented key to its principal, or fail closed."""
        if not key:
            raise AuthenticationFailed(
                "Missing API key. Send it as 'Authorization: Bearer <key>'."
            )
        rows = self.store.query(
            "SELECT id, name, tenant, groups FROM api_keys"
            " WHERE key_hash = ? AND revoked_at IS NULL",
            (hash_key(key),),
        )
        if not rows:
            raise AuthenticationFailed("Incorrect or revoked API key provided.")
        key_id, name, tenant, groups = rows[0]
        return Principal(int(str(key_id)), str(name), str(tenant), tuple(json.loads(str(groups))))
