"""Upstream OAuth for MCP servers: each user authorizes Ownlight once at an OAuth-protected
server (PKCE S256, ``resource``, dynamic client registration), and every call carries that
user's own token, never the caller's Ownlight key and never another user's token. Driven
with the ``mcp`` SDK's client against a real gateway, a real OAuth-protected MCP server and
its authorization server (``tests/support/mcp_oauth_upstream.py``)."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import upstream_toml
from tests.support.fake_upstream import free_port
from tests.support.gateway import RunningGateway
from tests.test_mcp_upstreams import approve, client, received, wait_connected
from tests.test_responses_mcp import ScriptedModel

pytestmark = pytest.mark.anyio

SERVER = Path(__file__).parent / "support" / "mcp_oauth_upstream.py"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def oauth_upstream(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The OAuth-protected MCP server and its authorization server: (MCP URL, record)."""
    port = free_port()
    record = tmp_path / "oauth-received.jsonl"
    process = subprocess.Popen([sys.executable, str(SERVER), str(record), str(port)])
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "/.well-known/oauth-authorization-server", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.1)
        yield base + "/mcp", record
    finally:
        process.terminate()
        process.wait(10)


def authorize(url: str, key: str) -> httpx.Response:
    """What a user does with the authorization URL: open it with their Ownlight key and let
    the redirects run (Ownlight → authorization server → Ownlight's callback)."""
    return httpx.get(url, headers={"Authorization": f"Bearer {key}"}, follow_redirects=True,
                     timeout=30)


def issued(record: Path) -> list[str]:
    return [r["access_token"] for r in received(record) if r.get("as") == "issued"]


def bearers(record: Path) -> list[str]:
    return [r["authorization"].removeprefix("Bearer ") for r in received(record)
            if "authorization" in r]


