"""The knowledge base on a real PostgreSQL (pgvector): what only the shared store can get wrong.

The ACL matrix itself runs on both stores in ``test_knowledge_acl.py``. Here: a reader
who may see one document among many still gets k vector results (pgvector's iterative
index scan, checked to be the plan that runs, where a plain HNSW scan would return a
fraction of k); writes keep BM25's counters exact, also when two instances write at
once; several instances' embedders share
the pending chunks instead of each embedding all; grants and revocations; and two
gateway instances on one PostgreSQL, filled by ``ownlight ingest`` from a third machine,
serve the same knowledge base to search and grounded chat (and to ``ownlight search``).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import psycopg
from click.testing import CliRunner

from ownlight.cli import main
from ownlight.knowledge import segment
from ownlight.knowledge.base import KnowledgeBase
from ownlight.knowledge.postgres_store import _VECTOR_SQL, PostgresKnowledgeStore, vector_literal
from ownlight.knowledge.types import Document
from ownlight.principal import Principal
from tests.conftest import upstream_toml
from tests.knowledge_support import HashEmbedder, open_pg_kb
from tests.support.fake_upstream import FakeUpstream

ALICE = Principal(1, "alice")
PARAGRAPH = "The lighthouse keeper wrote about tides, storms and the lamp. " * 20  # ~1,200 chars


def test_a_reader_of_one_document_among_many_still_gets_k_vector_rows(postgres_url: str) -> None:
    # Make the planner take the HNSW index (as it does on a big index): no seq scan, no sort.
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        name = conn.info.dbname
        conn.execute(f"ALTER DATABASE {name} SET enable_seqscan = off")
        conn.execute(f"ALTER DATABASE {name} SET enable_sort = off")
    # about vector rows alone: the guard's e5 reading of 1,500 documents would take minutes
    kb = KnowledgeBase(PostgresKnowledgeStore.connect(postgres_url), HashEmbedder(),
                       guard_scores=False)
    try:
        others = [Document(key=f"other-{i}", title=f"Log {i}", text=PARAGRAPH + f" entry {i}",
                           allow=("user:someone",)) for i in range(1500)]
        kb.ingest_documents("others", others, "logs")
        mine = Document(key="mine", title="Alice's log",
                        text="\n\n".join(f"{PARAGRAPH} part {i}" for i in range(15)),
                        allow=("user:alice",))
        kb.ingest_documents("mine", [mine], "logs")
        kb.embed_pending(batch_size=256)

        hits = kb.search("lighthouse lamp storms", ALICE, ["logs"], k=10, mode="vector")
        assert len(hits) == 10
        assert {hit.document_id for hit in hits} == {"mine"}

        # The same query as a plain HNSW scan (no iterative scan) finds almost nothing
        # readable among its first ef_search candidates: the setting is what gives k.
        store = kb.store
        assert isinstance(store, PostgresKnowledgeStore)
        params = {"tenant": "default", "collections": ["logs"], "identities":
                  list(ALICE.identities), "k": 10,
                  "q": vector_literal(HashEmbedder().query("lighthouse lamp storms"))}
        with store.db.transaction() as conn:
            conn.execute("SET LOCAL hnsw.iterative_scan = off")
            plain = conn.execute(_VECTOR_SQL, params).fetchall()
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + _VECTOR_SQL, params))
        assert "knowledge_chunks_embedding" in plan
        assert len(plain) < 10
    finally:
        kb.close()


def test_bm25_counters_follow_every_write(postgres_url: str) -> None:
    kb = open_pg_kb(postgres_url, vectors=False)
    try:
        kb.ingest_documents("a", [Document(key="1", title="Tide", text="tide tide lamp"),
                                  Document(key="2", title="Lamp", text="lamp oil")], "c",
                            owner="olivia")
        kb.ingest_documents("a", [Document(key="1", title="Tide", text="tide storm")], "c",
                            owner="olivia")  # key 2 gone, key 1 changed
        with psycopg.connect(postgres_url) as conn:
            df = dict(conn.execute("SELECT term, df FROM knowledge_terms WHERE df <> 0"))
            totals = conn.execute("SELECT chunks, length FROM knowledge_totals").fetchone()
            exact = dict(conn.execute("SELECT u.lexeme, count(*) FROM knowledge_chunks c,"
                                      " unnest(c.terms) u GROUP BY u.lexeme"))
            actual = conn.execute("SELECT count(*), sum(length) FROM knowledge_chunks").fetchone()
        assert df == exact == {"tide": 1, "storm": 1}
        assert totals == actual == (1, 3)
        olivia = Principal(6, "olivia")
        assert [h.document_id for h in kb.search("storm", olivia, ["c"], mode="lexical")] == ["1"]
        assert kb.search("oil", olivia, ["c"], mode="lexical") == []
    finally:
        kb.close()


def test_concurrent_ingests_from_two_instances_keep_everything_exact(postgres_url: str) -> None:
    """Two writers create the same access classes in opposite orders and share terms:
    every document lands, and BM25's counters equal a recount."""
    lists = [(f"group:g{i}",) for i in range(8)]

    def ingest(name: str, order: list[tuple[str, ...]]) -> None:
        kb = open_pg_kb(postgres_url, vectors=False)
        try:
            for round_ in range(6):
                docs = [Document(key=f"{name}-{round_}-{i}", title="Shared", allow=allow,
                                 text=f"shared words {name} round{round_} item{i}")
                        for i, allow in enumerate(order)]
                kb.ingest_documents(f"{name}-{round_}", docs, "c", owner="olivia")
        finally:
            kb.close()

    open_pg_kb(postgres_url, vectors=False).close()  # the schema, before both start
    threads = [threading.Thread(target=ingest, args=("a", lists)),
               threading.Thread(target=ingest, args=("b", lists[::-1]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with psycopg.connect(postgres_url) as conn:
        df = dict(conn.execute("SELECT term, df FROM knowledge_terms WHERE df <> 0"))
        exact = dict(conn.execute("SELECT u.lexeme, count(*) FROM knowledge_chunks c,"
                                  " unnest(c.terms) u GROUP BY u.lexeme"))
        totals = conn.execute("SELECT chunks, length FROM knowledge_totals").fetchone()
        actual = conn.execute("SELECT count(*), sum(length) FROM knowledge_chunks").fetchone()
        documents = conn.execute("SELECT count(*) FROM knowledge_documents").fetchone()
    assert documents == (2 * 6 * 8,)
    assert df == exact and totals == actual


def test_embedders_of_several_instances_share_the_pending_chunks(postgres_url: str) -> None:
    first, second = open_pg_kb(postgres_url), open_pg_kb(postgres_url)
    try:
        docs = [Document(key=str(i), title="t", text=f"note {i}") for i in range(6)]
        first.ingest_documents("a", docs, "c", owner="olivia")
        mine = first.store.pending_chunks(4)
        theirs = second.store.pending_chunks(4)
        assert len(mine) == 4 and len(theirs) == 2
        assert not {i for i, _ in mine} & {i for i, _ in theirs}
        assert second.store.pending_chunks(4) == []  # all claimed, none embedded yet
        first.store.store_vectors([i for i, _ in mine],
                                  HashEmbedder().passages([t for _, t in mine]))
        assert first.pending_vectors() == 2
    finally:
        first.close()
        second.close()


def test_collection_grant_can_be_revoked_on_postgres(postgres_url: str) -> None:
    kb = open_pg_kb(postgres_url, vectors=False)
    try:
        kb.ingest_documents("a", [Document(key="pay", title="Pay", text="quarterly payroll")],
                            "hr", owner="olivia")
        erin = Principal(5, "erin", groups=("hr",))
        assert kb.search("payroll", erin, ["hr"]) == []
        kb.grant("hr", "group:hr")
        assert len(kb.search("payroll", erin, ["hr"])) == 1
        kb.revoke("hr", "group:hr")
        assert kb.search("payroll", erin, ["hr"]) == []
    finally:
        kb.close()


def test_two_instances_serve_one_knowledge_base(gateway_factory, cloud: FakeUpstream,
                                                postgres_url: str, tmp_path: Path) -> None:
    toml = upstream_toml("cloud", cloud.url, "fake-echo", retries=0)
    toml += '[knowledge]\nvectors = false\n'
    toml += f'[store]\nurl = "{postgres_url}"\n'
    first, second = gateway_factory(toml), gateway_factory(toml)

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "tides.md").write_text("# Tides\nThe zebratide table is pinned by the door.\n")
    (notes / "lamp.md").write_text("# Lamp\nThe zebralamp needs oil every evening.\n")
    env = {"OWNLIGHT_DATA_DIR": str(tmp_path / "operator"), "OWNLIGHT_STORE_URL": postgres_url}
    result = CliRunner().invoke(main, ["ingest", str(notes), "-c", "notes", "--allow",
                                       "group:keepers", "--no-vectors"], env=env)
    assert result.exit_code == 0, result.output
    searched = CliRunner().invoke(main, ["search", "zebralamp", "-c", "notes", "--as", "kim",
                                         "--group", "keepers", "--mode", "lexical", "--json"],
                                  env=env)
    assert [h["document_id"] for h in json.loads(searched.output)] == ["lamp.md"]
    assert not (tmp_path / "operator" / "knowledge.db").exists()

    for gateway in (first, second):
        keeper = gateway.create_key("kim", ("keepers",))
        stranger = gateway.create_key("sam")
        body = {"query": "zebralamp", "collections": ["notes"]}
        found = httpx.post(gateway.url + "/v1/knowledge/search", json=body, timeout=30,
                           headers={"Authorization": f"Bearer {keeper}"}).json()
        assert [h["document_id"] for h in found["data"][0]["results"]] == ["lamp.md"]
        hidden = httpx.post(gateway.url + "/v1/knowledge/search", json=body, timeout=30,
                            headers={"Authorization": f"Bearer {stranger}"}).json()
        assert hidden["data"][0]["results"] == []
        answer = gateway.client(keeper).chat.completions.create(
            model="cloud", messages=[{"role": "user", "content": "where is the zebratide?"}],
            extra_body={"knowledge": ["notes"]})
        assert answer.model_extra["citations"][0]["document_id"] == "tides.md"
        assert not (gateway.config.data_dir / "knowledge.db").exists()


def test_the_access_list_reads_owners_and_grants_on_postgres(postgres_url: str) -> None:
    """What the console's "who may read" shows, from the shared store."""
    kb = open_pg_kb(postgres_url, vectors=False)
    try:
        kb.ingest_documents("a", [Document(key="pay", title="Pay", text="quarterly payroll")],
                            "hr", owner="olivia")
        kb.ingest_documents("b", [Document(key="pen", title="Pen", text="pension plan")],
                            "hr", owner="nora")
        kb.grant("hr", "group:hr")
        assert kb.store.access_list("default", "hr") == (["nora", "olivia"], ["group:hr"])
        kb.revoke("hr", "group:hr")
        assert kb.store.access_list("default", "hr") == (["nora", "olivia"], [])
        assert kb.store.access_list("default", "nothing") == ([], [])
        assert kb.store.access_list("other-tenant", "hr") == ([], [])
    finally:
        kb.close()


def test_db_copy_moves_the_knowledge_base_and_answers_the_same(postgres_url: str,
                                                               tmp_path: Path) -> None:
    """``ownlight db copy`` moves the knowledge index with its owners, access lists and
    grants: every principal's lexical search answers the same on PostgreSQL as it did on
    SQLite, and the copied chunks wait for the instances' embedder."""
    from ownlight.knowledge.sqlite_store import SQLiteKnowledgeStore

    data = tmp_path / "data"
    env = {"OWNLIGHT_DATA_DIR": str(data)}
    notes, finance = tmp_path / "notes", tmp_path / "finance"
    notes.mkdir()
    finance.mkdir()
    (notes / "offsite.md").write_text("# Offsite\n\nThe Q4 offsite is in Lisbon.\n")
    (finance / "salaries.md").write_text("# Salaries\n\nSalaries are paid on the 25th.\n")
    (finance / "budget.md").write_text("# Budget\n\nThe offsite budget is 40,000 euros.\n")
    runner = CliRunner()
    for args in (["ingest", str(notes), "--collection", "notes", "--owner", "alice"],
                 ["ingest", str(finance), "--collection", "finance", "--allow", "group:finance"]):
        done = runner.invoke(main, args, env=env)
        assert done.exit_code == 0, done.output
    SQLiteKnowledgeStore(data / "knowledge.db").grant("default", "notes", "group:staff")
    readers = [Principal(1, "alice"), Principal(2, "bob", groups=("finance",)),
               Principal(3, "carl", groups=("staff",)), Principal(4, "dora")]
    queries = ["offsite Lisbon", "salaries paid", "offsite budget euros"]

    def answers(store) -> list[list[tuple[str, str]]]:
        seen = []
        for who in readers:
            for query in queries:
                ids = [i for i, _ in store.lexical(segment.terms(query), who,
                                                    ["notes", "finance"], 5)]
                hits = store.hits(ids, who, ["notes", "finance"])
                seen.append(sorted((h.collection, h.title) for h in hits.values()))
        return seen

    before_store = SQLiteKnowledgeStore(data / "knowledge.db")
    before = answers(before_store)
    before_store.close()
    assert before[3 * 3:] == [[], [], []]  # dora reads nothing
    assert ("notes", "Offsite") in before[2 * 3]  # carl, through the grant

    copied = runner.invoke(main, ["db", "copy", "--to", postgres_url], env=env)
    assert copied.exit_code == 0, copied.output
    assert "copied 3 knowledge source(s): 3 document(s)" in copied.output
    assert "and 1 grant(s)" in copied.output
    target = PostgresKnowledgeStore.connect(postgres_url)
    try:
        assert answers(target) == before
        assert target.count_pending() >= 3  # the instances' embedder takes them from here
    finally:
        target.close()
