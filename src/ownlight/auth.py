"""API keys and the principal each one carries.

A key is shown once, at creation; only its sha256 is stored. Keys are 32 random
bytes, so a plain hash is enough (a slow KDF protects low-entropy passwords, not these).
The rows live in whichever store is configured (``store.base.KeyRows``: the SQLite file,
or PostgreSQL shared by every instance, in front of which a server keeps the active keys in
memory); this module never knows which.

A refused key is reported to the key store's ``refusals`` (the audit ledger's
``RefusalLog``, wired by ``Runtime.build``) with the request it came with: its ASGI scope,
passed by the hot routes, or ``request_scope``, which the server sets for the others. A
valid key costs nothing more.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Protocol

from ownlight.errors import AuthenticationFailed
from ownlight.principal import Principal
from ownlight.store.base import KeyRecord, KeyRows

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


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    def __init__(self, rows: KeyRows, refusals: RefusalSink | None = None):
        self.rows = rows
        self.refusals = refusals

    def create(
        self, name: str, groups: tuple[str, ...] = (), tenant: str = "default"
    ) -> tuple[str, KeyRecord]:
        """Make a new key. The clear key is returned here and never again."""
        if not name.strip():
            raise ValueError("a key needs a name")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        key_id = self.rows.insert(name, key[:10], hash_key(key), tenant, groups, now)
        return key, KeyRecord(key_id, name, key[:10], tenant, groups, now, None)

    def create_first(self, name: str, groups: tuple[str, ...] = ()
                     ) -> tuple[str, KeyRecord] | None:
        """Make a key only if none exists yet (the first admin key of a new install); None
        when there was one, even if another instance made it a moment ago."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        key_id = self.rows.insert_first(name, key[:10], hash_key(key), "default", groups, now)
        if key_id is None:
            return None
        return key, KeyRecord(key_id, name, key[:10], "default", groups, now, None)

    def list(self) -> list[KeyRecord]:
        return self.rows.all()

    def revoke(self, ident: str) -> int:
        """Revoke by id, name or key prefix; returns how many keys were revoked."""
        return self.rows.revoke(ident, datetime.now(UTC).isoformat(timespec="seconds"))

    def authenticate(self, key: str | None, origin: Origin | None = None) -> Principal:
        """Map a presented key to its principal, or fail closed (and say so to
        ``refusals``: ``origin`` is the request's ASGI scope, else ``request_scope``'s)."""
        if not key:
            self.refused(401, "missing_key", None, origin, code=AuthenticationFailed.code)
            raise AuthenticationFailed(
                "Missing API key. Send it as 'Authorization: Bearer <key>'."
            )
        digest = hash_key(key)
        principal = self.rows.principal(digest)
        if principal is None:
            self._refused_key(digest, origin)
            raise AuthenticationFailed("Incorrect or revoked API key provided.")
        return principal

    def _refused_key(self, digest: str, origin: Origin | None) -> None:
        """An unknown or a revoked key: which one, and a revoked key's owner, are looked up
        here, on the refusal's path (the valid key's query stays what it was)."""
        if self.refusals is None:
            return
        revoked = self.rows.owner(digest)
        if revoked:
            name, tenant = revoked
            self.refused(401, "revoked_key", digest, origin, name, tenant,
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
