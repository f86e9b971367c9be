"""The admin views' API through a real gateway: egress, usage, the ledger, the export, keys.

Requests go through the ``openai`` SDK to a fake cloud upstream with an e-mail address in
them; the admin API then shows that egress with the pseudonymized type and count and never
the address, pages the ledger, exports it as JSONL and CSV, and creates and revokes a key
(the revoked key's next call fails) with both acts in the ledger. An ordinary key gets 403
and no key 401 on every route; bad input gets a 400 in the error shape.
"""

from __future__ import annotations

import csv
import io
import json
import time

import httpx
import openai
import pytest

from ownlight.audit.shared import source_id
from tests.conftest import upstream_toml
from tests.support.fake_upstream import FakeUpstream

ADDRESS = "maria.gonzalez@example.com"
ROUTES = (
    "/v1/admin/egress",
    "/v1/admin/egress/export",
    "/v1/admin/usage",
    "/v1/admin/ledger",
    "/v1/admin/ledger/1",
    "/v1/admin/keys",
)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_toml(request: pytest.FixtureRequest) -> str:
    """No ``[store]`` (SQLite and the instance's own ledger), or a real PostgreSQL (keys
    there, and the views read the shared ledger)."""
    if request.param == "sqlite":
        return ""
    url = request.getfixturevalue("postgres_url")
    return f'[store]\nurl = "{url}"\n'


def settled(gateway) -> None:
    """Everything recorded so far is chained (and shipped to a shared ledger); if not in
    60 s, the failure says where the records stopped."""
    ledger = gateway.runtime.pipeline.ledger
    ledger.flush()
    for _ in range(2400):  # a busy machine's shipper retries every second
        if not gateway.runtime.audit_behind():
            return
        time.sleep(0.025)
    database = gateway.runtime.stores.database
    local = ledger.store.query("SELECT max(seq) FROM audit_log")[0][0]
    chainer = ledger._proc
    raise AssertionError(
        f"the shared ledger did not catch up: chained here up to seq {local}, "
        f"{ledger.unchained()} journaled and not chained, this instance is "
        f"{source_id(ledger.path.parent)!r}, the shared marks are "
        f"{database.query('SELECT source, shipped FROM audit_sources')}, "
        f"the chainer process {'runs' if chainer and chainer.poll() is None else 'is gone'}, "
        f"waiting in PostgreSQL: "
        f"{database.query(WAITING)}")


WAITING = ("SELECT pid, state, wait_event_type, wait_event, left(query, 80) FROM "
           "pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")


