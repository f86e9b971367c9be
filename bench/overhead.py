"""Gateway overhead: a fake upstream alone, then the same upstream through Ownlight.

    python bench/overhead.py                      # 1 and 32 connections, 10 s each
    python bench/overhead.py --duration 5 --connections 1,8,32
    python bench/overhead.py --peer-litellm       # also LiteLLM's proxy, same upstream
    python bench/overhead.py --audit-off --repeat 3   # what the ledger and metrics cost

The upstream is nginx answering every ``POST /v1/chat/completions`` with one fixed
``chat.completion`` body, so it costs almost nothing and whatever is added on top is the
gateway's. Ownlight runs as a real ``ownlight serve`` subprocess (one worker, its own data
dir) and ``wrk`` drives the load. nginx and wrk come from Debian (installed with apt-get
when missing); ``--peer-litellm`` installs ``litellm[proxy]`` into a throwaway venv under
/tmp, never into Ownlight's (kept for the next run; delete the folder to reinstall).
``--audit-off`` also starts Ownlight with its ledger and metrics switched off
(bench/audit_off.py: the same code, records not written, metrics not updated) beside the
real one, and alternates runs between the two ``--repeat`` times per row, so both see the
same machine (other work on it comes and goes); the medians and their ratio are printed.
All traffic stays on 127.0.0.1, every run is bounded in time, and every process the
script starts is stopped when it ends, on error too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
BODY = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}


def _tool(name: str, description: str, properties: dict[str, str]) -> dict[str, object]:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "required": list(properties),
                       "properties": {k: {"type": "string", "description": v}
                                      for k, v in properties.items()}}}}


# What an agent sends on its third turn: three tools, a tool call and its result, one of
# them carrying an e-mail address, so the privacy shield scans every slot and
# pseudonymizes on the way out.
TOOLS_BODY = {
    "model": "fake",
    "tools": [
        _tool("search_orders", "Find a customer's orders by status and date range.",
              {"customer": "Customer e-mail", "status": "open or shipped", "since": "ISO date"}),
        _tool("send_mail", "Send an e-mail to a customer.",
              {"to": "Recipient address", "subject": "Subject line", "body": "Plain text"}),
        _tool("create_ticket", "Open a support ticket for follow-up.",
              {"title": "Short title", "priority": "low, normal or high"}),
    ],
    "messages": [
        {"role": "system", "content": "You are the support assistant of an online shop."},
        {"role": "user", "content": "Which orders of mine are still open?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {
                "name": "search_orders",
                "arguments": '{"customer": "jane.doe@example.com", "status": "open", '
                             '"since": "2026-01-01"}'}}]},
        {"role": "tool", "tool_call_id": "call_1",
         "content": '[{"order": "A-1042", "status": "open", "items": 3}]'},
        {"role": "user", "content": "Please mail me a summary of that order."},
    ],
}
BODIES = {"plain": BODY, "tools": TOOLS_BODY}
REPLY = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "fake",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
}
LITELLM_VENV = Path(tempfile.gettempdir()) / "ownlight-bench-litellm"
LITELLM_KEY = "sk-bench-litellm"
AUDIT_OFF = Path(__file__).with_name("audit_off.py")
NO_AUDIT = "no audit"  # the results' name for Ownlight with its ledger and metrics off


# -- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running(cmd: Sequence[str], log: Path, env: dict[str, str] | None = None,
            ) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server in its own process group and always stop that group afterwards.

    Its own group, so stopping it also stops the workers it forks, and nothing else.
    """
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        yield proc
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen[bytes], grace: float = 8.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Poll ``url`` until it answers 200, failing early if the server died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{Path(proc.args[0]).name} exited early:\n{tail(log)}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s:\n{tail(log)}")


