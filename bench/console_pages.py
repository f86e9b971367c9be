"""What the admin views cost on a large ledger: every reader behind an admin page, timed on
SQLite and on the shared ledger in PostgreSQL, against the 300 ms goal.

The ledger is made through the real schema and the real chain: records are chained by
``chain.append_records`` (canonical JSON, hashes, the hourly summaries kept on append) in
batches of 5,000, over 30 days, 40 principals, 6 targets, half of them local. The shared
ledger gets the same chain through ``shared.append_shared`` (the shipper's own append),
in a throwaway PostgreSQL from ``tests.support.servers``. Then each view (``audit.views``)
runs ``--runs`` times; the median and 95th percentile are printed per view and store.

    python bench/console_pages.py [--records 1000000] [--runs 30] [--no-postgres]
    python bench/console_pages.py --overhead 200000   # what keeping the summaries costs
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import psycopg  # noqa: E402
from tests.support.gateway import RunningGateway  # noqa: E402
from tests.support.inprocess import write_config  # noqa: E402
from tests.support.servers import Postgres, running  # noqa: E402

from ownlight.audit.chain import append_records  # noqa: E402
from ownlight.audit.shared import LedgerRows, PgLedgerStore, append_shared  # noqa: E402
from ownlight.audit.views import egress, ledger_page, ledger_record, metrics  # noqa: E402
from ownlight.store.postgres import PostgresDatabase  # noqa: E402
from ownlight.store.sqlite import StateStore  # noqa: E402

GOAL_MS = 300.0
BATCH = 5000
SPAN = 30 * 24 * 3600.0
TYPES = ("EMAIL", "PHONE", "PERSON", "IBAN", "ADDRESS")
TARGETS = ("local-qwen", "local-llama", "local-embed", "gpt-4o", "claude", "mistral")


def record(i: int, n: int, start: float, span: float = SPAN) -> dict[str, Any]:
    """The i-th of n records: mostly requests, some refusals and admin acts."""
    at = datetime.fromtimestamp(start + span * i / n, UTC).isoformat(timespec="milliseconds")
    target = TARGETS[i % len(TARGETS)]
    cloud = i % len(TARGETS) >= 3
    if i % 97 == 0:
        return {
            "kind": "refusal",
            "status": 401,
            "reason": "unknown_key",
            "key": "none",
            "client": "10.0.0.1",
            "endpoint": "POST /v1/chat/completions",
            "at": at,
            "uid": f"bench-{i}",
        }
    if i % 101 == 0:
        return {
            "kind": "admin",
            "action": "key.create",
            "subject": f"k{i}",
            "principal": "admin",
            "details": {},
            "at": at,
            "uid": f"bench-{i}",
        }
    return {
        "kind": "request",
        "request_id": f"req_{i:012x}",
        "operation": "chat",
        "endpoint": "/v1/chat/completions",
        "status": 200 if i % 53 else 502,
        "principal": f"user{i % 40}",
        "tenant": f"t{i % 3}",
        "groups": [],
        "model": target,
        "route": target,
        "target": target,
        "inside_domain": not cloud,
        "error_code": "policy_local_only" if i % 211 == 0 else None,
        "pseudonymized": {TYPES[i % 5]: 1 + i % 3, TYPES[(i + 2) % 5]: 1} if cloud else {},
        "usage": {"prompt_tokens": 200 + i % 400, "completion_tokens": 50 + i % 90},
        "cost_usd": 0.002 if cloud else 0.0,
        "latency_ms": 40.0 + i % 700,
        "prompt": {"hmac_sha256": f"{i:064x}"},
        "at": at,
        "uid": f"bench-{i}",
    }


def fill_sqlite(path: Path, n: int, span: float = SPAN, batch: int = BATCH) -> float:
    store = StateStore(path)
    start = time.time() - span
    began = time.perf_counter()
    try:
        for first in range(0, n, batch):
            append_records(
                store,
                [record(i, n, start, span) for i in range(first, min(n, first + batch))],
                checkpoint_every=1000,
            )
    finally:
        store.close()
    return time.perf_counter() - began


def fill_postgres(local: Path, url: str) -> float:
    store = StateStore(local)
    began = time.perf_counter()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            last = 0
            while True:
                rows = [
                    (int(str(s)), str(r))
                    for s, r in store.query(
                        "SELECT seq, record FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
                        (last, BATCH),
                    )
                ]
                if not rows:
                    break
                with conn.transaction():
                    last = append_shared(conn, "bench", rows)
            conn.execute("ANALYZE")
    finally:
        store.close()
    return time.perf_counter() - began


def summary_overhead(n: int, rate: float = 2000.0, per_pass: int = 100) -> None:
    """Chaining with the summaries kept, and with their counting switched off, in one run,
    as the chainer sees traffic: ``rate`` requests a second, a pass every 50 ms."""
    import ownlight.audit.chain as chain

    kept = chain.count_appended
    timings = {}
    for label, counter in (("without summaries", lambda *a, **k: None), ("with summaries", kept)):
        chain.count_appended = counter  # type: ignore[assignment]
        try:
            with tempfile.TemporaryDirectory() as tmp:
                timings[label] = fill_sqlite(Path(tmp) / "state.db", n, n / rate, per_pass)
        finally:
            chain.count_appended = kept
        print(
            f"chaining {n} records ({rate:.0f}/s, {per_pass} a pass) {label}: "
            f"{timings[label] / n * 1e6:.1f} us a record"
        )
    ratio = timings["with summaries"] / timings["without summaries"]
    print(f"summaries cost {ratio:.2f}x the chaining without them")


def views(store: LedgerRows, n: int) -> dict[str, Callable[[], Any]]:
    """What each admin page reads (the console's pages make these calls and no others)."""
    week = datetime.fromtimestamp(time.time() - 7 * 24 * 3600, UTC).isoformat()
    deep = ledger_page(store, limit=50, before=n // 2)["next"]
    return {
        "egress, 30 days": lambda: egress(store),
        "egress, last 7 days": lambda: egress(store, since=week),
        "metrics, 30 days": lambda: metrics(store),
        "ledger, first page": lambda: ledger_page(store, limit=50),
        "ledger, page at the middle": lambda: ledger_page(store, limit=50, before=deep),
        "ledger, by principal": lambda: ledger_page(store, limit=50, principal="user7"),
        "ledger, by target, errors": lambda: ledger_page(
            store, limit=50, target="gpt-4o", status=502
        ),
        "ledger, cloud only, last 7 days": lambda: ledger_page(
            store, limit=50, inside_domain=False, since=week
        ),
        "ledger, admin acts": lambda: ledger_page(store, limit=50, kind="admin"),
        "one record": lambda: ledger_record(store, n // 3),
    }


def measure(name: str, store: LedgerRows, n: int, runs: int) -> bool:
    ok = True
    for view, call in views(store, n).items():
        call()  # warm
        times = []
        for _ in range(runs):
            began = time.perf_counter()
            call()
            times.append((time.perf_counter() - began) * 1000)
        times.sort()
        p50, p95 = statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)]
        within = p95 <= GOAL_MS
        ok = ok and within
        print(
            f"{name:10} {view:34} p50 {p50:8.2f} ms  p95 {p95:8.2f} ms  "
            f"{'within' if within else 'OVER'} {GOAL_MS:.0f} ms ({p95 / GOAL_MS:.3f} of it)"
        )
    return ok


API = (
    "/v1/admin/egress?since=30d",
    "/v1/admin/egress?since=7d",
    "/v1/admin/usage?since=30d",
    "/v1/admin/ledger?limit=50",
    "/v1/admin/ledger?limit=50&principal=user7",
    "/v1/admin/ledger?limit=50&outside=true&since=7d",
    "/v1/admin/keys?limit=50",
)


def measure_http(name: str, data_dir: Path, toml: str, runs: int) -> bool:
    """The admin API's routes through a running gateway on that ledger (HTTP included)."""
    import httpx

    config = write_config(data_dir.parent / f"{name}.toml", data_dir, toml)
    gateway = RunningGateway(config)
    gateway.start()
    ok = True
    try:
        auth = {"Authorization": f"Bearer {gateway.create_key('bench', ('admin',))}"}
        with httpx.Client(base_url=gateway.url, headers=auth, timeout=30) as client:
            for path in API:
                assert client.get(path).status_code == 200, path
                times = []
                for _ in range(runs):
                    began = time.perf_counter()
                    client.get(path).raise_for_status()
                    times.append((time.perf_counter() - began) * 1000)
                times.sort()
                p50, p95 = statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)]
                ok = ok and p95 <= GOAL_MS
                print(
                    f"{name + ' http':15} {path:48} p50 {p50:8.2f} ms  p95 {p95:8.2f} ms  "
                    f"{'within' if p95 <= GOAL_MS else 'OVER'} {GOAL_MS:.0f} ms"
                )
    finally:
        gateway.stop()
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--overhead",
        type=int,
        default=0,
        help="only time chaining this many records with and without summaries",
    )
    args = parser.parse_args()
    n = args.records
    if args.overhead:
        summary_overhead(args.overhead)
        return
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.db"
        took = fill_sqlite(path, n)
        print(f"chained {n} records into SQLite in {took:.1f} s ({took / n * 1e6:.0f} us each)")
        store = StateStore(path)
        try:
            ok = measure("sqlite", store, n, args.runs) and ok
        finally:
            store.close()
        ok = measure_http("sqlite", Path(tmp), "", args.runs) and ok
        if not args.no_postgres:
            with running(Postgres()) as server:
                url = server.database()
                PostgresDatabase(url).close()  # migrates
                took = fill_postgres(path, url)
                print(f"shipped {n} records into PostgreSQL in {took:.1f} s")
                database = PostgresDatabase(url, max_connections=1)
                pg = PgLedgerStore(database)
                try:
                    ok = measure("postgres", pg, n, args.runs) and ok
                finally:
                    pg.close()
                ok = (
                    measure_http(
                        "postgres",
                        Path(tmp) / "pg-instance",
                        f'[store]\nurl = "{url}"\n',
                        args.runs,
                    )
                    and ok
                )
    print("every view within the goal" if ok else "some view is over the goal")


if __name__ == "__main__":
    main()
