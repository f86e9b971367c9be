"""What Ownlight's ``/mcp`` adds to a small tool call, against the same call made directly.

    PYTHONPATH=src:. python bench/mcp.py [--calls 1000]

Starts the tests' MCP server (``tests/support/mcp_upstream.py``) over Streamable HTTP and an
``ownlight serve`` in front of it (the server marked outside the domain, so the shield
scans and pseudonymizes the arguments; the guard reads the result), approves the server's
tools, then times ``tools/call`` of ``lookup`` with the ``mcp`` SDK's client both ways, in
one run, calls interleaved: directly on the server, and as ``crm__lookup`` through
Ownlight. The arguments carry an e-mail address, so every call through Ownlight is
pseudonymized on its way out and restored on its way back. Prints p50 and p95 of each
path, what Ownlight adds, and the ratio. Loopback only, one client at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

# This file is bench/mcp.py: run as a script, its folder would shadow the ``mcp`` SDK.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]

import httpx2  # noqa: E402
from mcp import Client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from tests.support.loopback import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = ROOT / "tests" / "support" / "mcp_upstream.py"
ARGUMENTS = {"name": "ACME Ltd", "note": "call back Maria at maria.gonzalez@example.com"}


@contextlib.contextmanager
def process(cmd: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{url} exited:\n{log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{url} did not come up:\n{log.read_text()[-2000:]}")


def ownlight(*args: str, env: dict[str, str]) -> str:
    return subprocess.run([sys.executable, "-m", "ownlight.cli", *args], env=env, check=True,
                          capture_output=True, text=True, timeout=120).stdout


async def timings(direct_url: str, via_url: str, key: str, calls: int
                  ) -> tuple[list[float], list[float]]:
    """Milliseconds per call: (direct, through Ownlight), interleaved."""
    direct: list[float] = []
    via: list[float] = []
    async with contextlib.AsyncExitStack() as stack:
        plain = await stack.enter_async_context(httpx2.AsyncClient())
        keyed = await stack.enter_async_context(
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}))
        server = await stack.enter_async_context(
            Client(streamable_http_client(direct_url, http_client=plain)))
        gateway = await stack.enter_async_context(
            Client(streamable_http_client(via_url, http_client=keyed)))
        paths = ((server, "lookup", direct), (gateway, "crm__lookup", via))
        for _ in range(50):  # warm both paths (connections, caches, the guard's model)
            for client, name, _ in paths:
                await client.call_tool(name, ARGUMENTS)
        for _ in range(calls):
            for client, name, into in paths:
                started = time.perf_counter()
                result = await client.call_tool(name, ARGUMENTS)
                into.append((time.perf_counter() - started) * 1000)
                if result.is_error:
                    sys.exit(f"{name} failed: {result}")
        check = await gateway.call_tool("crm__lookup", ARGUMENTS)
        text = getattr(check.content[0], "text", "")
        assert "maria.gonzalez@example.com" in text, text  # restored on the way back
    return direct, via


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--inside-domain", action="store_true",
                        help="mark the server inside the domain: no pseudonymization "
                             "(what the shield costs is the difference)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ownlight-bench-mcp-") as tmp:
        work = Path(tmp)
        record = work / "received.jsonl"
        upstream_port, port = free_port(), free_port()
        config = work / "ownlight.toml"
        config.write_text(f"""data_dir = "{work / 'data'}"
[local]
enabled = false
[knowledge]
enabled = false
[mcp.servers.crm]
url = "http://127.0.0.1:{upstream_port}/mcp"
inside_domain = {str(args.inside_domain).lower()}
[[mcp.access]]
who = "*"
tools = ["crm__*"]
""")
        env = {**os.environ, "OWNLIGHT_CONFIG": str(config)}
        env.pop("OWNLIGHT_DATA_DIR", None)
        upstream_cmd = [sys.executable, str(UPSTREAM), str(record), "--http", str(upstream_port)]
        with process(upstream_cmd, work / "upstream.log", env) as upstream:
            direct_url = f"http://127.0.0.1:{upstream_port}/mcp"
            wait_for(direct_url, upstream, work / "upstream.log")
            ownlight("mcp", "approve", "crm", env=env)
            key = ownlight("keys", "create", "--name", "bench", env=env).strip().splitlines()[-1]
            serve = [sys.executable, "-m", "ownlight.cli", "serve", "--no-local", "--port",
                     str(port)]
            with process(serve, work / "ownlight.log", env) as server:
                wait_for(f"http://127.0.0.1:{port}/readyz", server, work / "ownlight.log")
                direct, via = asyncio.run(timings(direct_url, f"http://127.0.0.1:{port}/mcp",
                                                  key, args.calls))
            received = [json.loads(line) for line in record.read_text().splitlines()]
            rows = json.loads(ownlight("audit", "list", "--limit", str(args.calls), "--json",
                                       env=env))
            hub = [r["latency_ms"] for r in rows if r.get("model") == "crm__lookup"]
    where = "inside" if args.inside_domain else "outside"
    print(f"{args.calls} calls of lookup each way, interleaved, one client, loopback; "
          f"the server {where} the domain")
    print(f"{'path':<24}{'p50 ms':>9}{'p95 ms':>9}")
    for name, values in (("direct to the server", direct), ("through Ownlight", via)):
        print(f"{name:<24}{pct(values, 50):>9.3f}{pct(values, 95):>9.3f}")
    print(f"{'  of which the hub':<24}{pct(hub, 50):>9.3f}{pct(hub, 95):>9.3f}"
          "  (access, shield, guard, ledger and its own call to the server)")
    requests = sum("authorization" in r for r in received)
    calls = sum(r.get("tool") == "lookup" for r in received)
    print(f"HTTP requests the server received: {requests} for {calls} calls "
          f"({len(direct) + 51} direct, {len(via) + 51} through Ownlight, plus its own checks)")
    added50 = pct(via, 50) - pct(direct, 50)
    added95 = pct(via, 95) - pct(direct, 95)
    print(f"added by Ownlight: p50 {added50:.3f} ms, p95 {added95:.3f} ms; "
          f"ratio (p50 through / direct) {pct(via, 50) / pct(direct, 50):.2f}x")


if __name__ == "__main__":
    main()
