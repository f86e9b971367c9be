"""A pool of model servers: prefix affinity against round-robin, in one run.

    python bench/pools.py                       # 2 replicas, 8 users, 3 turns each
    python bench/pools.py --replicas 3 --users 9 --turns 4

Why affinity matters: a model server keeps the prompt prefixes it has evaluated in its KV
cache, so the next turn of a conversation skips its long system prompt only on the
server that answered the last turn. Round-robin sends each turn elsewhere; affinity
sends it home.

On this machine: ``--replicas`` ``ownlight serve`` processes on the bundled Gemma 3 270M
(the cores split between them: ``local.threads`` each, ``local.parallel`` slots each),
and one gateway (``ownlight serve --no-local``) in front with two aliases over the same
replicas: ``pool-affinity`` (``replica_routing = "affinity"``) and ``pool-rr``
(``"round_robin"``). ``--users`` users at once, each with a long system prompt of its own
(a staff handbook), ask ``--turns`` questions in a row, each turn carrying the
conversation so far; every answer is streamed. The two take turns for ``--rounds``
rounds (round-robin first in odd rounds, affinity first in even ones), each phase with
handbooks of its own, so no phase finds another's prefixes cached. Printed, over all
rounds: the median and p90 time to first token, total throughput (answer tokens over
the phases' wall time), the prompt tokens the replicas reused from their caches, and the
ratios.

The slots per replica are fewer than the users (6 against 8 by default): a replica asked by
every user, as round-robin asks them, cycles through more prefixes than it can keep.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import HOST, free_port, ownlight_command, running, wait_http  # noqa: E402

TOPICS = ["leave and holidays", "expenses", "security badges", "laptops", "travel",
          "on-call duty", "meeting rooms", "parking", "training budgets", "visitors"]
QUESTIONS = ["Where do I ask about parking?", "Which form is for travel?",
             "Who signs the expenses form?", "When are laptop requests due?",
             "What about visitors?"]


def handbook(user: int, salt: str, rules: int) -> str:
    """A long system prompt of one user's own (about 45 tokens a rule)."""
    lines = [f"Handbook {salt}-{user} for the team of user {user}. Answer from it alone."]
    for i in range(rules):
        topic = TOPICS[(i + user) % len(TOPICS)]
        lines.append(f"Rule {i + 1} on {topic}: requests about {topic} go to desk "
                     f"{(i * 7 + user) % 23 + 1} before day {(i * 5) % 28 + 1} of the month, "
                     f"with form {chr(65 + i % 26)}-{i * 3 + 10}, signed by a team lead.")
    return "\n".join(lines)


def create_key(env: dict[str, str], name: str, admin: bool = False) -> str:
    cmd = [*ownlight_command(), "keys", "create", "--name", name]
    if admin:
        cmd += ["--group", "admin"]
    created = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True,
                             timeout=120)
    return created.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def replica(workdir: Path, i: int, threads: int, parallel: int,
            n_ctx: int) -> Iterator[tuple[str, str, str]]:
    """One ``ownlight serve`` on the embedded model: its URL, a key, an admin key."""
    data_dir = workdir / f"replica-{i}"
    config = workdir / f"replica-{i}.toml"
    config.write_text(
        f'data_dir = "{data_dir}"\n[local]\nthreads = {threads}\nparallel = {parallel}\n'
        "[privacy]\nenabled = false\n[guard]\nenabled = false\n[knowledge]\nenabled = false\n"
        f"[models.local]\nn_ctx = {n_ctx}\n")
    env = {**os.environ, "OWNLIGHT_CONFIG": str(config), "OWNLIGHT_DATA_DIR": str(data_dir)}
    key, admin = create_key(env, "gateway"), create_key(env, "ops", admin=True)
    port = free_port()
    log = workdir / f"replica-{i}.log"
    with running([*ownlight_command(), "serve", "--port", str(port)], log, env) as proc:
        wait_http(f"http://{HOST}:{port}/readyz", proc, log, timeout=300)
        yield f"http://{HOST}:{port}/v1", key, admin