def post_once(url: str, key: str) -> None:
    """One real request, so a misconfigured target fails loudly instead of benchmarking 401s."""
    request = urllib.request.Request(
        url, data=json.dumps(BODY).encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{url} answered {exc.code}: {exc.read()[:300]!r}") from exc


def tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


# -- tools -------------------------------------------------------------------------------


def ensure_tools() -> None:
    """nginx and wrk from Debian, installed only when missing."""
    missing = [pkg for pkg, exe in (("nginx-light", "nginx"), ("wrk", "wrk"))
               if shutil.which(exe) is None and not Path("/usr/sbin", exe).exists()]
    if not missing:
        return
    print(f"installing {' '.join(missing)} with apt-get ...", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                   check=True, env=env)


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


# -- the fake upstream -------------------------------------------------------------------


NGINX_CONF = """\
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    server {{
        listen {host}:{port};
        default_type application/json;
        location = /v1/chat/completions {{ return 200 '{reply}'; }}
        location = /health {{ return 200 '{{"status":"ok"}}'; }}
    }}
}}
"""


@contextlib.contextmanager
def fake_upstream(workdir: Path) -> Iterator[str]:
    """nginx with its own prefix and config (never the system one); yields its /v1 URL.

    One worker and keep-alive connections that are never recycled, so neither the
    upstream nor connection churn limits what is measured on top of it.
    """
    prefix = workdir / "nginx"
    prefix.mkdir()
    prefix.chmod(0o755)  # nginx workers drop to an unprivileged user
    port = free_port()
    conf = prefix / "nginx.conf"
    reply = json.dumps(REPLY, separators=(",", ":"))
    conf.write_text(NGINX_CONF.format(prefix=prefix, host=HOST, port=port, reply=reply))
    cmd = [nginx_binary(), "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"]
    log = workdir / "nginx.log"
    with running(cmd, log) as proc:
        wait_http(f"http://{HOST}:{port}/health", proc, log, timeout=10)
        yield f"http://{HOST}:{port}/v1"


# -- the gateways ------------------------------------------------------------------------


@dataclass
class Target:
    """Something to load: its chat completions URL and the key it wants."""

    name: str
    url: str
    key: str
    body: str = "plain"  # which of BODIES it is loaded with


def ownlight_command() -> list[str]:
    """The ``ownlight`` console script of the Python running this script."""
    script = Path(sys.executable).with_name("ownlight")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "ownlight.cli"]


@contextlib.contextmanager
def ownlight(workdir: Path, upstream: str, name: str = "Ownlight",
             source: Path | None = None, audit: bool = True) -> Iterator[Target]:
    """``ownlight serve --no-local --upstream fake=...`` with its own data dir, one worker.

    ``source``: another checkout's ``src`` to run instead (the ``--baseline`` revision),
    with this environment's dependencies. ``audit=False``: through bench/audit_off.py.
    """
    data_dir = workdir / f"{name.lower().replace('@', '-')}-data"
    env = {**os.environ, "OWNLIGHT_DATA_DIR": str(data_dir)}
    env.pop("OWNLIGHT_CONFIG", None)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    prefix = ownlight_command() if source is None else [sys.executable, "-m", "ownlight.cli"]
    created = subprocess.run([*prefix, "keys", "create", "--name", "bench"],
                             env=env, check=True, capture_output=True, text=True, timeout=60)
    key = created.stdout.strip().splitlines()[-1]
    port = free_port()
    serve = ["serve", "--no-local", "--upstream", f"fake={upstream}", "--port", str(port)]
    cmd = [*ownlight_command(), *serve]
    if source is not None:  # the console script would import the installed checkout
        cmd = [sys.executable, "-m", "ownlight.cli", *serve]
    if not audit:
        cmd = [sys.executable, str(AUDIT_OFF), *serve]
    log = workdir / f"{name.lower().replace('@', '-')}.log"
    with running(cmd, log, env) as proc:
        wait_http(f"http://{HOST}:{port}/readyz", proc, log, timeout=60)
        target = Target(name, f"http://{HOST}:{port}/v1/chat/completions", key)
        post_once(target.url, target.key)
        yield target


LITELLM_CONFIG = """\
model_list:
  - model_name: fake
    litellm_params:
      model: openai/fake
      api_base: {upstream}
      api_key: sk-none
general_settings:
  master_key: {key}
"""


