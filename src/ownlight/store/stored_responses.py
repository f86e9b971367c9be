"""Stored responses of the Responses API: ``ResponseStore`` on SQLite and on PostgreSQL.

A stored response keeps the response object and the conversation that led to it (as
input items), so ``previous_response_id`` can continue it. Only the principal who
created it can read or delete it: another key gets 404, exactly as for an id that
never existed, so ids reveal nothing. Values are stored as the client sent them: the
state database is inside the domain, and a conversation replayed to an outside-domain
target goes through the privacy shield again like any other request.

On PostgreSQL the JSON is kept as ``json`` (its text as written, key order included), so
a response read back from any instance is the one that was stored.
"""

from __future__ import annotations

import time

import orjson

from ownlight.principal import Principal
from ownlight.protocol.model import Json
from ownlight.store.base import response_not_found
from ownlight.store.postgres import PostgresDatabase
from ownlight.store.sqlite import StateStore


class SqliteResponses:
    def __init__(self, store: StateStore):
        self.store = store

    def save(self, principal: Principal, body: Json, context: list[Json]) -> None:
        """Keep a response and its input items (previous turns and this request's input)."""
        with self.store.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?)",
                (body["id"], principal.tenant, principal.name, time.time(),
                 orjson.dumps(body).decode(), orjson.dumps(context).decode()),
            )

    def get(self, principal: Principal, response_id: str) -> tuple[Json, list[Json]]:
        """(response object, input items); NotFound for an unknown id or another's."""
        rows = self.store.query(
            "SELECT body, context FROM responses WHERE id = ? AND tenant = ? AND principal = ?",
            (response_id, principal.tenant, principal.name))
        if not rows:
            raise response_not_found(response_id)
        body, context = rows[0]
        return orjson.loads(str(body)), orjson.loads(str(context))

    def delete(self, principal: Principal, response_id: str) -> None:
        with self.store.transaction() as db:
            gone = db.execute(
                "DELETE FROM responses WHERE id = ? AND tenant = ? AND principal = ?",
                (response_id, principal.tenant, principal.name)).rowcount
        if not gone:
            raise response_not_found(response_id)


class PostgresResponses:
    def __init__(self, db: PostgresDatabase):
        self.db = db

    def save(self, principal: Principal, body: Json, context: list[Json]) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO responses (id, tenant, principal, body, context)"
                " VALUES (%s, %s, %s, %s::json, %s::json) ON CONFLICT (id) DO UPDATE SET"
                " tenant = excluded.tenant, principal = excluded.principal,"
                " created_at = now(), body = excluded.body, context = excluded.context",
                (body["id"], principal.tenant, principal.name,
                 orjson.dumps(body).decode(), orjson.dumps(context).decode()),
            )

    def get(self, principal: Principal, response_id: str) -> tuple[Json, list[Json]]:
        rows = self.db.query(
            "SELECT body::text, context::text FROM responses"
            " WHERE id = %s AND tenant = %s AND principal = %s",
            (response_id, principal.tenant, principal.name))
        if not rows:
            raise response_not_found(response_id)
        body, context = rows[0]
        return orjson.loads(body), orjson.loads(context)

    def delete(self, principal: Principal, response_id: str) -> None:
        with self.db.transaction() as conn:
            gone = conn.execute(
                "DELETE FROM responses WHERE id = %s AND tenant = %s AND principal = %s",
                (response_id, principal.tenant, principal.name)).rowcount
        if not gone:
            raise response_not_found(response_id)
