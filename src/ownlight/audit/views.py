"""What the admin views read: egress and metrics from the hourly summaries, and the ledger
list a page at a time.

Shared by the admin API and the console. Nothing here scans ``audit_log``: totals come from
the daily and hourly summaries (``summaries``), and the ledger list pages by
``seq`` (keyset: ``before`` is the last seq of the page shown), so a page costs the same
at the millionth record as at the first. Every reader takes a ``LedgerRows`` (the SQLite
state file or the shared ledger in PostgreSQL).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson

from ownlight.audit.shared import LedgerRows
from ownlight.errors import InvalidRequest

PAGE_MAX = 200
_FILTERS = ("principal", "target", "status", "kind", "inside_domain")


def _source(kind: str, since: str | None, until: str | None) -> tuple[str, list[Any]]:
    """A derived table of summary rows covering the window at hour granularity: whole days
    from the daily table, the hours of the edge days from the hourly one (``kind`` is
    ``""`` for the measures, ``"_types"`` for the data types)."""
    low = since[:13] if since else None
    high = until[:13] if until else None
    hourly, daily = f"audit_hourly{kind}", f"audit_daily{kind}"
    parts: list[str] = []
    params: list[Any] = []
    if low and high and low[:10] == high[:10]:
        parts.append(f"SELECT * FROM {hourly} WHERE period >= ? AND period <= ?")
        params += [low, high]
    else:
        days = []
        if low:
            parts.append(f"SELECT * FROM {hourly} WHERE period >= ? AND period <= ?")
            params += [low, low[:10] + "T23"]
            days.append(("period > ?", low[:10]))
        if high:
            parts.append(f"SELECT * FROM {hourly} WHERE period >= ? AND period <= ?")
            params += [high[:10] + "T00", high]
            days.append(("period < ?", high[:10]))
        where = " AND ".join(["1=1", *(clause for clause, _ in days)])
        parts.append(f"SELECT * FROM {daily} WHERE {where}")
        params += [value for _, value in days]
    return "(" + " UNION ALL ".join(parts) + ") AS summary", params


def _bucket(since: str | None, until: str | None) -> str:
    """Hours for a window of two days or less, days otherwise (a chart of 30 to 60 bars)."""
    if since and until:
        span = datetime.fromisoformat(until) - datetime.fromisoformat(since)
        if span <= timedelta(days=2):
            return "substr(period, 1, 13)"
    return "substr(period, 1, 10)"


def egress(store: LedgerRows, since: str | None = None, until: str | None = None) -> dict[str, Any]:
    """What left the domain: over time (per hour or day), per target and principal and per
    data type pseudonymized, with the red-line refusals (requests kept from leaving)."""
    source, params = _source("", since, until)
    types_source, types_params = _source("_types", since, until)
    bucket = _bucket(since, until)
    periods = store.query(
        f"SELECT {bucket} AS at, sum(egress), sum(red_line) FROM {source} "
        f"GROUP BY {bucket} ORDER BY {bucket}",
        tuple(params),
    )
    targets = store.query(
        f"SELECT target, principal, sum(egress), sum(prompt_tokens) + sum(completion_tokens), "
        f"sum(cost_usd) FROM {source} WHERE egress > 0 GROUP BY target, principal "
        f"ORDER BY target, principal",
        tuple(params),
    )
    types = store.query(
        f"SELECT target, principal, data_type, sum(count) FROM {types_source} "
        f"GROUP BY target, principal, data_type ORDER BY target, principal, data_type",
        tuple(types_params),
    )
    pseudonymized: dict[tuple[str, str], dict[str, int]] = {}
    for target, principal, data_type, count in types:
        pseudonymized.setdefault((str(target), str(principal)), {})[str(data_type)] = int(count)
    return {
        "since": since,
        "until": until,
        "periods": [
            {"period": str(p), "egress": int(e), "red_line": int(r)} for p, e, r in periods
        ],
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
        "red_line": sum(int(r) for _, _, r in periods),
    }


def metrics(
    store: LedgerRows, since: str | None = None, until: str | None = None
) -> dict[str, Any]:
    """Requests, tokens, latency, cost, local vs cloud share and guard blocks, per hour or
    day and in total, from the summaries."""
    source, params = _source("", since, until)
    bucket = _bucket(since, until)
    rows = store.query(
        f"SELECT {bucket} AS at, place, sum(requests), sum(errors), sum(prompt_tokens), "
        f"sum(completion_tokens), sum(cost_usd), sum(latency_ms), sum(guard_blocks), "
        f"sum(refusals) FROM {source} GROUP BY {bucket}, place ORDER BY {bucket}",
        tuple(params),
    )
    periods: dict[str, dict[str, Any]] = {}
    total: dict[str, Any] = {
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
    for period, place, req, err, ptok, ctok, cost, lat, guard, refused in rows:
        row = periods.setdefault(
            str(period),
            {
                "period": str(period),
                "requests": 0,
                "local": 0,
                "cloud": 0,
                "tokens": 0,
                "guard_blocks": 0,
            },
        )
        tokens = int(ptok) + int(ctok)
        for bucket_totals in (row, total):
            bucket_totals["requests"] += int(req)
            bucket_totals["tokens"] += tokens
            bucket_totals["guard_blocks"] += int(guard)
            if place in ("local", "cloud"):
                bucket_totals[str(place)] += int(req)
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
    return {"since": since, "until": until, "total": total, "periods": list(periods.values())}


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