@contextlib.contextmanager
def gateway(workdir: Path, replicas: list[tuple[str, str, str]]) -> Iterator[tuple[str, str]]:
    """``ownlight serve --no-local`` with two pooled aliases over the same replicas."""
    data_dir = workdir / "gateway"
    config = workdir / "gateway.toml"
    env = {**os.environ, "OWNLIGHT_CONFIG": str(config), "OWNLIGHT_DATA_DIR": str(data_dir)}
    lines = [f'data_dir = "{data_dir}"', "[privacy]", "enabled = false", "[guard]",
             "enabled = false", "[knowledge]", "enabled = false"]
    for alias, routing in (("pool-affinity", "affinity"), ("pool-rr", "round_robin")):
        lines += [f"[models.{alias}]", 'backend = "openai"', 'model = "local"',
                  "inside_domain = true", f'replica_routing = "{routing}"', "deadline = 600",
                  "timeout = 600"]
        for i, (url, _, _) in enumerate(replicas):
            lines += [f"[[models.{alias}.replicas]]", f'url = "{url}"',
                      f'api_key = {{"$env" = "BENCH_REPLICA_KEY_{i}"}}']
            env[f"BENCH_REPLICA_KEY_{i}"] = replicas[i][1]
    config.write_text("\n".join(lines) + "\n")
    key = create_key(env, "bench")
    admin = create_key(env, "ops", admin=True)
    port = free_port()
    log = workdir / "gateway.log"
    with running([*ownlight_command(), "serve", "--no-local", "--port", str(port)], log,
                 env) as proc:
        wait_http(f"http://{HOST}:{port}/healthz", proc, log, timeout=120)
        yield f"http://{HOST}:{port}", key + " " + admin


