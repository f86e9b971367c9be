"""Keys as an admin manages them from the API or the console: create (the clear key is
shown once), revoke, list a page at a time. Each act is in the ledger before it returns,
like ``ownlight keys create`` and ``ownlight keys revoke``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ownlight.audit.ledger import Ledger
from ownlight.audit.records import AdminRecord
from ownlight.auth import KeyStore
from ownlight.errors import InvalidRequest, NotFound
from ownlight.principal import Principal

PAGE_MAX = 200


def create_key(
    keys: KeyStore,
    ledger: Ledger,
    actor: Principal,
    name: str,
    groups: tuple[str, ...] = (),
    tenant: str = "default",
) -> dict[str, Any]:
    """A new key for ``name``; the answer holds the clear key, which is never shown again."""
    if not name.strip():
        raise InvalidRequest("a key needs a name", param="name")
    if not tenant.strip():
        raise InvalidRequest("a key needs a tenant", param="tenant")
    key, record = keys.create(
        name.strip(), tuple(g.strip() for g in groups if g.strip()), tenant.strip()
    )
    ledger.write_sync(
        AdminRecord(
            "key.create",
            record.name,
            actor.name,
            actor.tenant,
            {"key_id": record.id, "groups": list(record.groups), "tenant": record.tenant},
        )
    )
    return {**_shown(asdict(record)), "key": key}


def revoke_key(keys: KeyStore, ledger: Ledger, actor: Principal, ident: str) -> int:
    """Revoke by id, name or prefix; NotFound when no active key matches."""
    count = keys.revoke(ident)
    if not count:
        raise NotFound(f"no active key matches {ident!r}")
    ledger.write_sync(AdminRecord("key.revoke", ident, actor.name, actor.tenant, {"count": count}))
    return count


def list_keys(keys: KeyStore, offset: int = 0, limit: int = 50) -> dict[str, Any]:
    """One page of keys, newest first (never a key's hash)."""
    if not 1 <= limit <= PAGE_MAX or offset < 0:
        raise InvalidRequest(f"limit must be 1 to {PAGE_MAX}, offset 0 or more", param="limit")
    rows = sorted(keys.list(), key=lambda r: r.created_at, reverse=True)
    page = [_shown(asdict(r)) for r in rows[offset : offset + limit]]
    return {
        "data": page,
        "total": len(rows),
        "next": offset + limit if offset + limit < len(rows) else None,
    }


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    row.pop("key_hash", None)
    row["groups"] = list(row.get("groups") or ())
    return row
