"""Scale-out: what sharing the state costs, and what the shared state guarantees, in one run.

    python bench/scaleout.py                       # 5 s per row, 1 and 32 connections
    python bench/scaleout.py --duration 10 --race 200

Against the same fake upstream (nginx answering one fixed completion, bench/overhead.py's),
on this machine:

1. **Overhead**: one instance on its SQLite file, one instance on PostgreSQL and Redis, and
   three such instances behind nginx (``deploy/cluster.py``), each loaded with wrk at 1 and
   32 connections; the added p50 over the upstream alone and the ratio to the single SQLite
   instance are printed.
2. **Budget race**: ``--race`` concurrent priced requests spread over the three instances
   against a small daily budget; how far the spend went over it, in requests' worth.
3. **Revocation delay**: a key revoked with ``ownlight keys revoke`` from an operator's data
   dir, and how long until every instance refuses it.

On two cores the three instances share the cores one instance has, so the cluster's rows
show the cost of the extra hop and the shared store, not added capacity.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from deploy.cluster import Cluster, running  # noqa: E402

import overhead  # noqa: E402  (bench/overhead.py: the fake upstream, wrk and its parsing)

PRICE = 100_000.0  # USD per million tokens: the fake's 3 tokens cost 0.3 USD a request
LIMIT_USD = 30.0  # a hundred requests' real cost a day (each reserves about 3.6 USD first)
RACE_TOML = """
[models.priced]
backend = "openai"
base_url = "{upstream}"
model = "fake"
inside_domain = false
retries = 0
price_in = {price}
price_out = {price}

[routing.aliases.race]
targets = ["priced"]

[[routing.rules]]
name = "to-cloud"
action = "cloud"

