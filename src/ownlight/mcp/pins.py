"""Pinned tool definitions: the hash an admin approved, per server and tool, in the store
every instance shares (``store.base.RegistryDatabase``: SQLite or PostgreSQL)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from ownlight.store.base import RegistryDatabase


def definition_hash(name: str, description: str, input_schema: dict[str, Any]) -> str:
    """sha256 over name, description and schema (keys sorted): any change is a new hash."""
    body = orjson.dumps({"name": name, "description": description, "inputSchema": input_schema},
                        option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class Pin:
    server: str
    tool: str
    sha256: str
    approved_at: str
    approved_by: str


class ToolPins:
    """Read and replace a server's pins; the table is ``mcp_pins`` in both stores."""

    def __init__(self, db: RegistryDatabase):
        self.db = db

    def for_server(self, server: str) -> dict[str, str]:
        """tool → approved hash."""
        rows = self.db.query("SELECT tool, sha256 FROM mcp_pins WHERE server = ?", (server,))
        return {str(tool): str(sha) for tool, sha in rows}

    def all(self) -> list[Pin]:
        rows = self.db.query("SELECT server, tool, sha256, approved_at, approved_by FROM mcp_pins "
                             "ORDER BY server, tool")
        return [Pin(*(str(v) for v in row)) for row in rows]

    def approve(self, server: str, hashes: dict[str, str], by: str) -> None:
        """The server's pins become exactly ``hashes`` (tool → hash), in one transaction."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM mcp_pins WHERE server = ?", (server,))
            for tool, sha in sorted(hashes.items()):
                tx.execute("INSERT INTO mcp_pins (server, tool, sha256, approved_at, approved_by)"
                           " VALUES (?, ?, ?, ?, ?)", (server, tool, sha, now, by))
