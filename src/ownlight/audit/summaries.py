"""Hourly summaries of the ledger, kept as records are chained, so admin views never scan it.

Why summaries and not queries over ``audit_log``: a million records take seconds to scan,
and the console's egress and metrics views must answer in well under 300 ms. Each chained
record adds to one row of ``audit_hourly`` (per hour x target x principal x tenant x
place: local, cloud or none) and, for what left the domain, to rows of
``audit_hourly_types`` (per hour x target x principal x data type: how many values were
pseudonymized); ``audit_daily`` and ``audit_daily_types`` hold the same per day, so a
month is read from a few thousand daily rows (and the hours of its edge days) rather than
from every hour's. The rows are added to in the same transaction that appends the records
(``chain.append_records`` for the SQLite chain, ``shared.append_shared`` for the shared
ledger in PostgreSQL), and ``audit_summary_mark`` says up to which ``seq`` the summaries
count: an append that finds the mark behind (a ledger made before summaries existed)
catches up from the ledger itself first, so nothing is counted twice or missed.

Egress is counted from each request's own record (it names the target and what was
pseudonymized); an egress record is chained on its own only when its request never
finished (or, rarely, in another pass than the request's), so counting those too could
count one request twice. They stay in the ledger list.

The same statements run on SQLite and on PostgreSQL (``ON CONFLICT ... DO UPDATE``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from ownlight.store.migrations import SUMMARY_MEASURES as MEASURES

KEY = ("period", "target", "principal", "tenant", "place")
TYPE_KEY = ("period", "target", "principal", "data_type")
CATCH_UP_BATCH = 5000
RED_LINE = "policy_local_only"  # a request refused because its data may not leave
GUARD_BLOCK = "injection_blocked"

HourKey = tuple[str, str, str, str, str]
TypeKey = tuple[str, str, str, str]


class Totals:
    """What a batch of records adds to the summaries, before it is written."""

    def __init__(self) -> None:
        self.hourly: dict[HourKey, list[float]] = {}
        self.types: dict[TypeKey, int] = {}

    def add(self, record: dict[str, Any]) -> None:
        kind = record.get("kind")
        inside = record.get("inside_domain")
        place = "none" if inside is None else ("local" if inside else "cloud")
        key = (
            str(record["at"])[:13],
            record.get("target") or "",
            record.get("principal") or "",
            record.get("tenant") or "",
            place,
        )
        row = self.hourly.get(key)
        if row is None:
            row = self.hourly[key] = [0.0] * len(MEASURES)
        row[0] += 1
        status = record.get("status") or 0
        code = record.get("error_code")
        if kind == "request":
            row[1] += 1
            row[2] += status >= 400
            row[5] += code == RED_LINE
            row[6] += code == GUARD_BLOCK
            usage = record.get("usage") or {}
            row[8] += int(usage.get("prompt_tokens") or 0)
            row[9] += int(usage.get("completion_tokens") or 0)
            row[10] += float(record.get("cost_usd") or 0.0)
            row[11] += float(record.get("latency_ms") or 0.0)
            if inside is False:
                row[3] += 1
                self._types(key, record.get("pseudonymized"))
        elif kind == "refusal":
            row[4] += int(record.get("count") or 1)
        elif kind == "admin":
            row[7] += 1

    def _types(self, key: HourKey, found: dict[str, int] | None) -> None:
        for data_type, count in (found or {}).items():
            type_key = (key[0], key[1], key[2], data_type)
            self.types[type_key] = self.types.get(type_key, 0) + int(count)


def _placeholders(n: int, pg: bool) -> str:
    return ", ".join(["%s" if pg else "?"] * n)


def _by_day(rows: dict[Any, Any]) -> dict[Any, Any]:
    """Hourly totals folded into daily ones (the key's first field is the hour)."""
    days: dict[Any, Any] = {}
    for key, value in rows.items():
        day_key = (key[0][:10], *key[1:])
        if isinstance(value, list):
            total = days.setdefault(day_key, [0.0] * len(value))
            for i, v in enumerate(value):
                total[i] += v
        else:
            days[day_key] = days.get(day_key, 0) + value
    return days


def _write(db: Any, totals: Totals, pg: bool) -> None:
    cur = db.cursor()
    for table, rows in (("audit_hourly", totals.hourly), ("audit_daily", _by_day(totals.hourly))):
        if rows:
            updates = ", ".join(f"{m} = {table}.{m} + excluded.{m}" for m in MEASURES)
            cur.executemany(
                f"INSERT INTO {table} ({', '.join(KEY + MEASURES)}) "
                f"VALUES ({_placeholders(len(KEY) + len(MEASURES), pg)}) "
                f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {updates}",
                [(*key, *values) for key, values in rows.items()],
            )
    for table, counts in (
        ("audit_hourly_types", totals.types),
        ("audit_daily_types", _by_day(totals.types)),
    ):
        if counts:
            cur.executemany(
                f"INSERT INTO {table} ({', '.join(TYPE_KEY)}, count) "
                f"VALUES ({_placeholders(len(TYPE_KEY) + 1, pg)}) "
                f"ON CONFLICT ({', '.join(TYPE_KEY)}) DO UPDATE SET "
                f"count = {table}.count + excluded.count",
                [(*key, count) for key, count in counts.items()],
            )


def _mark(db: Any) -> int:
    row = db.execute("SELECT seq FROM audit_summary_mark WHERE id = 1").fetchone()
    return int(row[0]) if row else 0


def _set_mark(db: Any, seq: int, pg: bool) -> None:
    p = "%s" if pg else "?"
    db.execute(
        "INSERT INTO audit_summary_mark (id, seq) VALUES (1, " + p + ") "
        "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq",
        (seq,),
    )


def catch_up(
    db: Any, pg: bool = False, until: int | None = None, batches: int | None = None
) -> int:
    """Count what the summaries have not counted yet (a backfill), in the caller's
    transaction, ``CATCH_UP_BATCH`` records at a time (at most ``batches`` of them); how
    many records it counted."""
    p = "%s" if pg else "?"
    done = 0
    mark = _mark(db)
    while batches is None or batches > 0:
        if batches is not None:
            batches -= 1
        sql = f"SELECT seq, record FROM audit_log WHERE seq > {p}"
        params: tuple[Any, ...] = (mark,)
        if until is not None:
            sql += f" AND seq <= {p}"
            params = (mark, until)
        rows = db.execute(sql + f" ORDER BY seq LIMIT {CATCH_UP_BATCH}", params).fetchall()
        if not rows:
            return done
        totals = Totals()
        for _, text in rows:
            totals.add(orjson.loads(text))
        _write(db, totals, pg)
        mark = int(rows[-1][0])
        _set_mark(db, mark, pg)
        done += len(rows)
    return done


def count_appended(
    db: Any, first_seq: int, last_seq: int, bodies: Iterable[dict[str, Any]], pg: bool = False
) -> None:
    """Add records just appended (``first_seq``..``last_seq``, in the caller's transaction)
    to the summaries; if the mark is behind them, count the ledger up to them first."""
    if _mark(db) < first_seq - 1:
        catch_up(db, pg, until=first_seq - 1)
    totals = Totals()
    for body in bodies:
        totals.add(body)
    _write(db, totals, pg)
    _set_mark(db, last_seq, pg)
