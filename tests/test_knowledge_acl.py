"""ACL matrix: for every principal and every document, search shows exactly what may be read.

Access is decided independently here (``may_read``) and compared with what search
returns in every mode, for a query every document matches and for each document's own
secret word — so neither results, nor their number, nor a limit reveal hidden documents.
The matrix runs on both stores: the SQLite index and the PostgreSQL one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ownlight.knowledge.base import KnowledgeBase
from ownlight.principal import Principal
from tests.knowledge_support import open_kb, open_pg_kb
from tests.support.servers import Postgres

ACCESS_LISTS: dict[str, list[str]] = {
    "pub": ["public"],
    "alice": ["user:alice"],
    "bob": ["user:bob"],
    "fin": ["group:finance"],
    "eng": ["group:eng"],
    "fin_or_bob": ["group:finance", "user:bob"],
    "empty": [],
}
#: collection -> (owner, grants)
COLLECTIONS = {"main": ("olivia", []), "hr": ("olivia", ["group:hr"])}
PRINCIPALS = [
    Principal(1, "alice", groups=("finance",)),
    Principal(2, "bob", groups=("eng",)),
    Principal(3, "carol", groups=("finance", "eng")),
    Principal(4, "dave"),
    Principal(5, "erin", groups=("hr",)),
    Principal(6, "olivia"),
    Principal(7, "mallory", groups=("public", "user:alice")),
    Principal(8, "alice", tenant="other", groups=("finance",)),
]
DOCS = [(c, name) for c in COLLECTIONS for name in ACCESS_LISTS]


def secret(collection: str, name: str) -> str:
    return f"secret{collection}{name.replace('_', '')}"


def may_read(principal: Principal, collection: str, name: str) -> bool:
    """The rule, stated independently of the implementation."""
    if principal.tenant != "default":
        return False
    owner, grants = COLLECTIONS[collection]
    allowed = set(ACCESS_LISTS[name]) | set(grants) | {f"user:{owner}"}
    return bool(allowed & set(principal.identities))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def kb(request: pytest.FixtureRequest,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnowledgeBase]:
    tmp = tmp_path_factory.mktemp("acl")
    if request.param == "postgres":
        server: Postgres = request.getfixturevalue("postgres_server")
        kb = open_pg_kb(server.database())
    else:
        kb = open_kb(tmp / "k.db")
    for collection, (owner, grants) in COLLECTIONS.items():
        rows = [
            {"id": f"{collection}-{name}", "title": f"Title {collection} {name}",
             "text": f"Common budget memo. {secret(collection, name)} figures.",
             "allow": allow}
            for name, allow in ACCESS_LISTS.items()
        ]
        source = tmp / f"{collection}.jsonl"
        source.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
        kb.ingest(source, collection, owner=owner)
        for grant in grants:
            kb.grant(collection, grant)
    kb.embed_pending()
    yield kb
    kb.close()


@pytest.mark.parametrize("principal", PRINCIPALS, ids=lambda p: f"{p.name}@{p.tenant}")
@pytest.mark.parametrize("mode", ["hybrid", "lexical", "vector"])
def test_search_shows_exactly_the_readable_documents(
    kb: KnowledgeBase, principal: Principal, mode: str
) -> None:
    collections = list(COLLECTIONS)
    readable = {f"{c}-{n}" for c, n in DOCS if may_read(principal, c, n)}
    hits = kb.search("common budget memo", principal, collections, k=100, mode=mode)  # type: ignore[arg-type]
    assert {h.document_id for h in hits} == readable
    assert len(hits) == len(readable)
    for k in (1, 3):
        limited = kb.search("common budget memo", principal, collections, k=k, mode=mode)  # type: ignore[arg-type]
        assert len(limited) == min(k, len(readable))
        assert {h.document_id for h in limited} <= readable
    for collection, name in DOCS:
        own = kb.search(secret(collection, name), principal, collections, k=1, mode="lexical")
        if may_read(principal, collection, name):
            assert own and own[0].document_id == f"{collection}-{name}"
        else:
            assert all(h.document_id in readable for h in own)
            assert not any(secret(collection, name) in h.text for h in own)


def test_unknown_and_hidden_collections_look_the_same(kb: KnowledgeBase) -> None:
    dave = Principal(4, "dave")
    hidden = kb.search("secrethrempty", dave, ["hr"], k=5, mode="lexical")
    missing = kb.search("secrethrempty", dave, ["nope"], k=5, mode="lexical")
    assert hidden == missing == []


def test_collection_grant_can_be_revoked(tmp_path: Path) -> None:
    kb = open_kb(tmp_path / "k.db", vectors=False)
    source = tmp_path / "a.txt"
    source.write_text("quarterly payroll", encoding="utf-8")
    kb.ingest(source, "hr", owner="olivia")
    erin = Principal(5, "erin", groups=("hr",))
    assert kb.search("payroll", erin, ["hr"]) == []
    kb.grant("hr", "group:hr")
    assert len(kb.search("payroll", erin, ["hr"])) == 1
    kb.revoke("hr", "group:hr")
    assert kb.search("payroll", erin, ["hr"]) == []


def test_the_access_list_reads_owners_and_grants(tmp_path: Path) -> None:
    """What the console's "who may read" shows (PostgreSQL: ``test_knowledge_pg``)."""
    kb = open_kb(tmp_path / "k.db", vectors=False)
    for owner, text in (("olivia", "quarterly payroll"), ("nora", "pension plan")):
        source = tmp_path / f"{owner}.txt"
        source.write_text(text, encoding="utf-8")
        kb.ingest(source, "hr", owner=owner)
    kb.grant("hr", "group:hr")
    assert kb.store.access_list("default", "hr") == (["nora", "olivia"], ["group:hr"])
    kb.revoke("hr", "group:hr")
    assert kb.store.access_list("default", "hr") == (["nora", "olivia"], [])
    assert kb.store.access_list("default", "nothing") == ([], [])
    assert kb.store.access_list("other-tenant", "hr") == ([], [])


def test_empty_access_list_without_owner_is_readable_by_nobody(tmp_path: Path) -> None:
    kb = open_kb(tmp_path / "k.db", vectors=False)
    source = tmp_path / "a.txt"
    source.write_text("orphan text", encoding="utf-8")
    kb.ingest(source, "c")
    for principal in PRINCIPALS:
        assert kb.search("orphan", principal, ["c"]) == []
