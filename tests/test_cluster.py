"""A cluster on one machine (``deploy/cluster.py``, what ``make cluster`` starts): three
``ownlight serve`` processes on one real PostgreSQL, behind a real nginx, used through the
real ``openai`` SDK at nginx's address only, as a client of a deployment sees it; keys are
made and revoked with ``ownlight keys`` from an operator's machine (its own data dir)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
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


def test_a_killed_instance_loses_no_request_behind_nginx(cluster: Cluster) -> None:
    victim = cluster.servers[1]
    with client(cluster, cluster.admin_key) as admin:
        victim.kill()  # kill -9: its port refuses connections from now on
        try:
            for turn in range(12):
                reply = admin.chat.completions.create(
                    model="cloud", messages=[{"role": "user", "content": f"still {turn}"}])
                assert reply.choices[0].message.content == f"You said: still {turn}"
        finally:
            victim.start({**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        reply = admin.chat.completions.create(
            model="cloud", messages=[{"role": "user", "content": "back"}])
        assert reply.choices[0].message.content == "You said: back"


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
