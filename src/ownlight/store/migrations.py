"""Every schema step of the state database, in the one order they are applied.

Append-only: a step, once released, is never edited or reordered; a change of schema is
a new step at the end. ``StateStore`` applies the steps a database has not seen yet, in
this order, at start-up, each in its own transaction with its record in ``_migrations``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

Migration = Callable[[sqlite3.Connection], None]


def _api_keys(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE api_keys (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            prefix TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            tenant TEXT NOT NULL DEFAULT 'default',
            groups TEXT NOT NULL DEFAULT '[]',
            created_at TEXT NOT NULL,
            revoked_at TEXT
        )"""
    )


def _spend(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE spend (
            scope TEXT NOT NULL,
            subject TEXT NOT NULL,
            period TEXT NOT NULL,
            usd REAL NOT NULL DEFAULT 0,
            PRIMARY KEY (scope, subject, period)
        )"""
    )


def _request_log(db: sqlite3.Connection) -> None:
    """The first request log; the audit ledger (step 006) replaced it. Kept for history."""
    db.execute(
        """CREATE TABLE request_log (
            id INTEGER PRIMARY KEY,
            request_id TEXT NOT NULL,
            at TEXT NOT NULL,
            principal TEXT,
            tenant TEXT,
            operation TEXT NOT NULL,
            model TEXT,
            route TEXT,
            reason TEXT,
            inside_domain INTEGER,
            status INTEGER NOT NULL,
            error_code TEXT,
            sensitivity TEXT,
            found TEXT NOT NULL DEFAULT '{}',
            pseudonymized TEXT NOT NULL DEFAULT '{}',
            usage TEXT,
            cost_usd REAL NOT NULL DEFAULT 0,
            latency_ms REAL
        )"""
    )
    db.execute("CREATE INDEX request_log_request ON request_log (request_id)")


def _request_log_knowledge(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE request_log ADD COLUMN knowledge TEXT")


def _responses(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE responses (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            principal TEXT NOT NULL,
            created_at REAL NOT NULL,
            body TEXT NOT NULL,
            context TEXT NOT NULL
        )"""
    )


