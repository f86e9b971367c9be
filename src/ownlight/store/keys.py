"""API keys and their principals, stored by hash: ``KeyRows`` on SQLite and on PostgreSQL.

``auth.KeyStore`` makes keys, hashes what a client presents and reports refusals; these
classes only keep the rows, so the same key check runs on either database.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from ownlight.principal import Principal
from ownlight.store.base import KeyRecord
from ownlight.store.postgres import PostgresDatabase
from ownlight.store.sqlite import StateStore


class SqliteKeys:
    def __init__(self, store: StateStore):
        self.store = store

    def insert(self, name: str, prefix: str, key_hash: str, tenant: str,
               groups: tuple[str, ...], created_at: str) -> int:
        with self.store.transaction() as db:
            cursor = db.execute(
                "INSERT INTO api_keys (name, prefix, key_hash, tenant, groups, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (name, prefix, key_hash, tenant, json.dumps(list(groups)), created_at),
            )
        return int(cursor.lastrowid or 0)

    def insert_first(self, name: str, prefix: str, key_hash: str, tenant: str,
                     groups: tuple[str, ...], created_at: str) -> int | None:
        with self.store.transaction() as db:  # BEGIN IMMEDIATE: one writer at a time
            if db.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone():
                return None
            cursor = db.execute(
                "INSERT INTO api_keys (name, prefix, key_hash, tenant, groups, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (name, prefix, key_hash, tenant, json.dumps(list(groups)), created_at),
            )
        return int(cursor.lastrowid or 0)

    def all(self) -> list[KeyRecord]:
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

    def revoke(self, ident: str, at: str) -> int:
        with self.store.transaction() as db:
            cursor = db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE revoked_at IS NULL"
                " AND (CAST(id AS TEXT) = ? OR name = ? OR prefix = ?)",
                (at, ident, ident, ident),
            )
        return cursor.rowcount

    def principal(self, key_hash: str) -> Principal | None:
        rows = self.store.query(
            "SELECT id, name, tenant, groups FROM api_keys"
            " WHERE key_hash = ? AND revoked_at IS NULL",
            (key_hash,),
        )
        if not rows:
            return None
        key_id, name, tenant, groups = rows[0]
        return Principal(int(str(key_id)), str(name), str(tenant), tuple(json.loads(str(groups))))

    def owner(self, key_hash: str) -> tuple[str, str] | None:
        rows = self.store.query("SELECT name, tenant FROM api_keys WHERE key_hash = ?",
                                (key_hash,))
        return (str(rows[0][0]), str(rows[0][1])) if rows else None


def _iso(value: datetime | None) -> str | None:
    """A timestamp as SQLite keeps it: ISO 8601 in UTC, to the second."""
    return None if value is None else value.astimezone(UTC).isoformat(timespec="seconds")


class PostgresKeys:
    def __init__(self, db: PostgresDatabase):
        self.db = db

    def insert(self, name: str, prefix: str, key_hash: str, tenant: str,
               groups: tuple[str, ...], created_at: str) -> int:
        with self.db.transaction() as conn:
            row = conn.execute(
                "INSERT INTO api_keys (name, prefix, key_hash, tenant, groups, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (name, prefix, key_hash, tenant, list(groups),
                 datetime.fromisoformat(created_at)),
            ).fetchone()
        assert row is not None
        return int(row[0])

    def insert_first(self, name: str, prefix: str, key_hash: str, tenant: str,
                     groups: tuple[str, ...], created_at: str) -> int | None:
        with self.db.transaction() as conn:
            # Blocks other writers of api_keys (not readers) until this transaction ends.
            conn.execute("LOCK TABLE api_keys IN SHARE ROW EXCLUSIVE MODE")
            if conn.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone():
                return None
            row = conn.execute(
                "INSERT INTO api_keys (name, prefix, key_hash, tenant, groups, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (name, prefix, key_hash, tenant, list(groups),
                 datetime.fromisoformat(created_at)),
            ).fetchone()
        assert row is not None
        return int(row[0])

    def all(self) -> list[KeyRecord]:
        rows = self.db.query(
            "SELECT id, name, prefix, tenant, groups, created_at, revoked_at"
            " FROM api_keys ORDER BY id"
        )
        return [KeyRecord(int(r[0]), r[1], r[2], r[3], tuple(r[4]), _iso(r[5]) or "", _iso(r[6]))
                for r in rows]

    def revoke(self, ident: str, at: str) -> int:
        with self.db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE api_keys SET revoked_at = %s WHERE revoked_at IS NULL"
                " AND (CAST(id AS TEXT) = %s OR name = %s OR prefix = %s)",
                (datetime.fromisoformat(at), ident, ident, ident),
            )
        return cursor.rowcount

    def principal(self, key_hash: str) -> Principal | None:
        rows = self.db.query(
            "SELECT id, name, tenant, groups FROM api_keys"
            " WHERE key_hash = %s AND revoked_at IS NULL",
            (key_hash,),
        )
        if not rows:
            return None
        key_id, name, tenant, groups = rows[0]
        return Principal(int(key_id), name, tenant, tuple(groups))

    def owner(self, key_hash: str) -> tuple[str, str] | None:
        rows = self.db.query("SELECT name, tenant FROM api_keys WHERE key_hash = %s",
                             (key_hash,))
        return (rows[0][0], rows[0][1]) if rows else None
