"""What a ledger record hashes as: the genesis hash, the indexed columns, the canonical JSON.

Shared by the local chain (``chain``), the shared ledger in PostgreSQL (``shared``) and the
verifier, so that all three hash a record the same way and none imports another.
"""

from __future__ import annotations

from typing import Any

import orjson

GENESIS = "0" * 64
COLUMNS = ("kind", "request_id", "principal", "tenant", "target", "inside_domain", "status")


def canonical(value: Any) -> str:
    """Sorted keys, no insignificant spaces: the same record always hashes the same."""
    return canonical_bytes(value).decode()


def canonical_bytes(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