def turn(client: httpx.Client, url: str, model: str, messages: list[dict[str, str]],
         max_tokens: int) -> tuple[float, int, str, str]:
    """One streamed turn: time to first token, answer tokens, answer, replica."""
    body = {"model": model, "messages": messages, "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    first, tokens, text = 0.0, 0, []
    with client.stream("POST", url + "/v1/chat/completions", json=body) as reply:
        reply.raise_for_status()
        where = reply.headers.get("x-ownlight-replica", "?")
        for line in reply.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    first = first or time.perf_counter() - started
                    text.append(piece)
            if event.get("usage"):
                tokens = int(event["usage"]["completion_tokens"])
    return first or time.perf_counter() - started, tokens, "".join(text), where


def phase(url: str, key: str, model: str, users: int, turns: int, rules: int, salt: str,
          max_tokens: int) -> dict[str, Any]:
    """Every user at once, each through its turns; TTFTs, throughput, where they went."""
    ttfts: list[float] = []
    tokens: list[int] = []
    homes: dict[int, list[str]] = {}
    errors: list[str] = []
    lock = threading.Lock()

    def user(u: int) -> None:
        with httpx.Client(timeout=900, headers={"Authorization": f"Bearer {key}"}) as client:
            messages = [{"role": "system", "content": handbook(u, salt, rules)}]
            for t in range(turns):
                messages.append({"role": "user", "content": QUESTIONS[(u + t) % len(QUESTIONS)]})
                try:
                    ttft, count, answer, where = turn(client, url, model, messages, max_tokens)
                except httpx.HTTPError as exc:
                    with lock:
                        errors.append(repr(exc))
                    return
                messages.append({"role": "assistant", "content": answer})
                with lock:
                    ttfts.append(ttft)
                    tokens.append(count)
                    homes.setdefault(u, []).append(where)

    started = time.perf_counter()
    threads = [threading.Thread(target=user, args=(u,)) for u in range(users)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    return {"ttfts": ttfts, "tokens": sum(tokens), "wall": time.perf_counter() - started,
            "errors": errors, "homes": homes}


def summary(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """One routing's phases together."""
    ttfts = sorted(t for p in phases for t in p["ttfts"])
    wall = sum(p["wall"] for p in phases)
    homes = [h for p in phases for h in p["homes"].values()]
    return {"median_ttft": statistics.median(ttfts) if ttfts else float("nan"),
            "p90_ttft": ttfts[int(0.9 * (len(ttfts) - 1))] if ttfts else float("nan"),
            "tokens_per_s": sum(p["tokens"] for p in phases) / wall, "wall": wall,
            "reused": sum(p["reused"] for p in phases),
            "errors": [e for p in phases for e in p["errors"]],
            "moved": sum(len(set(h)) > 1 for h in homes), "conversations": len(homes)}


def reused(replicas: list[tuple[str, str, str]]) -> int:
    """Prompt tokens the replicas served from cached prefixes, so far (their /metrics)."""
    total = 0
    for url, _, admin in replicas:
        text = httpx.get(url.removesuffix("/v1") + "/metrics",
                         headers={"Authorization": f"Bearer {admin}"}).text
        total += sum(int(float(v)) for v in re.findall(
            r"^ownlight_model_prompt_tokens_reused\{[^}]*\} (\S+)$", text, re.M))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0,
                        help="local.threads per replica; 0: the cores split between them")
    parser.add_argument("--parallel", type=int, default=6, help="local.parallel per replica")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--rules", type=int, default=20,
                        help="handbook rules per system prompt (about 45 tokens each)")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds, each running both routings (the order alternates)")
    args = parser.parse_args()
    threads = args.threads or max(1, (os.cpu_count() or 2) // args.replicas)
    with tempfile.TemporaryDirectory(prefix="ownlight-pools-") as tmp, \
            contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        replicas = [stack.enter_context(replica(workdir, i, threads, args.parallel, args.n_ctx))
                    for i in range(args.replicas)]
        url, keys = stack.enter_context(gateway(workdir, replicas))
        key, admin = keys.split()
        with httpx.Client(timeout=600, headers={"Authorization": f"Bearer {key}"}) as warm:
            for _ in range(args.replicas):  # each replica answers once before the clock runs
                turn(warm, url, "pool-rr", [{"role": "user", "content": "Hello"}], 2)
        phases: dict[str, list[dict[str, Any]]] = {"pool-rr": [], "pool-affinity": []}
        for n in range(args.rounds):
            order = list(phases) if n % 2 == 0 else list(phases)[::-1]
            for model in order:
                before = reused(replicas)
                result = phase(url, key, model, args.users, args.turns, args.rules,
                               f"{model}-{n}", args.max_tokens)
                result["reused"] = reused(replicas) - before
                phases[model].append(result)
        results = {model: summary(runs) for model, runs in phases.items()}
        pools = httpx.get(url + "/readyz", headers={"Authorization": f"Bearer {admin}"}
                          ).json().get("replicas", {})
    print(f"{args.replicas} replicas of the bundled model ({threads} thread(s), "
          f"{args.parallel} slots each); {args.rounds} rounds of "
          f"{args.users} users x {args.turns} turns, "
          f"~{args.rules * 45}-token system prompts, {args.max_tokens} answer tokens\n")
    print(f"{'routing':<16}{'median TTFT':>12}{'p90 TTFT':>10}{'tokens/s':>10}"
          f"{'wall s':>8}{'reused':>9}{'errors':>8}")
    for model, r in results.items():
        print(f"{model:<16}{r['median_ttft']:>11.2f}s{r['p90_ttft']:>9.2f}s"
              f"{r['tokens_per_s']:>10.1f}{r['wall']:>8.1f}{r['reused']:>9}"
              f"{len(r['errors']):>8}")
    rr, aff = results["pool-rr"], results["pool-affinity"]
    print(f"\nmedian TTFT, affinity / round-robin: {aff['median_ttft'] / rr['median_ttft']:.2f}")
    print(f"throughput, affinity / round-robin: {aff['tokens_per_s'] / rr['tokens_per_s']:.2f}")
    for model, r in results.items():
        print(f"{model}: conversations that changed replica: {r['moved']} of "
              f"{r['conversations']}")
    for alias, stats in pools.items():
        if alias == "pool-affinity":
            print("affinity hits/spills per replica: " + ", ".join(
                f"{s['replica']} {s['affinity_hits']}/{s['affinity_spills']}" for s in stats))
    for r in results.values():
        for error in r["errors"][:3]:
            print("error:", error)


if __name__ == "__main__":
    main()
