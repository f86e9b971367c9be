"""Stored responses of the Responses API, in the state database.

A stored response keeps the response object and the conversation that led to it (as
input items), so ``previous_response_id`` can continue it. Only the principal who
created it can read or delete it: another key gets 404, exactly as for an id that
never existed, so ids reveal nothing. Values are stored as the client sent them: the
state database is inside the domain, and a conversation replayed to an outside-domain
target goes through the privacy shield again like any other request.
"""

from __future__ import annotations

import time

import orjson

from ownlight.errors import NotFound
from ownlight.principal import Principal
from ownlight.protocol.model import Json
from ownlight.store.sqlite import StateStore


class ResponseStore:
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
            raise NotFound(f"Response with id '{response_id}' not found.",
                           param="response_id")
        body, context = rows[0]
        return orjson.loads(str(body)), orjson.loads(str(context))

    def delete(self, principal: Principal, response_id: str) -> None:
        with self.store.transaction() as db:
            gone = db.execute(
                "DELETE FROM responses WHERE id = ? AND tenant = ? AND principal = ?",
                (response_id, principal.tenant, principal.name)).rowcount
        if not gone:
            raise NotFound(f"Response with id '{response_id}' not found.",
                           param="response_id")
