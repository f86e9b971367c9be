"""The model registry's and eval runs' rows in the shared PostgreSQL database.

The registry writes the same portable statements to either database (``store.base.
RegistryDatabase``); SQLite's ``StateStore`` takes them as they are, and this adapter
gives PostgreSQL the ``%s`` parameters psycopg expects. The registry's statements hold no
literal ``?`` or ``%``, so the translation is a plain replacement.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from ownlight.store.postgres import PostgresDatabase


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


class _PgStatements:
    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def execute(self, sql: str, params: Any = (), /) -> Any:
        return self.conn.execute(_pg(sql), params)


class PostgresRegistryRows:
    """``RegistryDatabase`` on PostgreSQL: every instance and every operator's CLI shares
    the versions, the switches, the generation counter and the eval runs."""

    def __init__(self, db: PostgresDatabase):
        self.db = db

    @contextmanager
    def transaction(self) -> Iterator[_PgStatements]:
        with self.db.transaction() as conn:
            yield _PgStatements(conn)

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        return self.db.query(_pg(sql), params)
