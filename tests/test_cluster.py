"""A cluster on one machine (``deploy/cluster.py``, what ``make cluster`` starts): three
``ownlight serve`` processes on one real PostgreSQL, behind a real nginx, used through the
real ``openai`` SDK at nginx's address only, as a client of a deployment sees it; keys are
made and revoked with ``ownlight keys`` from an operator's machine (its own data dir)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import psycopg
import pytest
from click.testing import CliRunner
from deploy.cluster import Cluster, running

from ownlight.cli import main
from tests.conftest import upstream_toml
from tests.support.fake_upstream import FakeUpstream, free_port


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(upstream: FakeUpstream) -> Iterator[Cluster]:
    setup = Cluster(instances=3, port=free_port(), serve_arguments=["--no-local"],
                    extra_toml=upstream_toml("cloud", upstream.url, "fake-echo", retries=0))
    with running(setup):
        yield setup


def operator(cluster: Cluster, tmp_path: Path, *args: str) -> str:
    env = {"OWNLIGHT_DATA_DIR": str(tmp_path / "operator"), "OWNLIGHT_STORE_URL": cluster.store_url}
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def client(cluster: Cluster, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=cluster.url + "/v1", api_key=key, max_retries=0)


def test_three_instances_behind_nginx_act_as_one(cluster: Cluster, tmp_path: Path) -> None:
    assert cluster.admin_key.startswith("ol-")  # made once, by the first instance to start
    made = operator(cluster, tmp_path, "keys", "create", "--name", "ana", "--json")
    key = json.loads(made)["key"]
    with client(cluster, key) as ana:
        for turn in range(9):  # least_conn spreads these over the three instances
            reply = ana.chat.completions.create(
                model="cloud", messages=[{"role": "user", "content": f"hello {turn}"}])
            assert reply.choices[0].message.content == f"You said: hello {turn}"
        started = ana.responses.create(model="cloud", input="remember 42")
        for n in range(3):  # whichever instance answers continues the conversation
            later = ana.responses.create(model="cloud", input=f"and {n}?",
                                         previous_response_id=started.id)
            assert later.output_text == f"You said: and {n}?"


def test_kill_9_under_load_behind_nginx_loses_no_answered_request(cluster: Cluster,
                                                                   tmp_path: Path) -> None:
    """Four SDK clients at nginx while one of the three instances is killed with SIGKILL
    and started again: only requests in flight on it fail (nginx sends the rest to the
    others), every answered request is in the shared ledger exactly once, and the chain
    verifies from an operator's machine."""
    victim = cluster.servers[1]
    answered: list[str] = []
    failed: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with client(cluster, cluster.admin_key) as sdk:
            while not stop.is_set():
                try:
                    raw = sdk.chat.completions.with_raw_response.create(
                        model="cloud", messages=[{"role": "user", "content": "still here"}])
                except openai.APIError as exc:
                    failed.append(repr(exc))
                    continue
                assert raw.parse().choices[0].message.content == "You said: still here"
                answered.append(raw.headers["x-ownlight-request-id"])

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        before = len(answered)
        victim.kill()  # kill -9: no shutdown of any kind
        time.sleep(1.5)
        during = len(answered)
        victim.start()  # the environment it first had: the same data dir, not this test's
        assert victim.process is not None
        journals = (cluster.root / f"data-{victim.number}").glob(
            f"audit.journal.{victim.process.pid}.*")
        assert any(journals), "the restarted instance journals elsewhere than its data dir"
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert before > 10 and during > before + 10  # the survivors kept answering
    assert len(failed) <= len(threads), failed  # at most the requests in flight on it
    deadline = time.monotonic() + 60
    while True:  # each instance ships its journal; the restarted one replays its own
        with psycopg.connect(cluster.store_url) as conn:
            counts = Counter(dict(conn.execute(
                "SELECT request_id, count(*) FROM audit_log WHERE kind = 'request' "
                "AND request_id = ANY(%s) GROUP BY request_id", (answered,)).fetchall()))
        if set(counts) == set(answered) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert set(answered) - set(counts) == set()
    assert set(counts.values()) == {1}
    assert operator(cluster, tmp_path, "audit", "verify").startswith("ok: ")
    print(f"answered {len(answered)} ({before} before the kill, {during - before} while it "
          f"was down), {len(failed)} failed in flight")


def test_a_revoked_key_is_refused_through_every_instance(cluster: Cluster,
                                                         tmp_path: Path) -> None:
    key = json.loads(operator(cluster, tmp_path, "keys", "create", "--name", "leaver",
                              "--json"))["key"]
    with client(cluster, key) as leaver:
        leaver.models.list()
        operator(cluster, tmp_path, "keys", "revoke", "leaver")
        for _ in range(9):  # spread over the three instances
            with pytest.raises(openai.AuthenticationError):
                leaver.models.list()


def test_refusals_behind_nginx_name_the_client_not_the_proxy(cluster: Cluster) -> None:
    """Each instance trusts X-Forwarded-For from nginx alone ([server] trusted_proxies), so a
    refused request's record names the address nginx saw, not 127.0.0.1; the three
    records, made by whichever instances answered, are in the one shared ledger."""
    for _ in range(3):
        refused = httpx.get(cluster.url + "/v1/models", headers={
            "Authorization": "Bearer ol-not-a-key", "X-Forwarded-For": "203.0.113.7"})
        assert refused.status_code == 401
    admin = {"Authorization": f"Bearer {cluster.admin_key}"}
    ours = hashlib.sha256(b"ol-not-a-key").hexdigest()[:12]
    deadline = time.monotonic() + 10
    while True:  # one shared ledger: any instance answers for all three
        clients = [record.get("client")
                   for record in httpx.get(cluster.url + "/v1/admin/audit?kind=refusal",
                                           headers=admin).json()["data"]
                   if record.get("key") == ours]
        if len(clients) == 3:
            break
        assert time.monotonic() < deadline, f"refusals recorded from {clients}"
        time.sleep(0.2)
    assert clients == ["203.0.113.7"] * 3
