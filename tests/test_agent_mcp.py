"""The real agent CLIs with Ownlight's ``/mcp`` as their only MCP server: Claude Code
(``--mcp-config``) and the Codex CLI (``[mcp_servers]``), pinned releases from the npm
registry, run non-interactively. Their model is a scripted cloud behind Ownlight that
calls the MCP tool; the tool is a real stdio MCP server outside the domain, recording
what it receives. The agent reaches the tool only through Ownlight, the e-mail address in
the arguments never reaches the server, and the call is in the ledger under the agent's
key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.agent_upstream import QUOTE, AgentUpstream
from tests.support.recording_proxy import RecordingProxy
from tests.test_agent_clients import agent, quiet_env

UPSTREAM = Path(__file__).parent / "support" / "mcp_upstream.py"
EMAIL = "jane.doe@example.org"
ARGUMENTS = {"name": "ACME", "note": f"mail {EMAIL}"}
# how each agent names a tool of the MCP server it calls "ownlight"
NAMES = ("mcp__ownlight__crm__lookup", "ownlight__crm__lookup")
FIXTURES = Path(__file__).parent / "data" / "agents"
CLAUDE_CODE, CODEX = "2.1.332", "0.171.0"  # the Makefile's pins


@pytest.fixture
def scripted() -> Iterator[AgentUpstream]:
    with AgentUpstream({name: dict(ARGUMENTS) for name in NAMES}) as upstream:
        yield upstream


@pytest.fixture
def mcp_gateway(gateway_factory: Any, scripted: AgentUpstream, tmp_path: Path) -> Any:
    record = tmp_path / "received.jsonl"
    gateway = gateway_factory(f"""