def admin_acts(gateway: RunningGateway, tmp_path: Path,
               action: str | None) -> list[dict[str, Any]]:
    """The ledger's admin records of ``action`` (or, for None, every record)."""
    env = {**os.environ, "OWNLIGHT_CONFIG": str(tmp_path / "ownlight-0.toml")}
    kind = ["--kind", "admin"] if action else []
    deadline = time.monotonic() + 10
    while True:
        done = subprocess.run([sys.executable, "-m", "ownlight.cli", "audit", "list", *kind,
                               "--limit", "1000", "--json"], env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        acts = [a for a in json.loads(done.stdout) if action is None
                or a.get("action") == action]
        if acts or time.monotonic() > deadline:
            return acts
        time.sleep(0.2)


async def test_each_user_authorizes_and_calls_with_their_own_token(
        gateway_factory, oauth_upstream, tmp_path) -> None:
    url, record = oauth_upstream
    with ScriptedModel() as model:  # the Responses loop's model, asking for the call
        await _the_whole_flow(gateway_factory, url, record, model.url, tmp_path)


async def _the_whole_flow(gateway_factory, url: str, record: Path, model_url: str,
                          tmp_path: Path) -> None:
    gateway = gateway_factory(f"""
[mcp.servers.web]
url = "{url}"
oauth = true
[[mcp.access]]
who = "*"
tools = "web__*"
""" + upstream_toml("scripted", model_url, "scripted", retries=0))
    alice, bob = gateway.create_key("alice"), gateway.create_key("bob")

    # no token yet: a clean tool error that says where to authorize
    async with client(gateway, alice) as mcp:
        first = await mcp.call_tool("web__lookup", {"name": "ACME"})
    assert first.is_error and first.meta["ownlight/error"] == "authorization_required"
    start = first.meta["authorization_url"]
    assert start == f"{gateway.url}/mcp/oauth/web/start"
    assert httpx.get(start, timeout=30).status_code == 401  # the start needs a key

    done = authorize(start, alice)
    assert done.status_code == 200 and done.json() == {
        "server": "web", "principal": "alice", "authorized": True}
    rows = received(record)
    asked = next(r["params"] for r in rows if r.get("as") == "authorize")
    assert asked["code_challenge_method"] == "S256" and asked["resource"] == url
    assert asked["redirect_uri"] == f"{gateway.url}/mcp/oauth/callback"
    assert any(r.get("as") == "register" for r in rows)  # no client_id configured: RFC 7591
    exchange = next(r["form"] for r in rows if r.get("as") == "token")
    assert exchange["grant_type"] == "authorization_code" and exchange["resource"] == url
    alice_token = issued(record)[-1]

    wait_connected(gateway, "web")  # the tools are listed with a user's token
    approve(gateway, "web")
    async with client(gateway, alice) as mcp:
        ok = await mcp.call_tool("web__lookup", {"name": "ACME", "note": "first"})
    assert not ok.is_error and ok.content[0].text == "Record for ACME: first"

    # bob is not served with alice's token: he authorizes himself
    async with client(gateway, bob) as mcp:
        refused = await mcp.call_tool("web__lookup", {"name": "Bob Corp"})
    assert refused.meta["ownlight/error"] == "authorization_required"
    assert not [r for r in received(record) if r.get("tool") == "lookup"
                and r["arguments"]["name"] == "Bob Corp"]
    # the same in the Responses tool loop: a failed mcp_call that says where to authorize
    response = gateway.client(bob, timeout=60).responses.create(
        model="scripted", input='call web__lookup {"name": "Bob Corp"}',
        tools=[{"type": "mcp", "server_label": "web", "require_approval": "never"}])
    call = next(o for o in response.output if o.type == "mcp_call")
    assert call.status == "failed" and "/mcp/oauth/web/start" in json.dumps(
        call.model_dump(mode="json"))
    calls_before = len(bearers(record))
    # bob starts from the console: his session cookie instead of his key
    from ownlight.auth import hash_key
    from ownlight.console import session

    cookie, _ = session.rows(gateway.runtime).open(hash_key(bob), 3600)
    via_console = httpx.get(start, cookies={session.COOKIE: cookie}, follow_redirects=True,
                            timeout=30)
    assert via_console.json()["principal"] == "bob"
    bob_token = issued(record)[-1]
    assert bob_token != alice_token
    async with client(gateway, bob) as mcp:
        assert not (await mcp.call_tool("web__lookup", {"name": "Bob Corp"})).is_error
    async with client(gateway, alice) as mcp:
        assert not (await mcp.call_tool("web__lookup", {"name": "ACME"})).is_error
    # each call's connection carried its caller's token (listing uses the latest user's)
    sent = bearers(record)[calls_before:]
    assert bob_token in sent and alice_token in sent
    # never an Ownlight key upstream, at the MCP server or the authorization server
    text = record.read_text()
    assert alice not in text and bob not in text

    # an expired access token is refreshed with the refresh token (and ``resource``)
    httpx.post(url.removesuffix("/mcp") + "/expire", timeout=10)
    async with client(gateway, alice) as mcp:
        again = await mcp.call_tool("web__lookup", {"name": "ACME", "note": "later"})
    assert not again.is_error and again.content[0].text == "Record for ACME: later"
    refreshes = [r["form"] for r in received(record) if r.get("as") == "token"
                 and r["form"]["grant_type"] == "refresh_token"]
    assert refreshes and refreshes[0]["resource"] == url

    # a forged or replayed state is refused
    forged = httpx.get(f"{gateway.url}/mcp/oauth/callback?code=abc&state=forged", timeout=10)
    assert forged.status_code == 400 and "not valid" in forged.text
    callback = str(done.history[-1].headers["location"])  # alice's, used once already
    assert callback.startswith(f"{gateway.url}/mcp/oauth/callback?code=")
    replayed = httpx.get(callback, timeout=10)
    assert replayed.status_code == 400 and "was used" in replayed.text

    # tokens are encrypted at rest: no issued token appears in the database files
    data = gateway.config.data_dir
    db = sqlite3.connect(data / "state.db")
    stored = db.execute("SELECT principal, sealed FROM mcp_oauth_tokens WHERE server = 'web'"
                        " ORDER BY principal").fetchall()
    db.close()
    assert [p for p, _ in stored] == ["alice", "bob"]
    raw = b"".join(p.read_bytes() for p in data.glob("state.db*"))
    secrets = issued(record) + [r["refresh_token"] for r in received(record)
                                if r.get("as") == "issued"]
    for token in secrets:
        assert token.encode() not in raw and all(token not in s for _, s in stored)
    assert (data / "mcp-token.key").stat().st_mode & 0o777 == 0o600

    # the user's own DELETE forgets the tokens: the next call asks again
    gone = httpx.delete(f"{gateway.url}/mcp/oauth/web", timeout=10,
                        headers={"Authorization": f"Bearer {alice}"})
    assert gone.json()["disconnected"] is True
    async with client(gateway, alice) as mcp:
        after = await mcp.call_tool("web__lookup", {"name": "ACME"})
    assert after.meta["ownlight/error"] == "authorization_required"

    # a token about to expire is refreshed before the call, without a 401 first
    httpx.post(url.removesuffix("/mcp") + "/short", timeout=10)
    authorize(start, alice)
    grants = len([r for r in received(record) if r.get("as") == "token"])
    async with client(gateway, alice) as mcp:
        assert not (await mcp.call_tool("web__lookup", {"name": "ACME"})).is_error
    latest = [r["form"]["grant_type"] for r in received(record) if r.get("as") == "token"]
    assert latest[grants:][:1] == ["refresh_token"]

    # an operator disconnects a user from the command line
    env = {**os.environ, "OWNLIGHT_CONFIG": str(tmp_path / "ownlight-0.toml")}
    done = subprocess.run([sys.executable, "-m", "ownlight.cli", "mcp", "disconnect", "web",
                           "--user", "bob"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "bob disconnected" in done.stdout, done.stderr
    async with client(gateway, bob) as mcp:
        after = await mcp.call_tool("web__lookup", {"name": "Bob Corp"})
    assert after.meta["ownlight/error"] == "authorization_required"

    calls = [r for r in admin_acts(gateway, tmp_path, None) if r.get("kind") == "request"
             and r.get("model") == "web__lookup" and r.get("status") == 200]
    assert {r["principal"] for r in calls} == {"alice", "bob"}
    assert all(r["replica"] == f"oauth:{r['principal']}" for r in calls)  # whose token
    refusals = [r for r in admin_acts(gateway, tmp_path, None) if r.get("kind") == "request"
                and r.get("error_code") == "authorization_required"]
    assert refusals and {r["status"] for r in refusals} == {401}

    authorized = admin_acts(gateway, tmp_path, "mcp.oauth.authorize")
    assert {a["principal"] for a in authorized} == {"alice", "bob"}
    assert admin_acts(gateway, tmp_path, "mcp.oauth.refresh")
    disconnects = admin_acts(gateway, tmp_path, "mcp.oauth.disconnect")
    assert {(a["principal"], a["details"]["by"]) for a in disconnects} == {
        ("alice", "alice"), ("bob", "cli")}
    assert admin_acts(gateway, tmp_path, "mcp.oauth.failed")  # the forged state
    for act in authorized:
        assert not any(t in json.dumps(act) for t in issued(record))


def test_the_token_key_comes_from_the_setting_or_a_private_key_file(tmp_path, monkeypatch) -> None:
    from ownlight.config.secrets import Secret
    from ownlight.errors import ConfigError
    from ownlight.mcp.token_box import TokenBox, load_key

    made = load_key(None, tmp_path / "data")
    assert (tmp_path / "data" / "mcp-token.key").stat().st_mode & 0o777 == 0o600
    assert load_key(None, tmp_path / "data") == made  # made once, then read
    monkeypatch.setenv("MCP_TOKEN_KEY", base64.b64encode(b"k" * 32).decode())
    shared = load_key(Secret("env", "MCP_TOKEN_KEY"), tmp_path / "other")
    assert shared == b"k" * 32 and not (tmp_path / "other").exists()
    sealed = TokenBox(shared).seal("web", "alice", {"access_token": "t"})
    assert TokenBox(made).open("web", "alice", sealed) is None  # another key: no token
    monkeypatch.setenv("MCP_TOKEN_KEY", "too-short")
    with pytest.raises(ConfigError, match="token_key"):
        load_key(Secret("env", "MCP_TOKEN_KEY"), tmp_path)


def test_the_callback_address_behind_a_proxy_is_the_configured_one(gateway_factory,
                                                                   oauth_upstream) -> None:
    """``mcp.oauth_callback_url``: the address the authorization server sends the
    browser back to is the public one, not the one the request happened to arrive on."""
    url, _ = oauth_upstream
    public = "https://ownlight.example.com/mcp/oauth/callback"
    gateway = gateway_factory(f"""
[mcp]
oauth_callback_url = "{public}"
[mcp.servers.web]
url = "{url}"
oauth = true
""")
    key = gateway.create_key("alice")
    reply = httpx.get(f"{gateway.url}/mcp/oauth/web/start", timeout=30,
                      headers={"Authorization": f"Bearer {key}"})
    assert reply.status_code == 302
    query = parse_qs(urlsplit(reply.headers["location"]).query)
    assert query["redirect_uri"] == [public] and query["code_challenge_method"] == ["S256"]
