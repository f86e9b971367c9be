"""The console's rows: sign-in sessions and the conversation list, in the store every
instance shares (``store.base.RegistryDatabase``: the SQLite state file or PostgreSQL).

A session row keeps the sha256 of its cookie and of the key it was opened with, never
either in clear, so a copy of the database opens no session. Conversations are lists of
stored response ids (the Responses store keeps the turns themselves).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import orjson

from ownlight.principal import Principal
from ownlight.store.base import RegistryDatabase


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class SessionRow:
    key_hash: str
    csrf: str
    expires_at: float


@dataclass(frozen=True)
class Conversation:
    id: str
    title: str
    model: str
    responses: tuple[str, ...]
    updated_at: float

    @property
    def head(self) -> str | None:
        """The last stored response: the next turn's ``previous_response_id``."""
        return self.responses[-1] if self.responses else None


class SessionRows:
    def __init__(self, db: RegistryDatabase):
        self.db = db

    def open(self, key_hash: str, lifetime: float) -> tuple[str, str]:
        """A new session for a checked key: (cookie token, CSRF token)."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        now = time.time()
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM console_sessions WHERE expires_at < ?", (now,))
            tx.execute("INSERT INTO console_sessions (token_hash, key_hash, csrf, created_at,"
                       " expires_at) VALUES (?, ?, ?, ?, ?)",
                       (token_hash(token), key_hash, csrf, now, now + lifetime))
        return token, csrf

    def get(self, token: str) -> SessionRow | None:
        rows = self.db.query("SELECT key_hash, csrf, expires_at FROM console_sessions"
                             " WHERE token_hash = ?", (token_hash(token),))
        if not rows:
            return None
        key_hash, csrf, expires_at = rows[0]
        if float(expires_at) < time.time():
            return None
        return SessionRow(str(key_hash), str(csrf), float(expires_at))

    def close(self, token: str) -> None:
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM console_sessions WHERE token_hash = ?", (token_hash(token),))


class ConversationRows:
    """One principal's conversations; every query names the owner, so no id reaches
    another's."""

    def __init__(self, db: RegistryDatabase):
        self.db = db

    def list(self, who: Principal, limit: int = 50) -> list[Conversation]:
        rows = self.db.query(
            "SELECT id, title, model, responses, updated_at FROM console_conversations"
            " WHERE tenant = ? AND principal = ? ORDER BY updated_at DESC LIMIT ?",
            (who.tenant, who.name, limit))
        return [_conversation(row) for row in rows]

    def get(self, who: Principal, conversation_id: str) -> Conversation | None:
        rows = self.db.query(
            "SELECT id, title, model, responses, updated_at FROM console_conversations"
            " WHERE id = ? AND tenant = ? AND principal = ?",
            (conversation_id, who.tenant, who.name))
        return _conversation(rows[0]) if rows else None

    def start(self, who: Principal, title: str, model: str) -> Conversation:
        conversation = Conversation("conv_" + secrets.token_hex(12), title[:120] or "…",
                                    model, (), time.time())
        with self.db.transaction() as tx:
            tx.execute("INSERT INTO console_conversations (id, tenant, principal, title, model,"
                       " responses, updated_at) VALUES (?, ?, ?, ?, ?, '[]', ?)",
                       (conversation.id, who.tenant, who.name, conversation.title, model,
                        conversation.updated_at))
        return conversation

    def add_turn(self, who: Principal, conversation_id: str, response_id: str) -> None:
        current = self.get(who, conversation_id)
        if current is None:
            return
        ids = orjson.dumps([*current.responses, response_id]).decode()
        with self.db.transaction() as tx:
            tx.execute("UPDATE console_conversations SET responses = ?, updated_at = ?"
                       " WHERE id = ? AND tenant = ? AND principal = ?",
                       (ids, time.time(), conversation_id, who.tenant, who.name))

    def rename(self, who: Principal, conversation_id: str, title: str) -> bool:
        with self.db.transaction() as tx:
            changed = tx.execute(
                "UPDATE console_conversations SET title = ? WHERE id = ? AND tenant = ?"
                " AND principal = ?", (title[:120], conversation_id, who.tenant, who.name))
        return bool(changed.rowcount)

    def delete(self, who: Principal, conversation_id: str) -> Conversation | None:
        current = self.get(who, conversation_id)
        if current is not None:
            with self.db.transaction() as tx:
                tx.execute("DELETE FROM console_conversations WHERE id = ? AND tenant = ?"
                           " AND principal = ?", (conversation_id, who.tenant, who.name))
        return current


def _conversation(row: tuple[object, ...]) -> Conversation:
    cid, title, model, responses, updated = row
    return Conversation(str(cid), str(title), str(model),
                        tuple(orjson.loads(str(responses))), float(str(updated)))