[models.cloud]
backend = "openai"
base_url = "{scripted.url}/v1"
model = "gpt-cloud"
inside_domain = false
retries = 0
[models.claude-cloud]
backend = "anthropic"
base_url = "{scripted.url}"
model = "claude-cloud"
inside_domain = false
retries = 0
[mcp.servers.crm]
command = ["{sys.executable}", "{UPSTREAM}", "{record}"]
inside_domain = false
[[mcp.access]]
who = "*"
tools = ["crm__lookup"]
""")
    hub = gateway.runtime.mcp
    deadline = time.monotonic() + 30
    while hub.upstreams["crm"].client is None:
        assert time.monotonic() < deadline, "the stdio MCP server did not come up"
        time.sleep(0.05)
    admin = gateway.create_key("root", ("admin",))
    approved = httpx.post(f"{gateway.url}/v1/admin/mcp/servers/crm/approve", timeout=30,
                          headers={"Authorization": f"Bearer {admin}"})
    assert approved.status_code == 200, approved.text
    gateway.record = record
    return gateway


def keep(proxy: RecordingProxy, name: str) -> None:
    """With RECORD_AGENT_FIXTURES=1, what the agent sent becomes the fixture that
    tests/test_mcp_gateway.py replays (re-record when the pinned releases change)."""
    if os.environ.get("RECORD_AGENT_FIXTURES") == "1":
        (FIXTURES / name).write_text(json.dumps(proxy.exchanges, indent=1,
                                                ensure_ascii=False) + "\n")


def calls_made(record: Path) -> list[dict[str, Any]]:
    if not record.exists():
        return []
    return [r for r in map(json.loads, record.read_text().splitlines()) if "tool" in r]


def tool_records(gateway: Any, principal: str) -> list[dict[str, Any]]:
    gateway.runtime.pipeline.ledger.flush()
    return [r for r in gateway.runtime.pipeline.ledger.query("kind = 'request'")
            if r.get("principal") == principal and r.get("endpoint") == "mcp"]


def check_the_call(gateway: Any, done: subprocess.CompletedProcess[str], user: str) -> None:
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    made = calls_made(gateway.record)
    assert [m["tool"] for m in made] == ["lookup"]
    assert made[0]["arguments"]["name"] == "ACME"
    assert EMAIL not in json.dumps(made)  # the server outside the domain saw a placeholder
    assert QUOTE in done.stdout and EMAIL in done.stdout  # restored all the way back
    calls = tool_records(gateway, user)
    assert [(c["model"], c["status"]) for c in calls] == [("crm__lookup", 200)]
    assert calls[0]["pseudonymized"] == {"EMAIL_ADDRESS": 1}


def test_claude_code_calls_a_tool_through_ownlights_mcp(mcp_gateway, scripted,
                                                       tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    key = mcp_gateway.create_key("claude-mcp-user")
    proxy = RecordingProxy(mcp_gateway.url).__enter__()
    config = {"mcpServers": {"ownlight": {
        "type": "http", "url": f"{proxy.url}/mcp",
        "headers": {"Authorization": f"Bearer {key}"}}}}
    env = quiet_env(home) | {"ANTHROPIC_BASE_URL": mcp_gateway.url,
                             "ANTHROPIC_AUTH_TOKEN": key, "ANTHROPIC_MODEL": "claude-cloud",
                             "ANTHROPIC_SMALL_FAST_MODEL": "claude-cloud",
                             # MCP tools offered up front rather than found through its
                             # ToolSearch tool, which the scripted model does not call
                             "ENABLE_TOOL_SEARCH": "false"}
    done = subprocess.run(
        [str(agent("claude")), "-p", "--mcp-config", json.dumps(config),
         "--strict-mcp-config", "--allowedTools", NAMES[0], "--max-turns", "4", "--",
         "Look up the customer record for ACME."],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
        stdin=subprocess.DEVNULL)
    offered = {t.get("name") for body in scripted.bodies("/v1/messages")
               for t in body.get("tools") or []}
    names = json.dumps(sorted(n for n in offered if n))
    assert NAMES[0] in offered, names + done.stdout[-2000:] + done.stderr[-2000:]
    proxy.__exit__(None, None, None)
    check_the_call(mcp_gateway, done, "claude-mcp-user")
    # the current revision, stateless: no initialize, one POST per message
    assert [(e["body"]["method"], e["status"], e["headers"]["mcp-protocol-version"])
            for e in proxy.exchanges] == [("server/discover", 200, "2026-07-28"),
                                          ("tools/list", 200, "2026-07-28"),
                                          ("tools/call", 200, "2026-07-28")]
    keep(proxy, f"mcp-claude-code-{CLAUDE_CODE}.json")


def test_codex_calls_a_tool_through_ownlights_mcp(mcp_gateway, scripted, tmp_path) -> None:
    proxy = RecordingProxy(mcp_gateway.url).__enter__()
    codex_home = tmp_path / "home" / ".codex"
    codex_home.mkdir(parents=True)
    (codex_home / "config.toml").write_text(
        'model = "cloud"\nmodel_provider = "ownlight"\n'
        "[model_providers.ownlight]\n"
        f'name = "Ownlight"\nbase_url = "{mcp_gateway.url}/v1"\n'
        'env_key = "OWNLIGHT_API_KEY"\nwire_api = "responses"\n'
        "request_max_retries = 0\nstream_max_retries = 0\n"
        "[analytics]\nenabled = false\n"
        "[mcp_servers.ownlight]\n"
        f'url = "{proxy.url}/mcp"\n'
        'bearer_token_env_var = "OWNLIGHT_API_KEY"\n')
    env = quiet_env(tmp_path / "home") | {
        "CODEX_HOME": str(codex_home),
        "OWNLIGHT_API_KEY": mcp_gateway.create_key("codex-mcp-user")}
    done = subprocess.run(
        [str(agent("codex")), "exec", "--skip-git-repo-check",
         "--dangerously-bypass-approvals-and-sandbox", "-C", str(tmp_path),
         "Look up the customer record for ACME."],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
        stdin=subprocess.DEVNULL)
    offered = [json.dumps(body.get("tools")) for body in scripted.bodies("/chat/completions")]
    assert any("crm__lookup" in o for o in offered), offered[:1]
    proxy.__exit__(None, None, None)
    check_the_call(mcp_gateway, done, "codex-mcp-user")
    # the handshake era: initialize at 2025-06-18, then that version on every request
    assert [(e["body"]["method"], e["status"]) for e in proxy.exchanges] == [
        ("initialize", 200), ("notifications/initialized", 202), ("tools/list", 200),
        ("tools/call", 200)]
    assert proxy.exchanges[0]["body"]["params"]["protocolVersion"] == "2025-06-18"
    keep(proxy, f"mcp-codex-{CODEX}.json")