def _audit_log(db: sqlite3.Connection) -> None:
    """The hash-chained ledger: each record's canonical JSON holds its seq and the hash
    of the record before it; the other columns are indexes over that JSON."""
    db.execute(
        """CREATE TABLE audit_log (
            seq INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            request_id TEXT,
            principal TEXT,
            tenant TEXT,
            target TEXT,
            inside_domain INTEGER,
            status INTEGER,
            record TEXT NOT NULL,
            hash TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX audit_log_at ON audit_log (at)")
    db.execute("CREATE INDEX audit_log_request ON audit_log (request_id)")
    db.execute(
        """CREATE TABLE audit_checkpoints (
            count INTEGER PRIMARY KEY,
            head TEXT NOT NULL,
            at TEXT NOT NULL
        )"""
    )


def _audit_uid(db: sqlite3.Connection) -> None:
    """Each record's unique id, so a journal replayed after a crash never chains twice."""
    db.execute("ALTER TABLE audit_log ADD COLUMN uid TEXT")
    db.execute("CREATE UNIQUE INDEX audit_log_uid ON audit_log (uid)")


def _model_lifecycle(db: sqlite3.Connection) -> None:
    """Model versions, which version each name serves (an append-only history of
    switches), a counter a running server polls to learn of a switch, and eval scores."""
    db.execute(
        """CREATE TABLE model_versions (
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            path TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            license TEXT,
            source TEXT NOT NULL,
            facts TEXT NOT NULL,
            imported_at TEXT NOT NULL,
            PRIMARY KEY (name, version)
        )"""
    )
    db.execute(
        """CREATE TABLE model_switches (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            action TEXT NOT NULL,
            version INTEGER NOT NULL,
            previous INTEGER,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            details TEXT NOT NULL DEFAULT '{}'
        )"""
    )
    db.execute("CREATE INDEX model_switches_name ON model_switches (name, id)")
    db.execute("CREATE TABLE model_generation (id INTEGER PRIMARY KEY CHECK (id = 1), "
               "value INTEGER NOT NULL)")
    db.execute("INSERT INTO model_generation (id, value) VALUES (1, 0)")
    db.execute(
        """CREATE TABLE eval_runs (
            id INTEGER PRIMARY KEY,
            suite TEXT NOT NULL,
            suite_sha256 TEXT NOT NULL,
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            at TEXT NOT NULL,
            passed INTEGER NOT NULL,
            total INTEGER NOT NULL,
            score REAL NOT NULL,
            results TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX eval_runs_model ON eval_runs (name, version, suite_sha256)")


def _mcp_pins(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE mcp_pins (
            server TEXT NOT NULL,
            tool TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            approved_at TEXT NOT NULL,
            approved_by TEXT NOT NULL,
            PRIMARY KEY (server, tool)
        )"""
    )


def _console(db: sqlite3.Connection) -> None:
    """The console's sign-in sessions and the conversations it lists (``console.store``)."""
    db.execute(
        """CREATE TABLE console_sessions (
            token_hash TEXT PRIMARY KEY,
            key_hash TEXT NOT NULL,
            csrf TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX console_sessions_key ON console_sessions (key_hash)")
    db.execute(
        """CREATE TABLE console_conversations (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            principal TEXT NOT NULL,
            title TEXT NOT NULL,
            model TEXT NOT NULL,
            responses TEXT NOT NULL DEFAULT '[]',
            updated_at REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX console_conversations_owner"
               " ON console_conversations (tenant, principal, updated_at)")


def _ledger_summaries(db: sqlite3.Connection) -> None:
    """Hourly and daily summaries the admin views read instead of the ledger
    (``audit.summaries``; an existing ledger is counted when a ledger next opens it), and
    indexes for the ledger list's filters, each with ``seq`` for keyset paging."""
    numbers = ", ".join(f"{m} {'REAL' if m in ('cost_usd', 'latency_ms') else 'INTEGER'} "
                        "NOT NULL DEFAULT 0" for m in SUMMARY_MEASURES)
    for period in ("hourly", "daily"):
        db.execute(
            f"""CREATE TABLE audit_{period} (
                period TEXT NOT NULL, target TEXT NOT NULL, principal TEXT NOT NULL,
                tenant TEXT NOT NULL, place TEXT NOT NULL, {numbers},
                PRIMARY KEY (period, target, principal, tenant, place))"""
        )
        db.execute(
            f"""CREATE TABLE audit_{period}_types (
                period TEXT NOT NULL, target TEXT NOT NULL, principal TEXT NOT NULL,
                data_type TEXT NOT NULL, count INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (period, target, principal, data_type))"""
        )
    db.execute("CREATE TABLE audit_summary_mark (id INTEGER PRIMARY KEY CHECK (id = 1), "
               "seq INTEGER NOT NULL)")
    for column in ("principal", "target", "status", "kind", "inside_domain"):
        db.execute(f"CREATE INDEX audit_log_{column}_seq ON audit_log ({column}, seq)")


def _mcp_oauth_tokens(db: sqlite3.Connection) -> None:
    # Each user's OAuth tokens for an upstream MCP server, sealed (``mcp.token_box``).
    db.execute(
        """CREATE TABLE mcp_oauth_tokens (
            server TEXT NOT NULL,
            principal TEXT NOT NULL,
            sealed TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (server, principal)
        )"""
    )


# The numeric columns of ``audit_hourly`` (``audit.summaries.MEASURES`` counts into them).
SUMMARY_MEASURES = ("records", "requests", "errors", "egress", "refusals", "red_line",
                    "guard_blocks", "admin_acts", "prompt_tokens", "completion_tokens",
                    "cost_usd", "latency_ms")


STATE_MIGRATIONS: tuple[tuple[str, Migration], ...] = (
    ("001_api_keys", _api_keys),
    ("002_spend", _spend),
    ("003_request_log", _request_log),
    ("004_request_log_knowledge", _request_log_knowledge),
    ("005_responses", _responses),
    ("006_audit_log", _audit_log),
    ("007_audit_uid", _audit_uid),
    ("008_model_lifecycle", _model_lifecycle),
    ("009_mcp_pins", _mcp_pins),
    ("010_console", _console),
    ("011_ledger_summaries", _ledger_summaries),
    ("012_mcp_oauth_tokens", _mcp_oauth_tokens),
)
