"""Users' OAuth tokens for upstream MCP servers (``store.base.McpTokenRows``) in the table
``mcp_oauth_tokens`` of either store: the registry's portable statements reach both, so
one class serves SQLite and PostgreSQL. Rows hold sealed strings only (``mcp.token_box``)."""

from __future__ import annotations

from datetime import UTC, datetime

from ownlight.store.base import RegistryDatabase


class StoredTokens:
    def __init__(self, db: RegistryDatabase):
        self.db = db

    def get(self, server: str, principal: str) -> str | None:
        rows = self.db.query("SELECT sealed FROM mcp_oauth_tokens WHERE server = ? AND "
                             "principal = ?", (server, principal))
        return str(rows[0][0]) if rows else None

    def put(self, server: str, principal: str, sealed: str) -> None:
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        with self.db.transaction() as tx:
            tx.execute("INSERT INTO mcp_oauth_tokens (server, principal, sealed, updated_at)"
                       " VALUES (?, ?, ?, ?) ON CONFLICT (server, principal) DO UPDATE SET"
                       " sealed = excluded.sealed, updated_at = excluded.updated_at",
                       (server, principal, sealed, now))

    def delete(self, server: str, principal: str) -> bool:
        with self.db.transaction() as tx:
            cursor = tx.execute("DELETE FROM mcp_oauth_tokens WHERE server = ? AND "
                                "principal = ?", (server, principal))
            return bool(cursor.rowcount)

    def latest(self, server: str) -> tuple[str, str] | None:
        rows = self.db.query("SELECT principal, sealed FROM mcp_oauth_tokens WHERE server = ?"
                             " ORDER BY updated_at DESC, principal LIMIT 1", (server,))
        return (str(rows[0][0]), str(rows[0][1])) if rows else None
