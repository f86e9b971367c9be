"""Money spent per key and tenant: ``SpendRows`` on SQLite and on PostgreSQL.

``routing.budgets.BudgetBook`` decides which (scope, subject, period) entries a request
counts against and reads them back; these classes only keep the sums. Adding runs as one
upsert per entry in one transaction, so concurrent requests on any number of instances
never lose an addition (the database adds, not the instance).
"""

from __future__ import annotations

from collections.abc import Iterable

from ownlight.store.base import SpendEntry
from ownlight.store.postgres import PostgresDatabase
from ownlight.store.sqlite import StateStore


class SqliteSpend:
    def __init__(self, store: StateStore):
        self.store = store

    def spent(self, entry: SpendEntry) -> float:
        rows = self.store.query(
            "SELECT usd FROM spend WHERE scope = ? AND subject = ? AND period = ?", entry)
        return float(str(rows[0][0])) if rows else 0.0

    def add(self, entries: Iterable[SpendEntry], usd: float) -> None:
        with self.store.transaction() as db:
            for scope, subject, period in entries:
                db.execute(
                    "INSERT INTO spend (scope, subject, period, usd) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (scope, subject, period) DO UPDATE SET usd = usd + excluded.usd",
                    (scope, subject, period, usd),
                )


class PostgresSpend:
    def __init__(self, db: PostgresDatabase):
        self.db = db

    def spent(self, entry: SpendEntry) -> float:
        rows = self.db.query(
            "SELECT usd FROM spend WHERE scope = %s AND subject = %s AND period = %s", entry)
        return float(rows[0][0]) if rows else 0.0

    def add(self, entries: Iterable[SpendEntry], usd: float) -> None:
        # Sorted, so two transactions touching the same rows lock them in the same order
        # and cannot deadlock each other.
        with self.db.transaction() as conn:
            for scope, subject, period in sorted(entries):
                conn.execute(
                    "INSERT INTO spend (scope, subject, period, usd) VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT (scope, subject, period)"
                    " DO UPDATE SET usd = spend.usd + excluded.usd",
                    (scope, subject, period, usd),
                )
