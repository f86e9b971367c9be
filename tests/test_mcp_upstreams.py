"""Upstream MCP servers of both kinds: a Streamable HTTP server (outside the domain by
default, its credential a secret reference) and a supervised stdio server that crashes and
is started again. Driven with the ``mcp`` SDK's client through a real gateway."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.support.fake_upstream import free_port
from tests.support.gateway import RunningGateway

pytestmark = pytest.mark.anyio

UPSTREAM = Path(__file__).parent / "support" / "mcp_upstream.py"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def http_upstream(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The test MCP server over Streamable HTTP on a free port: (its URL, its record)."""
    port = free_port()
    record = tmp_path / "http-received.jsonl"
    process = subprocess.Popen([sys.executable, str(UPSTREAM), str(record), "--http", str(port)])
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.1)
        record.write_text("")  # the probe above is not the gateway's
        yield url, record
    finally:
        process.terminate()
        process.wait(10)


def received(record: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in record.read_text().splitlines()] \
        if record.exists() else []


@contextlib.asynccontextmanager
async def client(gateway: RunningGateway, key: str) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}) as http:
        async with Client(streamable_http_client(gateway.url + "/mcp", http_client=http)) as mcp:
            yield mcp


def wait_connected(gateway: RunningGateway, server: str) -> None:
    hub = gateway.runtime.mcp
    assert hub is not None
    deadline = time.monotonic() + 30
    while hub.upstreams[server].client is None:
        assert time.monotonic() < deadline, f"{server} did not connect"
        time.sleep(0.05)


def approve(gateway: RunningGateway, server: str) -> None:
    admin = gateway.create_key("root", ("admin",))
    reply = httpx.post(f"{gateway.url}/v1/admin/mcp/servers/{server}/approve", timeout=30,
                       headers={"Authorization": f"Bearer {admin}"})
    assert reply.status_code == 200, reply.text


async def test_an_http_server_is_outside_the_domain_and_gets_its_secret(
        gateway_factory, http_upstream, monkeypatch) -> None:
    url, record = http_upstream
    monkeypatch.setenv("TOOLS_TOKEN", "tools-secret-1")
    gateway = gateway_factory(f"""
[guard]
untrusted_action = "drop"
[mcp.servers.web]
url = "{url}"
headers = {{ Authorization = {{ "$env" = "TOOLS_TOKEN" }} }}
[[mcp.access]]
who = "*"
tools = "web__*"
""")
    wait_connected(gateway, "web")
    approve(gateway, "web")
    key = gateway.create_key("alice")
    async with client(gateway, key) as mcp:
        result = await mcp.call_tool("web__lookup", {"name": "ACME",
                                                     "note": "write to bob@example.org"})
        injected = await mcp.call_tool("web__fetch_page", {"url": "https://news.example"})
        huge = await mcp.call_tool("web__big", {})  # 10 MB, cut as it streams in
        after = await mcp.call_tool("web__lookup", {"name": "ACME"})
    assert huge.is_error and huge.meta["ownlight/error"] == "tool_output_too_large"
    assert "stopped reading" in huge.content[0].text and not after.is_error
    assert result.content[0].text == "Record for ACME: write to bob@example.org"
    # guard.untrusted_action = "drop": the injected result is withheld, not quoted
    assert "IGNORE ALL PREVIOUS" not in json.dumps(injected.model_dump(mode="json"))
    assert injected.meta["ownlight/guard"] == "dropped"
    rows = received(record)
    calls = [r for r in rows if r.get("tool") == "lookup"]
    assert calls and "bob@example.org" not in json.dumps(calls)  # outside by default
    tokens = {r["authorization"] for r in rows if "authorization" in r}
    assert tokens == {"tools-secret-1"}  # the secret, never the caller's Ownlight key
    assert key not in record.read_text()


async def test_a_crashed_stdio_server_is_started_again(gateway_factory, tmp_path) -> None:
    record = tmp_path / "stdio.jsonl"
    gateway = gateway_factory(f"""
[mcp]
restart_backoff = 0.2
[mcp.servers.local]
command = ["{sys.executable}", "{UPSTREAM}", "{record}"]
[[mcp.access]]
who = "*"
tools = "local__*"
""")
    wait_connected(gateway, "local")
    approve(gateway, "local")
    upstream = gateway.runtime.mcp.upstreams["local"]
    key = gateway.create_key("alice")
    note = "call jane.doe@example.com"
    async with client(gateway, key) as mcp:
        crashed = await mcp.call_tool("local__crash", {})
        assert crashed.is_error  # the call that killed it fails cleanly
        deadline = time.monotonic() + 30
        while upstream.starts < 2:
            assert time.monotonic() < deadline, "the server was not started again"
            await _sleep(0.1)
        wait_connected(gateway, "local")
        again = await mcp.call_tool("local__lookup", {"name": "ACME", "note": note})
    assert again.content[0].text == f"Record for ACME: {note}"
    # inside the domain (a command's default): the arguments arrive as they were sent
    assert [r for r in received(record) if r["tool"] == "lookup"][-1]["arguments"]["note"] == note


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


async def test_knowledge_search_answers_with_the_callers_rights(gateway_factory) -> None:
    """``ownlight__knowledge_search`` over MCP: each caller sees only what it may read."""
    from ownlight.knowledge.base import KnowledgeBase, index_path
    from ownlight.knowledge.sqlite_store import SQLiteKnowledgeStore
    from ownlight.knowledge.types import Document

    gateway = gateway_factory("""
[knowledge]
vectors = false
[[mcp.access]]
who = "*"
tools = "ownlight__*"
""")
    kb = KnowledgeBase(SQLiteKnowledgeStore(index_path(gateway.config.data_dir)), None)
    try:
        kb.ingest_documents("memos", [
            Document(key="open", title="Open memo", text="Lighthouse rota: zebraopenword.",
                     allow=("public",)),
            Document(key="hr", title="HR memo", text="Lighthouse salaries: zebrahrword.",
                     allow=("group:hr",)),
        ], "notes", owner="olivia")
    finally:
        kb.close()
    found = {}
    for name, groups in (("dana", ("hr",)), ("eve", ())):
        async with client(gateway, gateway.create_key(name, groups)) as mcp:
            assert "ownlight__knowledge_search" in {
                t.name for t in (await mcp.list_tools()).tools}
            result = await mcp.call_tool("ownlight__knowledge_search",
                                         {"query": "lighthouse", "collections": ["notes"]})
            bad = await mcp.call_tool("ownlight__knowledge_search", {"query": 3})
        assert bad.is_error
        found[name] = json.loads(result.content[0].text)["results"]
    assert {r["title"] for r in found["dana"]} == {"Open memo", "HR memo"}
    assert {r["title"] for r in found["eve"]} == {"Open memo"}
    assert "zebrahrword" not in json.dumps(found["eve"])


@pytest.mark.parametrize(("toml", "named"), [
    ('[mcp.servers.crm]\ncomand = ["python", "s.py"]\n', "comand"),
    ('[mcp.servers.crm]\ncommand = ["python"]\nurl = "http://127.0.0.1:1/mcp"\n',
     "exactly one of `command` or `url`"),
    ('[mcp.servers.my__crm]\nurl = "http://127.0.0.1:1/mcp"\n', "my__crm"),
    ('[[mcp.access]]\ntools = "crm__*"\n', "who"),
])
def test_a_wrong_mcp_setting_stops_start_up_naming_it(tmp_path, toml, named) -> None:
    from ownlight.config import load_config
    from ownlight.errors import ConfigError

    path = tmp_path / "ownlight.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert named in str(refused.value)
