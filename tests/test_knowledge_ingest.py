"""Ingestion: incremental by content hash, prune, unreadable files, crash safety.

The store-level cases (``make_kb``) run on both stores: the SQLite index and the
PostgreSQL one; crash safety and term pruning look inside the SQLite file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import apsw
import pytest

from ownlight.knowledge.base import KnowledgeBase
from ownlight.knowledge.sqlite_store import SQLiteKnowledgeStore
from ownlight.principal import Principal
from tests.knowledge_support import open_kb, open_pg_kb

READER = Principal(1, "reader")
ROOT = Path(__file__).resolve().parent.parent


MakeKB = Callable[..., KnowledgeBase]


@pytest.fixture(params=["sqlite", "postgres"])
def make_kb(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeKB]:
    """Opens the test's knowledge base on the store of the parameter."""
    opened: list[KnowledgeBase] = []

    def make(vectors: bool = True) -> KnowledgeBase:
        if request.param == "postgres":
            kb = open_pg_kb(request.getfixturevalue("postgres_url"), vectors)
        else:
            kb = open_kb(tmp_path / "k.db", vectors)
        opened.append(kb)
        return kb

    yield make
    for kb in opened:
        kb.close()


def _write_notes(folder: Path, count: int, word: str = "alpha") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"note{i:04d}.txt").write_text(
            f"Note number {i} mentions {word} and token{i}.\n\nSecond paragraph {i}.",
            encoding="utf-8",
        )


def test_incremental_reingest_and_prune(tmp_path: Path, make_kb: MakeKB) -> None:
    notes = tmp_path / "notes"
    _write_notes(notes, 5)
    kb = make_kb()
    first = kb.ingest(notes, "n", allow=["public"])
    assert first.documents_added == 5 and first.files_unchanged == 0
    again = kb.ingest(notes, "n", allow=["public"])
    assert again.files_unchanged == 5 and again.documents_added == 0

    (notes / "note0001.txt").write_text("Rewritten with gamma.", encoding="utf-8")
    (notes / "note0002.txt").unlink()
    (notes / "new.md").write_text("# New\n\nA new file about delta.", encoding="utf-8")
    third = kb.ingest(notes, "n", allow=["public"])
    assert (third.documents_added, third.documents_updated, third.documents_removed) == (1, 1, 0)
    assert kb.search("gamma", READER, ["n"], mode="lexical")[0].document_id.endswith("note0001.txt")
    assert kb.search("alpha token1", READER, ["n"], k=1, mode="lexical")[0].text != "x"
    assert kb.search("token2", READER, ["n"], mode="lexical")  # not pruned yet

    pruned = kb.ingest(notes, "n", allow=["public"], prune=True)
    assert pruned.documents_removed == 1
    assert not kb.search("token2", READER, ["n"], mode="lexical")


def test_changed_allow_list_reindexes(tmp_path: Path, make_kb: MakeKB) -> None:
    notes = tmp_path / "notes"
    _write_notes(notes, 2)
    kb = make_kb(vectors=False)
    kb.ingest(notes, "n", allow=["user:someone"])
    assert not kb.search("alpha", READER, ["n"])
    report = kb.ingest(notes, "n", allow=["public"])
    assert report.documents_updated == 2
    assert len(kb.search("alpha", READER, ["n"])) == 2


def test_unreadable_files_are_reported_and_skipped(tmp_path: Path, make_kb: MakeKB) -> None:
    folder = tmp_path / "docs"
    _write_notes(folder, 2)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    (folder / "bad.jsonl").write_text('{"id": "x", "text": "t", "allow": ["root"]}\n')
    kb = make_kb(vectors=False)
    report = kb.ingest(folder, "d", allow=["public"])
    assert report.documents_added == 2
    assert sorted(Path(p).name for p, _ in report.failed) == ["bad.jsonl", "broken.pdf"]


def test_vectors_follow_lexical_and_resume(tmp_path: Path, make_kb: MakeKB) -> None:
    notes = tmp_path / "notes"
    _write_notes(notes, 6)
    kb = make_kb()
    kb.ingest(notes, "n", allow=["public"])
    assert kb.pending_vectors() == 6
    assert kb.search("token3", READER, ["n"], k=1)[0].document_id.endswith("note0003.txt")
    assert kb.search("token3", READER, ["n"], mode="vector") == []
    assert kb.embed_pending(batch_size=4, max_chunks=4) == 4
    assert kb.pending_vectors() == 2
    assert kb.embed_pending() == 2
    hits = kb.search("token3", READER, ["n"], k=1, mode="vector")
    assert hits[0].document_id.endswith("note0003.txt")


