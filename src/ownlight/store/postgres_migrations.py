"""Every schema step of the shared PostgreSQL store, in the one order they are applied.

Append-only, like SQLite's ``store.migrations``: a step, once released, is never edited or
reordered; a change of schema is a new step at the end. ``PostgresDatabase.migrate`` applies
the steps a database has not seen yet under an advisory lock, each in its own transaction
with its record in ``ownlight_migrations``.

Only the kinds of state shared across instances so far are here (keys, spend, stored
responses, the knowledge base, the audit ledger, the model registry and eval runs); the
SQLite list also holds each instance's local chain of the ledger, which it ships into the
shared one. The tables keep SQLite's names and columns
(the knowledge base's under a ``knowledge_`` prefix), with PostgreSQL's own
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
    ("005_knowledge", (
        # The knowledge base (``knowledge.postgres_store``): SQLite's tables under a
        # ``knowledge_`` prefix; the lexical index is a tsvector of the application's own
        # terms (``knowledge.segment``), the vectors pgvector's, with an HNSW index.
        "CREATE EXTENSION IF NOT EXISTS vector",
        """CREATE TABLE knowledge_collections (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            tenant TEXT NOT NULL, name TEXT NOT NULL, UNIQUE (tenant, name))""",
        """CREATE TABLE knowledge_grants (
            collection_id BIGINT NOT NULL REFERENCES knowledge_collections (id),
            identity TEXT NOT NULL, PRIMARY KEY (collection_id, identity))""",
        """CREATE TABLE knowledge_classes (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            collection_id BIGINT NOT NULL REFERENCES knowledge_collections (id),
            owner TEXT, acl TEXT NOT NULL,
            UNIQUE NULLS NOT DISTINCT (collection_id, owner, acl))""",
        """CREATE TABLE knowledge_members (
            class_id BIGINT NOT NULL REFERENCES knowledge_classes (id),
            identity TEXT NOT NULL, PRIMARY KEY (class_id, identity))""",
        """CREATE TABLE knowledge_sources (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            collection_id BIGINT NOT NULL REFERENCES knowledge_collections (id),
            path TEXT NOT NULL, content_hash TEXT NOT NULL, UNIQUE (collection_id, path))""",
        """CREATE TABLE knowledge_documents (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            collection_id BIGINT NOT NULL REFERENCES knowledge_collections (id),
            source_id BIGINT NOT NULL REFERENCES knowledge_sources (id),
            key TEXT NOT NULL, title TEXT NOT NULL, metadata JSONB NOT NULL,
            class_id BIGINT NOT NULL REFERENCES knowledge_classes (id),
            content_hash TEXT NOT NULL, UNIQUE (collection_id, key))""",
        "CREATE INDEX knowledge_documents_source ON knowledge_documents (source_id)",
        """CREATE TABLE knowledge_chunks (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            document_id BIGINT NOT NULL REFERENCES knowledge_documents (id),
            ord INTEGER NOT NULL, text TEXT NOT NULL, heading TEXT NOT NULL,
            start INTEGER NOT NULL, "end" INTEGER NOT NULL,
            class_id BIGINT NOT NULL REFERENCES knowledge_classes (id),
            terms TSVECTOR NOT NULL, length INTEGER NOT NULL,
            embedding VECTOR(384), claimed_until TIMESTAMPTZ)""",
        "CREATE INDEX knowledge_chunks_document ON knowledge_chunks (document_id)",
        "CREATE INDEX knowledge_chunks_class ON knowledge_chunks (class_id)",
        "CREATE INDEX knowledge_chunks_pending ON knowledge_chunks (id) WHERE embedding IS NULL",
        "CREATE INDEX knowledge_chunks_terms ON knowledge_chunks USING gin (terms)",
        """CREATE INDEX knowledge_chunks_embedding ON knowledge_chunks
            USING hnsw (embedding vector_cosine_ops)""",
        # BM25's statistics: in how many chunks each term occurs, and the totals.
        "CREATE TABLE knowledge_terms (term TEXT PRIMARY KEY, df BIGINT NOT NULL)",
        """CREATE TABLE knowledge_totals (
            one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
            chunks BIGINT NOT NULL, length BIGINT NOT NULL)""",
        "INSERT INTO knowledge_totals (chunks, length) VALUES (0, 0)",
    )),
    ("006_ledger", (
        # The one audit ledger of every instance (``audit.shared``): SQLite's audit_log
        # and audit_checkpoints, and how far each instance's local chain is shipped.
        """CREATE TABLE audit_log (
            seq BIGINT PRIMARY KEY, at TEXT NOT NULL, kind TEXT NOT NULL, request_id TEXT,
            principal TEXT, tenant TEXT, target TEXT, inside_domain INTEGER, status INTEGER,
            record TEXT NOT NULL, hash TEXT NOT NULL, uid TEXT)""",
        "CREATE INDEX audit_log_at ON audit_log (at)",
        "CREATE INDEX audit_log_request ON audit_log (request_id)",
        "CREATE UNIQUE INDEX audit_log_uid ON audit_log (uid)",
        """CREATE TABLE audit_checkpoints (
            count BIGINT PRIMARY KEY, head TEXT NOT NULL, at TEXT NOT NULL)""",
        """CREATE TABLE audit_sources (
            source TEXT PRIMARY KEY, shipped BIGINT NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now())""",
    )),
    ("007_registry", (
        # The model registry and eval runs (``models.registry``, ``evals.scores``): SQLite's
        # tables and columns, so the same portable statements serve both. A version's
        # ``path`` is where the importing machine put it; every instance looks for the
        # file under its own data dir (by name, version and sha256).
        """CREATE TABLE model_versions (
            name TEXT NOT NULL, version INTEGER NOT NULL, path TEXT NOT NULL,
            sha256 TEXT NOT NULL, size BIGINT NOT NULL, license TEXT, source TEXT NOT NULL,
            facts TEXT NOT NULL, imported_at TEXT NOT NULL, PRIMARY KEY (name, version))""",
        """CREATE TABLE model_switches (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name TEXT NOT NULL, action TEXT NOT NULL, version INTEGER NOT NULL,
            previous INTEGER, at TEXT NOT NULL, actor TEXT NOT NULL,
            details TEXT NOT NULL DEFAULT '{}')""",
        "CREATE INDEX model_switches_name ON model_switches (name, id)",
        """CREATE TABLE model_generation (
            id INTEGER PRIMARY KEY CHECK (id = 1), value BIGINT NOT NULL)""",
        "INSERT INTO model_generation (id, value) VALUES (1, 0)",
        """CREATE TABLE eval_runs (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            suite TEXT NOT NULL, suite_sha256 TEXT NOT NULL, name TEXT NOT NULL,
            version INTEGER NOT NULL, at TEXT NOT NULL, passed INTEGER NOT NULL,
            total INTEGER NOT NULL, score DOUBLE PRECISION NOT NULL, results TEXT NOT NULL)""",
        "CREATE INDEX eval_runs_model ON eval_runs (name, version, suite_sha256)",
    )),
    ("008_mcp", (
        # Pinned MCP tool definitions (``mcp.pins``): the hash an admin approved.
        """CREATE TABLE mcp_pins (
            server TEXT NOT NULL, tool TEXT NOT NULL, sha256 TEXT NOT NULL,
            approved_at TEXT NOT NULL, approved_by TEXT NOT NULL,
            PRIMARY KEY (server, tool))""",
    )),
    ("010_console_sessions", (
        # The console's sign-in sessions and conversation list (``console.store``).
        """CREATE TABLE console_sessions (
            token_hash TEXT PRIMARY KEY, key_hash TEXT NOT NULL, csrf TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX console_sessions_key ON console_sessions (key_hash)",
        """CREATE TABLE console_conversations (
            id TEXT PRIMARY KEY, tenant TEXT NOT NULL, principal TEXT NOT NULL,
            title TEXT NOT NULL, model TEXT NOT NULL, responses TEXT NOT NULL DEFAULT '[]',
            updated_at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX console_conversations_owner"
        " ON console_conversations (tenant, principal, updated_at)",
    )),
    ("011_ledger_summaries", (
        # Hourly and daily summaries the admin views read instead of the ledger
        # (``audit.summaries``; an existing shared ledger is counted on its next append),
        # and indexes for the ledger list's filters, each with seq for keyset paging.
        """CREATE TABLE audit_hourly (
            period TEXT NOT NULL, target TEXT NOT NULL, principal TEXT NOT NULL,
            tenant TEXT NOT NULL, place TEXT NOT NULL,
            records BIGINT NOT NULL DEFAULT 0, requests BIGINT NOT NULL DEFAULT 0,
            errors BIGINT NOT NULL DEFAULT 0, egress BIGINT NOT NULL DEFAULT 0,
            refusals BIGINT NOT NULL DEFAULT 0, red_line BIGINT NOT NULL DEFAULT 0,
            guard_blocks BIGINT NOT NULL DEFAULT 0, admin_acts BIGINT NOT NULL DEFAULT 0,
            prompt_tokens BIGINT NOT NULL DEFAULT 0, completion_tokens BIGINT NOT NULL DEFAULT 0,
            cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
            latency_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
            PRIMARY KEY (period, target, principal, tenant, place))""",
        """CREATE TABLE audit_hourly_types (
            period TEXT NOT NULL, target TEXT NOT NULL, principal TEXT NOT NULL,
            data_type TEXT NOT NULL, count BIGINT NOT NULL DEFAULT 0,
            PRIMARY KEY (period, target, principal, data_type))""",
        """CREATE TABLE audit_daily (
            period TEXT NOT NULL, target TEXT NOT NULL, principal TEXT NOT NULL,
            tenant TEXT NOT NULL, place TEXT NOT NULL,
            records BIGINT NOT NULL DEFAULT 0, requests BIGINT NOT NULL DEFAULT 0,
            errors BIGINT NOT NULL DEFAULT 0, egress BIGINT NOT NULL DEFAULT 0,
            refusals BIGINT NOT NULL DEFAULT 0, red_line BIGINT NOT NULL DEFAULT 0,
            guard_blocks BIGINT NOT NULL DEFAULT 0, admin_acts BIGINT NOT NULL DEFAULT 0,
            prompt_tokens BIGINT NOT NULL DEFAULT 0, completion_tokens BIGINT NOT NULL DEFAULT 0,
            cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
            latency_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
            PRIMARY KEY (period, target, principal, tenant, place))""",
        """CREATE TABLE audit_daily_types (
            period TEXT NOT NULL, target TEXT NOT NULL, principal TEXT NOT NULL,
            data_type TEXT NOT NULL, count BIGINT NOT NULL DEFAULT 0,
            PRIMARY KEY (period, target, principal, data_type))""",
        """CREATE TABLE audit_summary_mark (
            id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL)""",
        "CREATE INDEX audit_log_principal_seq ON audit_log (principal, seq)",
        "CREATE INDEX audit_log_target_seq ON audit_log (target, seq)",
        "CREATE INDEX audit_log_status_seq ON audit_log (status, seq)",
        "CREATE INDEX audit_log_kind_seq ON audit_log (kind, seq)",
        "CREATE INDEX audit_log_inside_domain_seq ON audit_log (inside_domain, seq)",
    )),
    ("013_chunk_injection_score", (
        # The injection guard's score of a knowledge chunk, from its lines' e5 vectors at
        # ingest (``guard.chunk_head``); NULL for chunks embedded before the column existed.
        "ALTER TABLE knowledge_chunks ADD COLUMN injection_score REAL",
    )),
    ("014_mcp_oauth_tokens", (
        # Each user's OAuth tokens for an upstream MCP server, sealed (``mcp.token_box``).
        """CREATE TABLE mcp_oauth_tokens (
            server TEXT NOT NULL, principal TEXT NOT NULL, sealed TEXT NOT NULL,
            updated_at TEXT NOT NULL, PRIMARY KEY (server, principal))""",
    )),
    ("015_chunk_injection_score_e5_layers", (
        # The chunk head now reads e5's 7th layer, not its last (``guard.e5_layers``): the
        # old scores are on another scale, so they are cleared and every instance's
        # background embedder scores those chunks again (``unscored_chunks``).
        "UPDATE knowledge_chunks SET injection_score = NULL",
    )),
    ("016_chunk_injection_score_hidden_layer", (
        # The chunk head has a hidden layer now (``chunk_training.HIDDEN``): its scores are
        # on another scale again, cleared and computed again as in step 015.
        "UPDATE knowledge_chunks SET injection_score = NULL",
    )),
    ("017_chunk_injection_score_averaged", (
        # ... and then averages three networks and reads the presenter and mail dev sets.
        "UPDATE knowledge_chunks SET injection_score = NULL",
    )),
)
