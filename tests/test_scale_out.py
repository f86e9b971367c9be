"""Two Ownlight instances on one real PostgreSQL behave as one, end to end.

Each instance is a real server with its own data dir; ``[store] url`` points both at the
session's PostgreSQL. A key is made with ``ownlight keys create`` from a third data dir (an
operator's machine), used through the ``openai`` SDK on both instances, a stored response
is continued on the other instance, and the key, revoked from the command line, is then
refused by both.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import openai
import psycopg
import pytest
from click.testing import CliRunner

from ownlight.audit.queries import select
from ownlight.cli import main
from tests.conftest import upstream_toml
from tests.support.fake_upstream import FakeUpstream, free_port
from tests.support.servers import Postgres, running


def cli(tmp_path: Path, url: str, *args: str) -> str:
    env = {"OWNLIGHT_DATA_DIR": str(tmp_path / "operator"), "OWNLIGHT_STORE_URL": url}
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_two_instances_share_keys_responses_and_spend(gateway_factory, fake_upstream: FakeUpstream,
                                                     postgres_url: str, tmp_path: Path) -> None:
    toml = upstream_toml("cloud", fake_upstream.url, "fake-echo", retries=0, price_in=1000.0)
    toml += f'[store]\nurl = "{postgres_url}"\n'
    first, second = gateway_factory(toml), gateway_factory(toml)

    made = json.loads(cli(tmp_path, postgres_url, "keys", "create", "--name", "alice",
                          "--group", "staff", "--tenant", "acme", "--json"))
    key = made["key"]
    one, two = first.client(key), second.client(key)
    for client in (one, two):
        reply = client.chat.completions.create(
            model="cloud", messages=[{"role": "user", "content": "hello"}])
        assert reply.choices[0].message.content == "You said: hello"

    started = one.responses.create(model="cloud", input="remember 42")
    continued = two.responses.create(model="cloud", input="what did I say?",
                                     previous_response_id=started.id)
    assert continued.output_text == "You said: what did I say?"
    assert two.responses.retrieve(started.id).output_text == "You said: remember 42"
    stranger = second.client(second.create_key("bob", tenant="acme"))
    with pytest.raises(openai.NotFoundError):
        stranger.responses.retrieve(started.id)

    month = datetime.now(UTC).strftime("%Y-%m")
    spent = [g.runtime.pipeline.budgets.spend.spent(("key", "alice", month))
             for g in (first, second)]
    assert spent[0] == spent[1] > 0  # both instances' requests, counted once each

    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT name, tenant, groups FROM api_keys ORDER BY id").fetchall()
    assert rows == [("alice", "acme", ["staff"]), ("bob", "acme", [])]
    for gateway in (first, second):  # nothing shared was written to an instance's own file
        with sqlite3.connect(gateway.config.data_dir / "state.db") as db:
            assert db.execute("SELECT count(*) FROM api_keys").fetchone() == (0,)
            assert db.execute("SELECT count(*) FROM responses").fetchone() == (0,)
            assert db.execute("SELECT count(*) FROM spend").fetchone() == (0,)

    assert "revoked 1 key(s)" in cli(tmp_path, postgres_url, "keys", "revoke", "alice")
    for client in (one, two):
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(
                model="cloud", messages=[{"role": "user", "content": "hello"}])
    listed = json.loads(cli(tmp_path, postgres_url, "keys", "list", "--json"))
    assert [(k["name"], k["revoked_at"] is not None) for k in listed] == [
        ("alice", True), ("bob", False)]


def test_a_lost_store_refuses_with_503_then_recovers(gateway_factory, fake_upstream: FakeUpstream
                                                     ) -> None:
    """PostgreSQL stopped under a running instance: requests fail closed with 503 and
    ``Retry-After`` (no key is trusted), never a traceback, and once the store is known to be
    down at once; once it is back, the same key works again without restarting Ownlight."""
    with running(Postgres()) as server:
        url = server.database()
        toml = upstream_toml("cloud", fake_upstream.url, "fake-echo", retries=0)
        gateway = gateway_factory(toml + f'[store]\nurl = "{url}"\n')
        client = gateway.client(gateway.create_key("alice"))

        def ask() -> str | None:
            reply = client.chat.completions.create(
                model="cloud", messages=[{"role": "user", "content": "hello"}])
            return reply.choices[0].message.content

        assert ask() == "You said: hello"
        server.halt()
        for attempt in range(3):
            started = time.monotonic()
            with pytest.raises(openai.InternalServerError) as failed:
                ask()
            assert failed.value.status_code == 503
            assert failed.value.response.headers["retry-after"] == "5"
            assert failed.value.response.json()["error"]["code"] == "store_unavailable"
            if attempt:  # known down: refused at once, the event loop is not held
                assert time.monotonic() - started < 0.5
        assert httpx.get(gateway.url + "/healthz", timeout=1).status_code == 200
        ready = httpx.get(gateway.url + "/readyz", timeout=1)
        assert ready.status_code == 503
        assert ready.json() == {"ready": False, "store": "unreachable"}
        server.resume()
        deadline = time.monotonic() + 20
        while True:
            try:
                assert ask() == "You said: hello"
                break
            except openai.InternalServerError:
                assert time.monotonic() < deadline, "the store did not come back"
                time.sleep(0.2)
        # Readiness follows within the store's reconnect interval (a second); the key check
        # may already have answered from the key cache, which heard the store come back.
        while httpx.get(gateway.url + "/readyz").json() != {"ready": True}:
            assert time.monotonic() < deadline + 5, "/readyz did not recover"
            time.sleep(0.2)


def test_ownlight_serve_on_postgresql(fake_upstream: FakeUpstream, postgres_url: str,
                                      tmp_path: Path) -> None:
    """Two ``ownlight serve`` processes configured with ``[store] url``: the first makes
    the admin key (printed once), the second finds it and makes none; the key works on the
    second through the openai SDK."""
    servers: list[subprocess.Popen[str]] = []
    try:
        for number in range(2):
            port = free_port()
            config = tmp_path / f"ownlight-{number}.toml"
            config.write_text(f'data_dir = "{tmp_path / f"data-{number}"}"\n'
                              f'[store]\nurl = "{postgres_url}"\n')
            servers.append(subprocess.Popen(
                [sys.executable, "-m", "ownlight.cli", "--config", str(config), "serve",
                 "--no-local", "--port", str(port), "--upstream", f"cloud={fake_upstream.url}"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                env={**os.environ, "PYTHONPATH": ":".join(sys.path)}))
            wait_ready(f"http://127.0.0.1:{port}", servers[-1])
        assert servers[0].stdout is not None
        key = servers[0].stdout.readline().strip()  # the first line it printed
        assert key.startswith("ol-")
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key,
                           max_retries=0) as client:
            reply = client.chat.completions.create(
                model="cloud", messages=[{"role": "user", "content": "hi"}])
            assert reply.choices[0].message.content
        servers[1].terminate()
        assert not servers[1].communicate(timeout=30)[0].strip()  # no second admin key
    finally:
        for server in servers:
            if server.poll() is None:
                server.terminate()
                server.communicate(timeout=30)


def wait_ready(url: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, "ownlight serve exited"
        try:
            if httpx.get(url + "/readyz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready")


def test_postgresql_restarted_under_load_gives_503s_then_recovers_losing_nothing(
        gateway_factory, fake_upstream: FakeUpstream) -> None:
    """Four clients keep sending while PostgreSQL stops and starts again: every answer is a
    200 or a 503 ``store_unavailable`` with ``Retry-After`` (never a 500), answers come back
    without restarting Ownlight, and every request that was answered is in the ledger."""
    with running(Postgres()) as server:
        toml = upstream_toml("cloud", fake_upstream.url, "fake-echo", retries=0)
        gateway = gateway_factory(toml + f'[store]\nurl = "{server.database()}"\n')
        auth = {"Authorization": f"Bearer {gateway.create_key('alice')}"}
        body = {"model": "cloud", "messages": [{"role": "user", "content": "hello"}]}
        replies: list[tuple[float, int, str, str]] = []  # when, status, request id, error code
        stop = threading.Event()

        def client() -> None:
            with httpx.Client(base_url=gateway.url, headers=auth, timeout=30) as http:
                while not stop.is_set():
                    reply = http.post("/v1/chat/completions", json=body)
                    code = reply.json().get("error", {}).get("code", "") \
                        if reply.status_code != 200 else ""
                    if reply.status_code == 503:
                        assert reply.headers["retry-after"] == "5"
                    replies.append((time.monotonic(), reply.status_code,
                                    reply.headers.get("x-ownlight-request-id", ""), code))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1.0)
            server.halt()
            time.sleep(2.0)
            server.resume()
            resumed = time.monotonic()
            deadline = resumed + 20
            while not any(at > resumed + 1 and status == 200 for at, status, _, _ in replies):
                assert time.monotonic() < deadline, "no answer after PostgreSQL came back"
                time.sleep(0.2)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        statuses = Counter(status for _, status, _, _ in replies)
        assert set(statuses) == {200, 503}, statuses
        assert {code for _, status, _, code in replies if status == 503} == {"store_unavailable"}
        answered = {rid for _, status, rid, _ in replies if status == 200}
        gateway.runtime.pipeline.ledger.flush()
        recorded = {r["request_id"] for r in
                    select(gateway.runtime.pipeline.ledger.store, kind="request")
                    if r.get("status") == 200}
        assert answered and answered <= recorded