@contextlib.contextmanager
def worktree(rev: str, workdir: Path) -> Iterator[Path]:
    """A checkout of ``rev`` (git worktree), removed afterwards; yields its ``src``."""
    root = Path(__file__).resolve().parents[1]
    path = workdir / "baseline"
    subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(path), rev],
                   check=True, capture_output=True, timeout=120)
    try:
        yield path / "src"
    finally:
        subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(path)],
                       capture_output=True, timeout=120)


def litellm_binary(install_timeout: float) -> Path:
    """LiteLLM's proxy in a venv of its own under /tmp, made once with pip and then reused."""
    binary = LITELLM_VENV / "bin" / "litellm"
    if binary.exists():
        return binary
    print(f"installing litellm[proxy] into {LITELLM_VENV} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
    subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"],
                   check=True, timeout=install_timeout)
    return binary


class PeerUnavailable(Exception):
    """The peer could not be installed or started: reported, the rest is still measured."""


@contextlib.contextmanager
def litellm(workdir: Path, upstream: str, install_timeout: float) -> Iterator[Target]:
    """LiteLLM's proxy, one worker, the same fake upstream behind the same alias."""
    try:
        binary = litellm_binary(install_timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        raise PeerUnavailable(f"could not install litellm[proxy]: {exc}") from exc
    conf = workdir / "litellm.yaml"
    conf.write_text(LITELLM_CONFIG.format(upstream=upstream, key=LITELLM_KEY))
    port = free_port()
    # The local cost map and no telemetry: the proxy must not reach for the network.
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False",
           "LITELLM_LOG": "ERROR"}
    cmd = [str(binary), "--config", str(conf), "--host", HOST, "--port", str(port),
           "--num_workers", "1"]
    log = workdir / "litellm.log"
    with running(cmd, log, env) as proc:
        target = Target("LiteLLM", f"http://{HOST}:{port}/v1/chat/completions", LITELLM_KEY)
        try:
            wait_http(f"http://{HOST}:{port}/health/liveliness", proc, log, timeout=180)
            post_once(target.url, target.key)
        except RuntimeError as exc:
            raise PeerUnavailable(f"LiteLLM did not start: {exc}") from exc
        yield target


# -- load --------------------------------------------------------------------------------


WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass
class Result:
    p50_ms: float
    p99_ms: float
    rps: float
    errors: int


def wrk_script(workdir: Path, target: Target) -> Path:
    path = workdir / f"{target.name.lower()}-{target.body}.lua"
    # a quoted Lua string
    body = json.dumps(json.dumps(BODIES[target.body], separators=(",", ":")))
    path.write_text(WRK_SCRIPT.format(body=body, key=target.key))
    return path