def check_consistent(db_path: Path) -> tuple[int, int]:
    """Every committed document is complete in every index; returns (documents, chunks)."""
    store = SQLiteKnowledgeStore(db_path)
    db = store.db
    one = lambda sql: db.execute(sql).fetchone()[0]  # noqa: E731
    db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")
    chunks = one("SELECT count(*) FROM chunks")
    assert one("SELECT count(*) FROM chunks_fts_docsize") == chunks
    for orphans in (
        "chunks WHERE document_id NOT IN (SELECT id FROM documents)",
        "documents WHERE id NOT IN (SELECT document_id FROM chunks)",
        "documents WHERE source_id NOT IN (SELECT id FROM sources)",
    ):
        assert one(f"SELECT count(*) FROM {orphans}") == 0, orphans
    embedded = one("SELECT count(*) FROM chunks WHERE embedded = 1")
    assert one("SELECT count(*) FROM chunk_vectors") == embedded
    assert one("SELECT count(*) FROM chunk_bits") == embedded
    documents = one("SELECT count(*) FROM documents")
    store.close()
    return documents, chunks


_INGEST_SCRIPT = """
import sys, time
sys.path[:0] = [{src!r}, {root!r}]
from tests.knowledge_support import HashEmbedder, open_kb

class Slow(HashEmbedder):
    def passages(self, texts):
        time.sleep(0.05)
        return super().passages(texts)

kb = open_kb({db!r})
kb.embedder = Slow()
kb.ingest({notes!r}, "n", allow=["public"])
kb.embed_pending(batch_size=2)
"""


def _run_and_kill(tmp_path: Path, notes: Path, db: Path, when: str) -> None:
    script = tmp_path / "ingest.py"
    script.write_text(_INGEST_SCRIPT.format(
        src=str(ROOT / "src"), root=str(ROOT), db=str(db), notes=str(notes)))
    proc = subprocess.Popen([sys.executable, str(script)])
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
            if not db.exists():
                continue
            try:
                check = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
                check.setbusytimeout(1000)
                docs = check.execute("SELECT count(*) FROM documents").fetchone()[0]
                vecs = check.execute("SELECT count(*) FROM chunks WHERE embedded=1").fetchone()[0]
                check.close()
            except apsw.Error:
                continue
            if (when == "lexical" and docs > 20) or (when == "vectors" and vecs > 10):
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def test_killed_ingest_leaves_index_consistent_and_rerun_completes(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    _write_notes(notes, 300)
    db = tmp_path / "k.db"
    _run_and_kill(tmp_path, notes, db, "lexical")
    documents, _ = check_consistent(db)
    assert 0 < documents < 300, "the kill should land in the middle of ingestion"

    _run_and_kill(tmp_path, notes, db, "vectors")
    documents, chunks = check_consistent(db)
    assert documents == 300

    kb = open_kb(db)
    report = kb.ingest(notes, "n", allow=["public"])
    assert report.files_unchanged == 300 and report.documents_added == 0
    kb.embed_pending()
    assert kb.pending_vectors() == 0
    assert check_consistent(db) == (300, chunks)
    for i in (0, 150, 299):
        assert kb.search(f"token{i}", READER, ["n"], k=1)[0].document_id.endswith(
            f"note{i:04d}.txt"
        )


def test_ingest_documents_from_memory(tmp_path: Path, make_kb: MakeKB) -> None:
    from ownlight.knowledge.types import Document

    kb = make_kb(vectors=False)
    docs = [Document("u1", "Upload", "uploaded text about kiwis", allow=("user:reader",))]
    assert kb.ingest_documents("upload-1", docs, "c").added == 1
    assert kb.ingest_documents("upload-1", docs, "c").unchanged == 1
    assert kb.search("kiwis", READER, ["c"])[0].document_id == "u1"
    assert kb.ingest_documents("upload-1", [], "c").removed == 1
    assert kb.search("kiwis", READER, ["c"]) == []


def test_common_terms_are_pruned_on_big_indexes_and_counts_stay_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ownlight.knowledge import sqlite_store
    from ownlight.knowledge.types import Document

    monkeypatch.setattr(sqlite_store, "PRUNE_FROM_CHUNKS", 0)
    monkeypatch.setattr(sqlite_store, "MIN_QUERY_TERMS", 1)
    kb = open_kb(tmp_path / "k.db", vectors=False)
    docs = [Document(f"d{i}", "t", f"common words {i}") for i in range(30)]
    docs.append(Document("odd", "t", "common rare"))
    kb.ingest_documents("s", docs, "c", allow=["public"])
    store = kb.store
    assert isinstance(store, sqlite_store.SQLiteKnowledgeStore)
    assert store._query_terms(["common", "rare"]) == ["rare"]
    assert kb.search("common rare", READER, ["c"], k=1)[0].document_id == "odd"
    kb.ingest_documents("s", docs[:10], "c", allow=["public"])
    df = dict(store.db.execute("SELECT term, df FROM term_df WHERE df > 0").fetchall())
    assert df["common"] == 10 and "rare" not in df
