"""Moving a single-machine deployment onto PostgreSQL: the shared kinds of state, copied
from a SQLite state file into a PostgreSQL store.

This is the one module that reads both schemas, because it moves rows between them as
they are: a key keeps its id and hash (so every key already handed out keeps working, and
audit records that name key ids still match), spend keeps its periods, stored responses
their owners, the model registry its version numbers, switch history and generation (so
what every name serves is unchanged), eval runs their scores. It copies only into a store
with no keys and no model versions yet, so ids cannot clash and nothing is copied twice.
The audit ledger goes over through the shipper's own append (``audit.shared``): into an
empty shared ledger every record keeps its seq and hash (the chain re-chained onto the
same genesis is the same chain, so checkpoints an operator kept still hold), and the
file's data dir is marked shipped, so an instance started on it later ships only what
comes after. The knowledge index is copied beside it (``knowledge.copy``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ownlight.audit.shared import append_shared, source_id
from ownlight.errors import ConfigError
from ownlight.store.postgres import PostgresDatabase
from ownlight.store.sqlite import StateStore


@dataclass(frozen=True)
class Copied:
    keys: int
    spend: int
    responses: int
    versions: int = 0
    switches: int = 0
    eval_runs: int = 0
    audit: int = 0
    mcp_pins: int = 0


def _timestamp(value: object) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def copy_state(source: StateStore, target: PostgresDatabase) -> Copied:
    """Copy keys, spend and stored responses from ``source`` into ``target``, in one
    transaction; ``ConfigError`` if ``target`` has keys already."""
    keys = source.query("SELECT id, name, prefix, key_hash, tenant, groups, created_at,"
                        " revoked_at FROM api_keys ORDER BY id")
    spend = source.query("SELECT scope, subject, period, usd FROM spend")
    responses = source.query("SELECT id, tenant, principal, created_at, body, context"
                             " FROM responses")
    ledger = [(int(str(seq)), str(record)) for seq, record in source.query(
        "SELECT seq, record FROM audit_log ORDER BY seq")]
    marks = source.query("SELECT count, head, at FROM audit_checkpoints ORDER BY count")
    pins = source.query("SELECT server, tool, sha256, approved_at, approved_by FROM mcp_pins")
    with target.transaction() as conn:
        conn.execute("LOCK TABLE api_keys IN SHARE ROW EXCLUSIVE MODE")
        if conn.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone():
            raise ConfigError(f"the store at {target.where} has keys already; "
                              "Ownlight copies only into a store without any")
        for row in keys:
            conn.execute(
                "INSERT INTO api_keys (id, name, prefix, key_hash, tenant, groups, created_at,"
                " revoked_at) OVERRIDING SYSTEM VALUE VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (row[0], row[1], row[2], row[3], row[4], json.loads(str(row[5])),
                 _timestamp(row[6]), _timestamp(row[7])))
        if keys:
            conn.execute("SELECT setval(pg_get_serial_sequence('api_keys', 'id'),"
                         " (SELECT max(id) FROM api_keys))")
        for row in spend:
            conn.execute(
                "INSERT INTO spend (scope, subject, period, usd) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (scope, subject, period)"
                " DO UPDATE SET usd = spend.usd + excluded.usd", row)
        for row in responses:
            conn.execute(
                "INSERT INTO responses (id, tenant, principal, created_at, body, context)"
                " VALUES (%s, %s, %s, %s, %s::json, %s::json) ON CONFLICT (id) DO NOTHING",
                (row[0], row[1], row[2], datetime.fromtimestamp(float(str(row[3])), UTC),
                 row[4], row[5]))
        registry = _copy_registry(source, conn)
        for row in pins:  # approved MCP tool definitions (``mcp.pins``)
            conn.execute(
                "INSERT INTO mcp_pins (server, tool, sha256, approved_at, approved_by)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (server, tool) DO NOTHING", row)
        if ledger:
            empty = not conn.execute("SELECT 1 FROM audit_log LIMIT 1").fetchone()
            # into an empty ledger the file's own checkpoints are copied below instead
            append_shared(conn, source_id(source.path.parent), ledger, 0 if empty else 1000)
            if empty:  # the same seqs and hashes: the file's checkpoints hold here too
                conn.cursor().executemany(
                    "INSERT INTO audit_checkpoints (count, head, at) VALUES (%s, %s, %s)"
                    " ON CONFLICT (count) DO NOTHING", marks)
    return Copied(len(keys), len(spend), len(responses), *registry, audit=len(ledger),
                  mcp_pins=len(pins))


REGISTRY_TABLES = (  # (table, its columns, whether its id is kept)
    ("model_versions", "name, version, path, sha256, size, license, source, facts, "
     "imported_at", False),
    ("model_switches", "id, name, action, version, previous, at, actor, details", True),
    ("eval_runs", "id, suite, suite_sha256, name, version, at, passed, total, score, "
     "results", True),
)


def _copy_registry(source: StateStore, conn: Any) -> tuple[int, int, int]:
    """The registry's rows and eval runs, ids kept; (versions, switches, eval runs)."""
    if conn.execute("SELECT 1 FROM model_versions LIMIT 1").fetchone():
        raise ConfigError("the store has model versions already; Ownlight copies the "
                          "registry only into a store without any")
    counts = []
    for table, columns, ids in REGISTRY_TABLES:
        rows = source.query(f"SELECT {columns} FROM {table}"
                            + (" ORDER BY id" if ids else ""))
        marks = ", ".join(["%s"] * len(columns.split(",")))
        overriding = " OVERRIDING SYSTEM VALUE" if ids else ""
        for row in rows:
            conn.execute(f"INSERT INTO {table} ({columns}){overriding} VALUES ({marks})", row)
        if ids and rows:
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                         f" (SELECT max(id) FROM {table}))")
        counts.append(len(rows))
    (generation,) = source.query("SELECT value FROM model_generation WHERE id = 1")[0]
    conn.execute("UPDATE model_generation SET value = %s WHERE id = 1", (generation,))
    return counts[0], counts[1], counts[2]
