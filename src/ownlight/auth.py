"""API keys and the principal each one carries.

A key is shown once, at creation; only its sha256 is stored. Keys are 32 random
bytes, so a plain hash is enough (a slow KDF protects low-entropy passwords, not these).

A refused key is reported to the key store's ``refusals`` (the audit ledger's
``RefusalLog``, wired by ``Runtime.build``) with the request it came with: its ASGI scope,
passed by the hot routes, or ``request_scope``, which the server sets for the others. A
valid key costs nothing more.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from ownlight.errors import AuthenticationFailed
from ownlight.principal import Principal
from ownlight.store.sqlite import StateStore

KEY_PREFIX = "ol-"

Origin = Mapping[str, Any]  # the request's ASGI scope: client address, method, path
# The scope of the request being served, for key checks that are not handed it (the
# server sets it for every route but the hot pipeline POSTs, which pass theirs).
request_scope: ContextVar[Origin | None] = ContextVar("ownlight_request_scope", default=None)


class RefusalSink(Protocol):
    """Where refusals go: ``audit.refusals.RefusalLog``."""

    def __call__(self, status: int, reason: str, digest: str | None, origin: Origin | None,
                 principal: str | None = None, tenant: str | None = None,
                 code: str | None = None) -> None: ...


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
    def __init__(self, store: StateStore, refusals: RefusalSink | None = None):
        self.store = store
        self.refusals = refusals

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

    def authenticate(self, key: str | None, origin: Origin | None = None) -> Principal:
        """Map a presented key to its principal, or fail closed (and say so to
        ``refusals``: ``origin`` is the request's ASGI scope, else ``request_scope``'s)."""
        if not key:
            self.refused(401, "missing_key", None, origin, code=AuthenticationFailed.code)
            raise AuthenticationFailed(
                "Missing API key. Send it as 'Authorization: Bearer <key>'."
            )
        digest = hash_key(key)
        rows = self.store.query(
            "SELECT id, name, tenant, groups FROM api_keys"
            " WHERE key_hash = ? AND revoked_at IS NULL",
            (digest,),
        )
        if not rows:
            self._refused_key(digest, origin)
            raise AuthenticationFailed("Incorrect or revoked API key provided.")
        key_id, name, tenant, groups = rows[0]
        return Principal(int(str(key_id)), str(name), str(tenant), tuple(json.loads(str(groups))))

    def _refused_key(self, digest: str, origin: Origin | None) -> None:
        """An unknown or a revoked key: which one, and a revoked key's owner, are looked up
        here, on the refusal's path (the valid key's query stays what it was)."""
        if self.refusals is None:
            return
        revoked = self.store.query("SELECT name, tenant FROM api_keys WHERE key_hash = ?",
                                   (digest,))
        if revoked:
            name, tenant = revoked[0]
            self.refused(401, "revoked_key", digest, origin, str(name), str(tenant),
                         AuthenticationFailed.code)
        else:
            self.refused(401, "unknown_key", digest, origin, code=AuthenticationFailed.code)

    def refused(self, status: int, reason: str, digest: str | None, origin: Origin | None,
                principal: str | None = None, tenant: str | None = None,
                code: str | None = None) -> None:
        """Report a refused request (``digest``: the presented key's ``hash_key``)."""
        if self.refusals is not None:
            self.refusals(status, reason, digest,
                          origin if origin is not None else request_scope.get(),
                          principal, tenant, code)