def test_admin_sees_egress_pages_the_ledger_exports_and_manages_keys(
    gateway_factory, cloud: FakeUpstream, store_toml: str
) -> None:
    gateway = gateway_factory(
        upstream_toml("cloud", cloud.url, "fake-echo", retries=0) + store_toml
    )
    auth = {"Authorization": f"Bearer {gateway.create_key('root', ('admin',))}"}
    client = gateway.client()
    for i in range(3):
        client.chat.completions.create(
            model="cloud",
            messages=[
                {"role": "user", "content": f"Please write to {ADDRESS} about contract {i}."}
            ],
        )
    assert cloud.received and all(ADDRESS not in json.dumps(b) for b in cloud.received)
    settled(gateway)

    report = httpx.get(gateway.url + "/v1/admin/egress?since=1d", headers=auth)
    assert report.status_code == 200 and ADDRESS not in report.text
    sent = report.json()["sent"]
    assert [row["requests"] for row in sent] == [3]
    assert sent[0]["target"].startswith("cloud") and sent[0]["principal"] == "alice"
    assert sent[0]["pseudonymized"] == {"EMAIL_ADDRESS": 3}

    answer = httpx.get(gateway.url + "/v1/admin/usage", headers=auth).json()
    usage = answer["total"]
    assert usage["cloud"] == 3 and usage["local_share"] == 0.0 and usage["tokens"] > 0
    assert answer["now"]["circuits"] == {"cloud": "closed"}

    first = httpx.get(gateway.url + "/v1/admin/ledger?limit=2&kind=request", headers=auth)
    assert first.status_code == 200 and len(first.json()["data"]) == 2
    rest = httpx.get(
        gateway.url + f"/v1/admin/ledger?limit=2&kind=request&before={first.json()['next']}",
        headers=auth,
    ).json()
    assert len(rest["data"]) == 1 and rest["next"] is None
    seqs = [r["seq"] for r in first.json()["data"] + rest["data"]]
    assert seqs == sorted(seqs, reverse=True)
    one = httpx.get(gateway.url + f"/v1/admin/ledger/{seqs[-1]}", headers=auth).json()
    assert one["seq"] == seqs[-1] and one["pseudonymized"] == {"EMAIL_ADDRESS": 1}

    lines = httpx.get(gateway.url + "/v1/admin/egress/export?format=jsonl", headers=auth)
    assert lines.headers["content-type"].startswith("application/x-ndjson")
    exported = [json.loads(line) for line in lines.text.splitlines()]
    requests = [r for r in exported if r["kind"] == "request"]
    assert len(requests) == 3 and ADDRESS not in lines.text
    assert all(r["pseudonymized"] == {"EMAIL_ADDRESS": 1} for r in exported)
    # each request's payload hash: folded into its record, or on its egress record's row
    hashes = {r["request_id"]: [] for r in requests}
    for r in exported:
        hashes[r["request_id"]] += r["hash_of_payload"]
    assert all(len(h) == 1 and len(h[0]) == 64 for h in hashes.values())
    # an egress record chained apart from its request's record names that request
    assert {r["request_id"] for r in exported} == {r["request_id"] for r in requests}
    table = httpx.get(gateway.url + "/v1/admin/egress/export?format=csv", headers=auth)
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert [r["request_id"] for r in rows] == [r["request_id"] for r in exported]

    url = gateway.url + "/v1/admin/ledger/verification"
    assert httpx.get(url, headers=auth).json()["last"] is None
    assert httpx.post(url, headers=auth).status_code == 202
    for _ in range(200):
        status = httpx.get(url, headers=auth).json()
        if status["last"] and not status["running"]:
            break
        time.sleep(0.05)
    assert status["last"]["ok"] is True and status["last"]["count"] >= 3

    made = httpx.post(
        gateway.url + "/v1/admin/keys",
        headers=auth,
        json={"name": "carol", "groups": ["finance"], "tenant": "acme"},
    )
    assert made.status_code == 201
    key = made.json()["key"]
    listed = httpx.get(gateway.url + "/v1/admin/keys?limit=50", headers=auth).json()
    carol = [row for row in listed["data"] if row["name"] == "carol"]
    assert carol and carol[0]["groups"] == ["finance"] and "key" not in carol[0]
    assert key not in json.dumps(listed)
    assert (
        gateway.client(key)
        .chat.completions.create(model="cloud", messages=[{"role": "user", "content": "hi"}])
        .choices
    )
    gone = httpx.post(gateway.url + f"/v1/admin/keys/{made.json()['id']}/revoke", headers=auth)
    assert gone.status_code == 200 and gone.json() == {"revoked": 1}
    with pytest.raises(openai.AuthenticationError):
        gateway.client(key).chat.completions.create(
            model="cloud", messages=[{"role": "user", "content": "hi"}]
        )
    settled(gateway)
    acts = httpx.get(gateway.url + "/v1/admin/ledger?kind=admin", headers=auth).json()["data"]
    assert {(a["action"], a["principal"]) for a in acts} >= {
        ("key.create", "root"),
        ("key.revoke", "root"),
        ("audit.verify", "root"),
    }
    assert key not in json.dumps(acts)


def test_ordinary_users_get_403_and_bad_input_400(gateway_factory, cloud: FakeUpstream) -> None:
    gateway = gateway_factory(upstream_toml("cloud", cloud.url, "fake-echo", retries=0))
    auth = {"Authorization": f"Bearer {gateway.create_key('root', ('admin',))}"}
    ordinary = {"Authorization": f"Bearer {gateway.create_key('bob')}"}
    for path in ROUTES:
        denied = httpx.get(gateway.url + path, headers=ordinary)
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "admin_only"
        assert httpx.get(gateway.url + path).status_code == 401
    for path in ("/v1/admin/keys", "/v1/admin/keys/1/revoke"):
        assert (
            httpx.post(gateway.url + path, headers=ordinary, json={"name": "x"}).status_code == 403
        )
    assert "x" not in [k.name for k in gateway.runtime.keys.list()]
    for path, status in (
        ("/v1/admin/ledger?limit=0", 400),
        ("/v1/admin/ledger?before=x", 400),
        ("/v1/admin/ledger/abc", 400),
        ("/v1/admin/ledger/99999", 404),
        ("/v1/admin/egress/export?format=xml", 400),
        ("/v1/admin/egress?since=yesterday", 400),
        ("/v1/admin/keys?limit=1000", 400),
    ):
        answer = httpx.get(gateway.url + path, headers=auth)
        assert answer.status_code == status, path
        assert answer.json()["error"]["message"], path
    for body in ({}, {"name": ""}, {"name": "x", "groups": "admin"}, [1]):
        assert (
            httpx.post(gateway.url + "/v1/admin/keys", headers=auth, json=body).status_code == 400
        )
    assert httpx.post(gateway.url + "/v1/admin/keys/nobody/revoke", headers=auth).status_code == 404
