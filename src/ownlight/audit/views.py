"""What the admin views read: egress and metrics from the hourly summaries, and the ledger
list a page at a time.

Shared by the admin API and the console. Nothing here scans ``audit_log``: totals come from
``audit_hourly`` and ``audit_hourly_types`` (``summaries``), and the ledger list pages by
``seq`` (keyset: ``before`` is the last seq of the page shown), so a page costs the same
at the millionth record as at the first. Every reader takes a ``LedgerRows`` (the SQLite
state file or the shared ledger in PostgreSQL).
"""

from __future__ import annotations

from typing import Any

import orjson

from ownlight.audit.shared import LedgerRows
from ownlight.errors import InvalidRequest

PAGE_MAX = 200
_FILTERS = ("principal", "target", "status", "kind", "inside_domain")


def _hour(iso: str | None) -> str | None:
    return None if iso is None else iso[:13]


def _window(since: str | None, until: str | None) -> tuple[str, list[Any]]:
    where, params = ["1=1"], []
    if since is not None:
        where.append("hour >= ?")
        params.append(_hour(since))
    if until is not None:
        where.append("hour <= ?")
        params.append(_hour(until))
    return " AND ".join(where), params


def egress(store: LedgerRows, since: str | None = None, until: str | None = None) -> dict[str, Any]:
    """What left the domain: per hour, per target, per principal and per data type
    pseudonymized, with the red-line refusals (requests kept from leaving)."""
    where, params = _window(since, until)
    args = tuple(params)
    hours = store.query(
        f"SELECT hour, sum(egress), sum(red_line) FROM audit_hourly "
        f"WHERE {where} GROUP BY hour ORDER BY hour",
        args,
    )
    targets = store.query(
        f"SELECT target, principal, sum(egress), sum(prompt_tokens) + "
        f"sum(completion_tokens), sum(cost_usd) FROM audit_hourly "
        f"WHERE {where} AND egress > 0 GROUP BY target, principal "
        f"ORDER BY target, principal",
        args,
    )
    types = store.query(
        f"SELECT target, principal, data_type, sum(count) FROM "
        f"audit_hourly_types WHERE {where} GROUP BY target, principal, "
        f"data_type ORDER BY target, principal, data_type",
        args,
    )
    pseudonymized: dict[tuple[str, str], dict[str, int]] = {}
    for target, principal, data_type, count in types:
        pseudonymized.setdefault((str(target), str(principal)), {})[str(data_type)] = int(count)
    return {
        "since": since,
        "until": until,
        "hours": [{"hour": str(h), "egress": int(e), "red_line": int(r)} for h, e, r in hours],
        "sent": [
            {
                "target": str(t),
                "principal": str(p) or None,
                "requests": int(n),
                "tokens": int(tok),
                "cost_usd": float(c),
                "pseudonymized": pseudonymized.get((str(t), str(p)), {}),
            }
            for t, p, n, tok, c in targets
        ],
        "red_line": sum(int(r) for _, _, r in hours),
    }


def metrics(
    store: LedgerRows, since: str | None = None, until: str | None = None
) -> dict[str, Any]:
    """Requests, tokens, latency, cost, local vs cloud share and guard blocks, per hour
    and in total, from the summaries."""
    where, params = _window(since, until)
    rows = store.query(
        f"SELECT hour, place, sum(requests), sum(errors), sum(prompt_tokens), "
        f"sum(completion_tokens), sum(cost_usd), sum(latency_ms), sum(guard_blocks), "
        f"sum(refusals) FROM audit_hourly WHERE {where} GROUP BY hour, place ORDER BY hour",
        tuple(params),
    )
    hours: dict[str, dict[str, Any]] = {}
    total = {
        "requests": 0,
        "errors": 0,
        "tokens": 0,
        "local": 0,
        "cloud": 0,
        "local_tokens": 0,
        "cost_usd": 0.0,
        "latency_ms": 0.0,
        "guard_blocks": 0,
        "refusals": 0,
    }
    for hour, place, req, err, ptok, ctok, cost, lat, guard, refused in rows:
        row = hours.setdefault(
            str(hour),
            {
                "hour": str(hour),
                "requests": 0,
                "local": 0,
                "cloud": 0,
                "tokens": 0,
                "guard_blocks": 0,
            },
        )
        tokens = int(ptok) + int(ctok)
        for bucket in (row, total):
            bucket["requests"] += int(req)
            bucket["tokens"] += tokens
            bucket["guard_blocks"] += int(guard)
            if place in ("local", "cloud"):
                bucket[str(place)] += int(req)
        total["errors"] += int(err)
        total["cost_usd"] += float(cost)
        total["latency_ms"] += float(lat)
        total["refusals"] += int(refused)
        if place == "local":
            total["local_tokens"] += tokens
    served = total["local"] + total["cloud"]
    total["local_share"] = total["local"] / served if served else 0.0
    total["mean_latency_ms"] = total["latency_ms"] / total["requests"] if total["requests"] else 0.0
    cloud_tokens = total["tokens"] - total["local_tokens"]
    # what the local tokens would have cost at the cloud's observed price per token
    total["saved_usd"] = (
        total["cost_usd"] / cloud_tokens * total["local_tokens"] if cloud_tokens else 0.0
    )
    return {"since": since, "until": until, "total": total, "hours": list(hours.values())}


def ledger_page(
    store: LedgerRows,
    *,
    before: int | None = None,
    limit: int = 50,
    since: str | None = None,
    until: str | None = None,
    **filters: Any,
) -> dict[str, Any]:
    """One page of the ledger, newest first, filtered on indexed columns; ``next`` is the
    ``before`` of the following page (None at the end)."""
    if not 1 <= limit <= PAGE_MAX:
        raise InvalidRequest(f"limit must be between 1 and {PAGE_MAX}", param="limit")
    where, params = ["1=1"], []
    for name, value in filters.items():
        if name not in _FILTERS:
            raise InvalidRequest(f"{name!r} is not a ledger filter", param=name)
        if value is not None:
            where.append(f"{name} = ?")
            params.append(int(value) if name == "inside_domain" else value)
    for clause, value in (("seq < ?", before), ("at >= ?", since), ("at <= ?", until)):
        if value is not None:
            where.append(clause)
            params.append(value)
    rows = store.query(
        f"SELECT seq, record FROM audit_log WHERE {' AND '.join(where)} "
        f"ORDER BY seq DESC LIMIT {int(limit) + 1}",
        tuple(params),
    )
    records = [orjson.loads(str(text)) for _, text in rows[:limit]]
    return {"records": records, "next": int(rows[limit - 1][0]) if len(rows) > limit else None}


def ledger_record(store: LedgerRows, seq: int) -> dict[str, Any] | None:
    """One record by its seq."""
    rows = store.query("SELECT record FROM audit_log WHERE seq = ?", (int(seq),))
    return orjson.loads(str(rows[0][0])) if rows else None
