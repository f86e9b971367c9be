"""Reading the audit ledger: records by filter, and the egress report.

Shared by ``ownlight audit`` and the admin API (``GET /v1/admin/audit``); a bad filter is an
``InvalidRequest``, which each of them words in its own way.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from ownlight.audit.shared import LedgerRows
from ownlight.errors import InvalidRequest

_SINCE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def since_iso(value: str | None) -> str | None:
    """``30d``, ``12h``, ``15m`` or an ISO date -> the ISO time it means (UTC)."""
    if value is None:
        return None
    match = _SINCE.match(value.strip())
    if match:
        delta = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        return (datetime.now(UTC) - delta).isoformat(timespec="milliseconds")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{value!r}: give 30d, 12h, 15m or an ISO date",
                             param="since") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def select(store: LedgerRows, *, since: str | None = None, until: str | None = None,
           principal: str | None = None, target: str | None = None, outside: bool = False,
           status: int | None = None, kind: str | None = None,
           limit: int | None = None) -> list[dict[str, Any]]:
    """Records matching the filters, oldest first; shared by the CLI and the admin API."""
    where, params = ["1=1"], []
    for clause, value in (("at >= ?", since), ("at <= ?", until), ("principal = ?", principal),
                          ("target = ?", target), ("status = ?", status), ("kind = ?", kind)):
        if value is not None:
            where.append(clause)
            params.append(value)
    if outside:
        where.append("inside_domain = 0")
    sql = f"SELECT record FROM audit_log WHERE {' AND '.join(where)} ORDER BY seq"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [json.loads(str(row[0])) for row in store.query(sql, tuple(params))]


def egress_report(store: LedgerRows, since: str | None) -> dict[str, Any]:
    """Per (target, principal): requests, tokens, types pseudonymized; red-line refusals."""
    sent: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"requests": 0, "tokens": 0, "bytes": 0, "pseudonymized": Counter()})
    refused = 0
    for r in select(store, since=since):
        if r["kind"] == "egress":
            row = sent[(r["target"], r.get("principal") or "")]
            row["bytes"] += r.get("payload_bytes") or 0
        for folded in r.get("egress") or []:  # egress chained with its request's record
            row = sent[(folded["target"], r.get("principal") or "")]
            row["bytes"] += folded.get("payload_bytes") or 0
        if r["kind"] == "request" and r.get("inside_domain") is False:
            row = sent[(r["target"], r.get("principal") or "")]
            row["requests"] += 1
            row["tokens"] += sum((r.get("usage") or {}).get(k) or 0
                                 for k in ("prompt_tokens", "completion_tokens"))
            row["pseudonymized"].update(r.get("pseudonymized") or {})
        elif r["kind"] == "request" and r.get("error_code") == "policy_local_only":
            refused += 1
    return {
        "since": since,
        "sent": [{"target": t, "principal": p or None, **{
            k: dict(v) if isinstance(v, Counter) else v for k, v in row.items()}}
            for (t, p), row in sorted(sent.items())],
        "refused": refused,
    }
