"""The ledger's hourly summaries equal a full scan of the ledger, on SQLite and PostgreSQL.

Records of every kind are written through the real ``Ledger`` (journal, chainer and, for
PostgreSQL, the shipper into a real server); then every row of ``audit_hourly`` and
``audit_hourly_types`` is compared with totals computed here from each chained record.
A ledger made before the summaries existed (their rows and mark deleted) is counted once
when a ledger opens it (SQLite) or on the next append (PostgreSQL). The admin views'
readers (``audit.views``) answer from the summaries and page the ledger by seq.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import psycopg
import pytest

from ownlight.audit.ledger import Ledger
from ownlight.audit.records import AdminRecord, EgressRecord, RefusalRecord, RequestRecord
from ownlight.audit.shared import LedgerRows, PgLedgerStore
from ownlight.audit.views import egress, ledger_page, metrics
from ownlight.errors import InvalidRequest
from ownlight.store.postgres import PostgresDatabase
from ownlight.store.sqlite import StateStore

HOUR = 3600.0
SUMMARY_TABLES = (
    "audit_hourly",
    "audit_hourly_types",
    "audit_daily",
    "audit_daily_types",
    "audit_summary_mark",
)
START = 1_780_000_000.0  # 2026-05-28 20:26 UTC: records spread over 20:00 to 22:00 and,
# with ``days``, over the days after it


def write_mixed(ledger: Ledger, tag: str, n: int = 12, days: int = 1) -> None:
    """Every kind of record the summaries count, spread over hours, days, targets and people."""
    for i in range(n):
        at = START + (i % 3) * HOUR + (i % days) * 24 * HOUR + i
        cloud = i % 2 == 0
        ledger.put(
            RequestRecord(
                f"req_{tag}_{i}",
                "chat",
                status=200 if i % 5 else 502,
                principal=f"user{i % 3}",
                tenant="acme",
                route="gpt-cloud" if cloud else "local",
                inside_domain=not cloud,
                pseudonymized={"EMAIL": 1 + i % 2, "PHONE": i % 3} if cloud else {"EMAIL": 7},
                usage={"prompt_tokens": 10 + i, "completion_tokens": 5},
                cost_usd=0.01 * i if cloud else 0.0,
                latency_ms=20.0 + i,
                at=at,
            )
        )
        if cloud:  # its egress record, folded into the request's when in the same pass
            ledger.put(
                EgressRecord(
                    f"req_{tag}_{i}",
                    "gpt-cloud",
                    f"user{i % 3}",
                    "acme",
                    {"EMAIL": 1},
                    "h" * 64,
                    100,
                    at=at,
                )
            )
    ledger.put(
        EgressRecord(
            f"req_{tag}_lost", "gpt-cloud", "user9", "acme", {"IBAN": 2}, "h" * 64, 50, at=START + 5
        )
    )
    ledger.put(
        RequestRecord(
            f"req_{tag}_red",
            "chat",
            status=403,
            principal="user1",
            tenant="acme",
            route="gpt-cloud",
            inside_domain=None,
            error_code="policy_local_only",
            at=START + 7,
        )
    )
    ledger.put(
        RequestRecord(
            f"req_{tag}_inj",
            "chat",
            status=400,
            principal="user2",
            tenant="acme",
            error_code="injection_blocked",
            at=START + HOUR,
        )
    )
    ledger.put(RefusalRecord(401, "folded", "none", "10.0.0.1", "*", count=4, at=START + 9))
    ledger.put(AdminRecord("key.create", "alice", "cli", at=START + 2 * HOUR))
    ledger.flush()


def full_scan(
    store: LedgerRows, width: int = 13
) -> tuple[dict[tuple[str, ...], dict[str, float]], dict[tuple[str, ...], int]]:
    """The summaries as they should be, from every record of the ledger."""
    hourly: dict[tuple[str, ...], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    types: dict[tuple[str, ...], int] = defaultdict(int)
    for (text,) in store.query("SELECT record FROM audit_log ORDER BY seq"):
        r = json.loads(str(text))
        place = {None: "none", True: "local", False: "cloud"}[r.get("inside_domain")]
        key = (
            r["at"][:width],
            r.get("target") or "",
            r.get("principal") or "",
            r.get("tenant") or "",
            place,
        )
        row = hourly[key]
        row["records"] += 1
        went = r["kind"] == "request" and r.get("inside_domain") is False
        if r["kind"] == "request":
            row["requests"] += 1
            row["errors"] += (r.get("status") or 0) >= 400
            row["red_line"] += r.get("error_code") == "policy_local_only"
            row["guard_blocks"] += r.get("error_code") == "injection_blocked"
            usage = r.get("usage") or {}
            row["prompt_tokens"] += usage.get("prompt_tokens") or 0
            row["completion_tokens"] += usage.get("completion_tokens") or 0
            row["cost_usd"] += r.get("cost_usd") or 0
            row["latency_ms"] += r.get("latency_ms") or 0
        row["egress"] += went
        row["refusals"] += (r.get("count") or 1) if r["kind"] == "refusal" else 0
        row["admin_acts"] += r["kind"] == "admin"
        if went:
            for data_type, count in (r.get("pseudonymized") or {}).items():
                types[(key[0], key[1], key[2], data_type)] += count
    return hourly, types


def stored(
    store: LedgerRows, table: str = "audit_hourly"
) -> tuple[dict[tuple[str, ...], dict[str, float]], dict[tuple[str, ...], int]]:
    names = (
        "records",
        "requests",
        "errors",
        "egress",
        "refusals",
        "red_line",
        "guard_blocks",
        "admin_acts",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "latency_ms",
    )
    hourly = {}
    for row in store.query(
        f"SELECT period, target, principal, tenant, place, {', '.join(names)} FROM {table}"
    ):
        hourly[tuple(str(v) for v in row[:5])] = dict(zip(names, row[5:], strict=True))
    types = {
        tuple(str(v) for v in row[:4]): int(row[4])
        for row in store.query(
            f"SELECT period, target, principal, data_type, count FROM {table}_types"
        )
    }
    return hourly, types


def assert_summaries_match(store: LedgerRows) -> None:
    for table, width in (("audit_hourly", 13), ("audit_daily", 10)):
        expected_rows, expected_types = full_scan(store, width)
        rows, types = stored(store, table)
        assert set(rows) == set(expected_rows)
        for key, row in rows.items():
            for name, value in row.items():
                assert value == pytest.approx(expected_rows[key].get(name, 0)), (table, key, name)
        assert types == dict(expected_types)
        assert sum(types.values()) > 0 and len(rows) > 3  # the data exercised them


def test_sqlite_summaries_equal_a_full_scan_and_backfill(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    ledger = Ledger(db)
    try:
        write_mixed(ledger, "a")
        write_mixed(ledger, "b", n=23, days=4)
    finally:
        ledger.close()
    store = StateStore(db)
    try:
        assert_summaries_match(store)
        check_windows(store)
        before = stored(store)
        # a ledger from before the summaries: their rows and mark gone
        with store.transaction() as conn:
            for table in SUMMARY_TABLES:
                conn.execute(f"DELETE FROM {table}")
        assert stored(store) == ({}, {})
    finally:
        store.close()
    Ledger(db).close()  # opening it counts the ledger once
    store = StateStore(db)
    try:
        assert stored(store) == before
        assert_summaries_match(store)
    finally:
        store.close()
    ledger = Ledger(db)  # and opening it again counts nothing twice
    try:
        write_mixed(ledger, "c", n=4)
    finally:
        ledger.close()
    store = StateStore(db)
    try:
        assert_summaries_match(store)
    finally:
        store.close()


def test_views_read_the_summaries_and_page_the_ledger(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "state.db")
    try:
        write_mixed(ledger, "a")
    finally:
        ledger.close()
    store = StateStore(tmp_path / "state.db")
    try:
        check_views(store)
    finally:
        store.close()


def check_windows(store: LedgerRows) -> None:
    """Windows of a few hours, of one day's edges and of several days read from the
    summaries give what a scan of the records in those hours gives."""
    records = [json.loads(str(t)) for (t,) in store.query("SELECT record FROM audit_log")]
    windows = [
        (None, None),
        ("2026-05-28T21:00:00+00:00", "2026-05-28T22:00:00+00:00"),
        ("2026-05-28T21:10:00+00:00", None),
        (None, "2026-05-29T20:59:00+00:00"),
        ("2026-05-28T22:00:00+00:00", "2026-05-30T21:00:00+00:00"),
        ("2026-05-29T00:00:00+00:00", "2026-05-31T23:00:00+00:00"),
    ]
    for since, until in windows:
        low, high = (since or "0000")[:13], (until or "9999")[:13]
        inside = [r for r in records if low <= r["at"][:13] <= high and r["kind"] == "request"]
        went = [r for r in inside if r.get("inside_domain") is False]
        report = egress(store, since=since, until=until)
        assert sum(p["egress"] for p in report["periods"]) == len(went), (since, until)
        assert sum(sum(row["pseudonymized"].values()) for row in report["sent"]) == sum(
            sum((r.get("pseudonymized") or {}).values()) for r in went
        ), (since, until)
        totals = metrics(store, since=since, until=until)["total"]
        assert totals["requests"] == len(inside), (since, until)
    assert len({r["at"][:10] for r in records}) >= 3  # the windows crossed days


def check_views(store: LedgerRows) -> None:
    report = egress(store)
    sent = {(row["target"], row["principal"]): row for row in report["sent"]}
    # user0 sent requests 0, 6 (cloud, even i with i % 3 == 0): EMAIL 1 + 1, PHONE 0 + 0
    assert sent[("gpt-cloud", "user0")]["requests"] == 2
    assert sent[("gpt-cloud", "user0")]["pseudonymized"] == {"EMAIL": 2, "PHONE": 0}
    assert ("gpt-cloud", "user9") not in sent  # an unfinished request's egress: listed only
    assert "local" not in {t for t, _ in sent}  # what stayed is not egress
    assert report["red_line"] == 1
    assert sum(h["egress"] for h in report["periods"]) == 6
    totals = metrics(store)["total"]
    assert (totals["local"], totals["cloud"], totals["guard_blocks"]) == (6, 6, 1)
    assert totals["local_share"] == 0.5 and totals["saved_usd"] > 0
    assert totals["refusals"] == 4
    only_late = egress(store, since="2026-05-28T21:00:00+00:00")
    assert 0 < sum(h["egress"] for h in only_late["periods"]) < 6

    seen, before = [], None
    while True:
        page = ledger_page(store, before=before, limit=4, principal="user1", kind="request")
        seen += page["records"]
        before = page["next"]
        if before is None:
            break
    assert all(r["principal"] == "user1" for r in seen)
    assert [r["seq"] for r in seen] == sorted((r["seq"] for r in seen), reverse=True)
    assert len(seen) == len({r["seq"] for r in seen}) == 5  # 4 requests + the red line
    cloud_only = ledger_page(store, limit=200, inside_domain=False)["records"]
    assert cloud_only and all(r["inside_domain"] is False for r in cloud_only)
    with pytest.raises(InvalidRequest):
        ledger_page(store, record="x")
    with pytest.raises(InvalidRequest):
        ledger_page(store, limit=0)


@pytest.fixture
def shared_url(postgres_url: str) -> str:
    PostgresDatabase(postgres_url, max_connections=1).close()  # migrates
    return postgres_url


def test_postgres_summaries_equal_a_full_scan_and_backfill(tmp_path: Path, shared_url: str) -> None:
    ledgers = [Ledger(tmp_path / f"node-{n}" / "state.db", ship_to=shared_url) for n in range(2)]
    try:
        write_mixed(ledgers[0], "a")
        write_mixed(ledgers[1], "b", n=17, days=3)
    finally:
        for ledger in ledgers:
            ledger.close()
    database = PostgresDatabase(shared_url, max_connections=1)
    store = PgLedgerStore(database)
    try:
        assert_summaries_match(store)
        check_windows(store)
        check_views_counts = stored(store)
        with psycopg.connect(shared_url, autocommit=True) as conn:
            for table in SUMMARY_TABLES:
                conn.execute(f"DELETE FROM {table}")
        ledger = Ledger(tmp_path / "node-3" / "state.db", ship_to=shared_url)
        try:  # the next append counts the shared ledger before it, once
            ledger.write_sync(AdminRecord("key.revoke", "bob", "cli", at=time.time()))
        finally:
            ledger.close()
        assert_summaries_match(store)
        hourly, _ = stored(store)
        assert (
            sum(r["records"] for r in hourly.values())
            == sum(r["records"] for r in check_views_counts[0].values()) + 1
        )
    finally:
        store.close()


def test_postgres_views(tmp_path: Path, shared_url: str) -> None:
    ledger = Ledger(tmp_path / "node" / "state.db", ship_to=shared_url)
    try:
        write_mixed(ledger, "a")
    finally:
        ledger.close()
    database = PostgresDatabase(shared_url, max_connections=1)
    store = PgLedgerStore(database)
    try:
        check_views(store)
    finally:
        store.close()