def run_wrk(url: str, script: Path, connections: int, seconds: float) -> str:
    """One bounded wrk run; one thread, so the load generator takes one core at most."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
           "--latency", "-s", str(script), url]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True,
                          timeout=seconds + 30)
    return done.stdout


def parse_wrk(output: str) -> Result:
    """p50, p99 (``--latency`` distribution), requests/s, and failed requests of any kind."""

    def latency(pct: str) -> float:
        match = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
        if match is None:
            raise ValueError(f"no {pct}% latency in wrk output:\n{output}")
        return float(match.group(1)) * _UNITS[match.group(2)]

    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if rps is None:
        raise ValueError(f"no Requests/sec in wrk output:\n{output}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors += int(non2xx.group(1)) if non2xx else 0
    return Result(latency("50"), latency("99"), float(rps.group(1)), errors)


def measure(workdir: Path, target: Target, connections: int, seconds: float,
            warmup: float) -> Result:
    """Warm up (connection pools, lazy imports, first-call caches), then one measured run."""
    script = wrk_script(workdir, target)
    if warmup > 0:
        run_wrk(target.url, script, connections, warmup)
    result = parse_wrk(run_wrk(target.url, script, connections, seconds))
    print(f"  {target.name:<9} {target.body:<6} c={connections:<3} p50 {result.p50_ms:7.3f} ms  "
          f"p99 {result.p99_ms:7.3f} ms  {result.rps:9.0f} req/s  errors {result.errors}"
          f"  (load {load()})", file=sys.stderr)
    return result


def measure_all(workdir: Path, target: Target, counts: Sequence[int],
                args: argparse.Namespace) -> dict[Row, Result]:
    """Every connection count with the plain request; the tool-bearing one at 1 connection."""
    rows: dict[Row, Result] = {}
    for body in BODIES:
        loaded = Target(target.name, target.url, target.key, body)
        for c in counts if body == "plain" else [1]:
            rows[(body, c)] = measure(workdir, loaded, c, args.duration, args.warmup)
    return rows


def measure_alternating(workdir: Path, targets: Sequence[Target], counts: Sequence[int],
                        args: argparse.Namespace) -> dict[str, dict[Row, Result]]:
    """Each row on every target in turn, ``--repeat`` times (A B A B ...): the medians.

    Alternating spreads whatever else the machine does over all targets alike, where
    measuring one target after the other would hand it to whichever ran at the time.
    """
    out: dict[str, dict[Row, Result]] = {t.name: {} for t in targets}
    for body in BODIES:
        for c in counts if body == "plain" else [1]:
            runs: dict[str, list[Result]] = {t.name: [] for t in targets}
            for t in targets:
                measure(workdir, Target(t.name, t.url, t.key, body), c, args.warmup, 0)
            for _ in range(args.repeat):
                for t in targets:
                    loaded = Target(t.name, t.url, t.key, body)
                    runs[t.name].append(measure(workdir, loaded, c, args.duration, 0))
            for name, results in runs.items():
                out[name][(body, c)] = Result(
                    statistics.median(r.p50_ms for r in results),
                    statistics.median(r.p99_ms for r in results),
                    statistics.median(r.rps for r in results), sum(r.errors for r in results))
    return out


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- report ------------------------------------------------------------------------------


Row = tuple[str, int]  # (request body, connections)
Results = dict[str, dict[Row, Result]]  # target name -> row -> result


def table(results: Results) -> str:
    """The README's markdown table; LiteLLM columns only when it was measured."""
    lite_by = results.get("LiteLLM")
    base_name = next((n for n in results if n.startswith("Ownlight@")), None)
    head = ["request", "connections", "upstream p50 / p99 ms", "upstream req/s",
            "Ownlight p50 / p99 ms", "Ownlight req/s", "added p50 ms", "Ownlight / upstream"]
    if lite_by:
        head += ["LiteLLM p50 / p99 ms", "LiteLLM req/s", "Ownlight / LiteLLM"]
    if base_name:
        head += [f"{base_name} p50 ms", f"{base_name} req/s", "Ownlight / baseline req/s"]
    off_by = results.get(NO_AUDIT)
    if off_by:
        head += ["audit off p50 / p99 ms", "audit off req/s", "p50 added by audit ms",
                 "audit on / off req/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, up in results["upstream"].items():
        own = results["Ownlight"][row]
        cells = [row[0], str(row[1]), f"{up.p50_ms:.3f} / {up.p99_ms:.3f}", f"{up.rps:,.0f}",
                 f"{own.p50_ms:.3f} / {own.p99_ms:.3f}", f"{own.rps:,.0f}",
                 f"{own.p50_ms - up.p50_ms:.3f}", f"{own.rps / up.rps:.1%}"]
        if lite_by:
            lite = lite_by[row]
            cells += [f"{lite.p50_ms:.3f} / {lite.p99_ms:.3f}", f"{lite.rps:,.0f}",
                      f"{own.rps / lite.rps:.1f}x"]
        if base_name:
            base = results[base_name][row]
            cells += [f"{base.p50_ms:.3f}", f"{base.rps:,.0f}", f"{own.rps / base.rps:.1%}"]
        if off_by:
            off = off_by[row]
            cells += [f"{off.p50_ms:.3f} / {off.p99_ms:.3f}", f"{off.rps:,.0f}",
                      f"{own.p50_ms - off.p50_ms:.3f}", f"{own.rps / off.rps:.1%}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(results: Results) -> list[str]:
    """The targets: added p50 < 1 ms at 1 connection (plain and tools), > 1,500 req/s at 32."""
    notes = []
    up, own = results["upstream"], results["Ownlight"]
    for body in BODIES:
        if (body, 1) in own:
            added = own[(body, 1)].p50_ms - up[(body, 1)].p50_ms
            notes.append(f"added p50 at 1 connection, {body} request: {added:.3f} ms "
                         f"({'meets' if added < 1 else 'misses'} the < 1 ms target)")
    if ("plain", 32) in own:
        rps = own[("plain", 32)].rps
        notes.append(f"Ownlight at 32 connections: {rps:,.0f} req/s "
                     f"({'meets' if rps > 1500 else 'misses'} the > 1,500 req/s target)")
    for row, off in results.get(NO_AUDIT, {}).items():
        on = own[row]
        ratio, added = on.rps / off.rps, on.p50_ms - off.p50_ms
        ok = ratio >= 0.9 and added < 1
        notes.append(f"audit ledger and metrics, {row[0]} request at {row[1]} connections: "
                     f"{ratio:.1%} of the throughput without them, {added:+.3f} ms at p50 "
                     f"({'meets' if ok else 'misses'} the within 10% and < 1 ms target)")
    failed = sum(r.errors for by in results.values() for r in by.values())
    if failed:
        notes.append(f"WARNING: {failed} failed requests (socket errors or non-2xx)")
    return notes


# -- main --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", default="1,32",
                        help="comma-separated connection counts (default 1,32)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per run")
    parser.add_argument("--peer-litellm", action="store_true",
                        help="also measure LiteLLM's proxy (installed into a venv under /tmp)")
    parser.add_argument("--litellm-install-timeout", type=float, default=900.0)
    parser.add_argument("--audit-off", action="store_true",
                        help="also run Ownlight with its ledger and metrics off "
                             "(bench/audit_off.py), alternating runs with the real one")
    parser.add_argument("--repeat", type=int, default=3,
                        help="alternating runs per row with --audit-off (medians reported)")
    parser.add_argument("--baseline", metavar="REV",
                        help="also measure Ownlight at git revision REV (a worktree under /tmp), "
                             "e.g. the commit before a change, to see what the change costs")
    return parser.parse_args(argv)


def stop_on_sigterm() -> None:
    """A SIGTERM unwinds like Ctrl-C, so every ``finally`` stops its process."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def run(args: argparse.Namespace, counts: Sequence[int]) -> Results:
    """Upstream alone, then each gateway in turn: only the one being measured is running."""
    results: Results = {}
    with tempfile.TemporaryDirectory(prefix="ownlight-bench-") as tmp:
        workdir = Path(tmp)
        with fake_upstream(workdir) as upstream:
            direct = Target("upstream", upstream + "/chat/completions", "none")
            results["upstream"] = measure_all(workdir, direct, counts, args)
            if args.audit_off:
                with ownlight(workdir, upstream) as on, \
                        ownlight(workdir, upstream, NO_AUDIT.replace(" ", "-"),
                                 audit=False) as off:
                    off.name = NO_AUDIT
                    results.update(measure_alternating(workdir, [on, off], counts, args))
            else:
                with ownlight(workdir, upstream) as target:
                    results["Ownlight"] = measure_all(workdir, target, counts, args)
            if args.baseline:
                with worktree(args.baseline, workdir) as source:
                    name = f"Ownlight@{args.baseline[:10]}"
                    with ownlight(workdir, upstream, name, source) as target:
                        results[name] = measure_all(workdir, target, counts, args)
            if args.peer_litellm:
                try:
                    with litellm(workdir, upstream, args.litellm_install_timeout) as target:
                        results["LiteLLM"] = measure_all(workdir, target, counts, args)
                except PeerUnavailable as exc:
                    print(f"LiteLLM not measured: {exc}", file=sys.stderr)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    counts = [int(c) for c in args.connections.split(",")]
    stop_on_sigterm()
    ensure_tools()
    before = load()
    results = run(args, counts)
    print(table(results))
    print()
    print(f"- load average (1, 5, 15 min) on {os.cpu_count()} cores: {before} before, "
          f"{load()} after; wrk {args.duration:g} s per run after {args.warmup:g} s warm-up")
    for note in verdict(results):
        print(f"- {note}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the servers are already stopped
        sys.exit(130)
