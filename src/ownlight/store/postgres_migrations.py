"""Every schema step of the shared PostgreSQL store, in the one order they are applied.

Append-only, like SQLite's ``store.migrations``: a step, once released, is never edited or
reordered; a change of schema is a new step at the end. ``PostgresDatabase.migrate`` applies
the steps a database has not seen yet under an advisory lock, each in its own transaction
with its record in ``ownlight_migrations``.

Only the kinds of state shared across instances so far are here (keys, spend, stored
responses); the SQLite list also holds the ledger, the registry and eval runs, which are
still kept per instance. The tables keep SQLite's names and columns, with PostgreSQL's own
types where they say more (timestamps, arrays of groups), so ``ownlight db copy`` can map
one onto the other column by column.
"""

from __future__ import annotations

Step = tuple[str, tuple[str, ...]]  # (name, statements)

POSTGRES_MIGRATIONS: tuple[Step, ...] = (
    ("001_api_keys", (
        """CREATE TABLE api_keys (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name TEXT NOT NULL,
            prefix TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            tenant TEXT NOT NULL DEFAULT 'default',
            groups TEXT[] NOT NULL DEFAULT '{}',
            created_at TIMESTAMPTZ NOT NULL,
            revoked_at TIMESTAMPTZ
        )""",
        "CREATE INDEX api_keys_name ON api_keys (name)",
        "CREATE INDEX api_keys_prefix ON api_keys (prefix)",
    )),
    ("002_spend", (
        """CREATE TABLE spend (
            scope TEXT NOT NULL,
            subject TEXT NOT NULL,
            period TEXT NOT NULL,
            usd DOUBLE PRECISION NOT NULL DEFAULT 0,
            PRIMARY KEY (scope, subject, period)
        )""",
    )),
    ("003_responses", (
        """CREATE TABLE responses (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            principal TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            body JSON NOT NULL,
            context JSON NOT NULL
        )""",
    )),
    ("004_api_keys_notify", (
        # Every statement that writes api_keys tells the instances' key caches
        # (store.key_cache) on commit; they reload the active keys.
        """CREATE FUNCTION ownlight_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('ownlight_keys', '');
            RETURN NULL;
        END $$""",
        """CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
            ON api_keys FOR EACH STATEMENT EXECUTE FUNCTION ownlight_keys_changed()""",
    )),
)