[[routing.budgets]]
scope = "key"
match = "*"
period = "day"
limit_usd = {limit}
"""


def operator(store_url: str, workdir: Path, *args: str) -> str:
    env = {**os.environ, "OWNLIGHT_DATA_DIR": str(workdir / "operator"),
           "OWNLIGHT_STORE_URL": store_url}
    env.pop("OWNLIGHT_CONFIG", None)
    done = subprocess.run([*overhead.ownlight_command(), *args], env=env, check=True,
                          capture_output=True, text=True, timeout=120)
    return done.stdout


def post(url: str, key: str, body: dict[str, object]) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def budget_race(cluster: Cluster, workdir: Path, requests: int) -> dict[str, float]:
    """``requests`` at once over every instance (not through nginx: each instance gets its
    share at the same moment); the spend recorded in the shared store afterwards."""
    made = json.loads(operator(cluster.store_url, workdir, "keys", "create", "--name",
                               "racer", "--json"))
    body = {"model": "race", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    urls = [f"{s.url}/v1/chat/completions" for s in cluster.servers]
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(requests, 64)) as pool:
        statuses = list(pool.map(lambda n: post(urls[n % len(urls)], made["key"], body),
                                 range(requests)))
    import psycopg

    with psycopg.connect(cluster.store_url) as conn:
        row = conn.execute("SELECT usd FROM spend WHERE scope = 'key' AND subject = 'racer' "
                           "AND length(period) = 10").fetchone()
    spent = float(row[0]) if row else 0.0
    per_request = 3 * PRICE / 1e6
    return {"answered": statuses.count(200), "refused": statuses.count(429),
            "other": len(statuses) - statuses.count(200) - statuses.count(429),
            "spent": spent, "over": max(0.0, spent - LIMIT_USD) / per_request}


def revocation_delay(cluster: Cluster, workdir: Path) -> float:
    """Seconds from ``ownlight keys revoke`` returning until every instance refuses."""
    made = json.loads(operator(cluster.store_url, workdir, "keys", "create", "--name",
                               "leaver", "--json"))
    body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}
    urls = [f"{s.url}/v1/chat/completions" for s in cluster.servers]
    assert all(post(url, made["key"], body) == 200 for url in urls)
    operator(cluster.store_url, workdir, "keys", "revoke", "leaver")
    start = time.monotonic()
    pending = set(urls)
    while pending and time.monotonic() - start < 30:
        pending = {url for url in pending if post(url, made["key"], body) != 401}
    return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", default="1,32")
    parser.add_argument("--race", type=int, default=200, help="concurrent priced requests")
    args = parser.parse_args()
    connections = [int(c) for c in args.connections.split(",")]
    overhead.ensure_tools()
    rows: list[tuple[str, int, overhead.Result]] = []
    with tempfile.TemporaryDirectory(prefix="ownlight-scaleout-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        with overhead.fake_upstream(workdir) as upstream:
            def load(name: str, url: str, key: str) -> None:
                target = overhead.Target(name, url, key)
                overhead.post_once(target.url, target.key)
                for c in connections:
                    rows.append((name, c, overhead.measure(workdir, target, c, args.duration,
                                                           args.warmup)))

            upstream_target = overhead.Target("upstream", upstream + "/chat/completions", "none")
            for c in connections:
                rows.append(("upstream", c, overhead.measure(workdir, upstream_target, c,
                                                             args.duration, args.warmup)))
            with overhead.ownlight(workdir, upstream, name="SQLite") as single:
                load("SQLite x1", single.url, single.key)
            arguments = ["--no-local", "--upstream", f"fake={upstream}"]
            one = Cluster(instances=1, port=overhead.free_port(), serve_arguments=arguments)
            with running(one):
                load("shared x1", f"{one.servers[0].url}/v1/chat/completions", one.admin_key)
            three = Cluster(instances=3, port=overhead.free_port(), serve_arguments=arguments,
                            extra_toml=RACE_TOML.format(upstream=upstream, price=PRICE,
                                                        limit=LIMIT_USD))
            with running(three):
                load("shared x3 + nginx", f"{three.url}/v1/chat/completions", three.admin_key)
                race = budget_race(three, workdir, args.race)
                delay = revocation_delay(three, workdir)
    print_report(rows, race, delay, args)
    return 0


def print_report(rows: list[tuple[str, int, overhead.Result]], race: dict[str, float],
                 delay: float, args: argparse.Namespace) -> None:
    base = {c: r for name, c, r in rows if name == "upstream"}
    single = {c: r for name, c, r in rows if name == "SQLite x1"}
    print("| target | connections | p50 ms | p99 ms | req/s | added p50 ms | req/s vs SQLite x1 |")
    print("|---|---|---|---|---|---|---|")
    for name, c, r in rows:
        added = r.p50_ms - base[c].p50_ms
        ratio = f"{r.rps / single[c].rps:.0%}" if c in single and name != "upstream" else "-"
        print(f"| {name} | {c} | {r.p50_ms:.3f} | {r.p99_ms:.3f} | {r.rps:,.0f} | "
              f"{added:.3f} | {ratio} |")
    shared_one = [r for name, c, r in rows if name == "shared x1" and c == 1]
    if shared_one:
        added = shared_one[0].p50_ms - base[1].p50_ms
        verdict = "meets" if added < 1.5 else "misses"
        print(f"\n- added p50 at 1 connection on the shared store: {added:.3f} ms "
              f"({verdict} the < 1.5 ms target)")
    print(f"- budget race (Redis): {args.race} requests at once over 3 instances, "
          f"limit {LIMIT_USD} USD (100 requests' real cost): {race['answered']:.0f} answered, "
          f"{race['refused']:.0f} refused (429), {race['other']:.0f} other; spent "
          f"{race['spent']:.2f} USD, {race['over']:.1f} requests' worth over the limit")
    print(f"- revocation: every instance refused the revoked key {delay * 1000:.0f} ms after "
          f"`ownlight keys revoke` returned")
    print(f"- load average on {os.cpu_count()} cores at the end: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; median p50 of the rows: "
          f"{statistics.median(r.p50_ms for _, _, r in rows):.3f} ms")


if __name__ == "__main__":
    raise SystemExit(main())
