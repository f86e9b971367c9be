"""The embedded knowledge store: one SQLite file with FTS5 and sqlite-vec, through apsw.

apsw is used because this Python's ``sqlite3`` cannot load extensions. Layout:

- ``chunks_fts``: FTS5 over our own CJK-aware terms (see ``segment.py``), contentless,
  with the chunk's access class as an unindexed column so the ACL filter runs inside
  the ranking query.
- ``chunk_bits``: sqlite-vec ``vec0`` table of 1-bit quantized vectors partitioned by
  access class (the KNN scan only visits readable partitions, returning up to k per
  partition), and ``chunk_vectors`` with the float32 vectors that rerank the bit
  candidates exactly. Bits and partitions keep the scan fast at 100,000 chunks (a
  float scan takes ~50 ms, a metadata-filtered one ~60 ms, this ~16 ms); the price is
  one 4096-slot vector block (~230 KB) per access class that has vectors.

Every write is one transaction; WAL lets searches run while ingestion writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import apsw
import numpy as np
import sqlite_vec

from ownlight.knowledge import segment
from ownlight.knowledge.access import READABLE_CLASSES_SQL, members
from ownlight.knowledge.store import PreparedDocument, SourceChange
from ownlight.knowledge.types import Chunk, ExportedSource, Hit
from ownlight.principal import Principal

DIM = 384
#: Bit-quantized candidates fetched per requested result before the exact rerank.
OVERSAMPLE = 8
MIN_CANDIDATES = 200

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS collections (
    id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, name TEXT NOT NULL, UNIQUE (tenant, name));
CREATE TABLE IF NOT EXISTS collection_grants (
    collection_id INTEGER NOT NULL, identity TEXT NOT NULL,
    PRIMARY KEY (collection_id, identity));
CREATE TABLE IF NOT EXISTS access_classes (
    id INTEGER PRIMARY KEY, collection_id INTEGER NOT NULL, owner TEXT, acl TEXT NOT NULL,
    UNIQUE (collection_id, owner, acl));
CREATE TABLE IF NOT EXISTS access_members (
    class_id INTEGER NOT NULL, identity TEXT NOT NULL, PRIMARY KEY (class_id, identity));
CREATE TABLE IF NOT EXISTS sources (
    id INTEGER PRIMARY KEY, collection_id INTEGER NOT NULL, path TEXT NOT NULL,
    content_hash TEXT NOT NULL, UNIQUE (collection_id, path));
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY, collection_id INTEGER NOT NULL, source_id INTEGER NOT NULL,
    key TEXT NOT NULL, title TEXT NOT NULL, metadata TEXT NOT NULL, class_id INTEGER NOT NULL,
    content_hash TEXT NOT NULL, UNIQUE (collection_id, key));
CREATE INDEX IF NOT EXISTS documents_source ON documents (source_id);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, document_id INTEGER NOT NULL, ord INTEGER NOT NULL,
    text TEXT NOT NULL, heading TEXT NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL,
    class_id INTEGER NOT NULL, embedded INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks (document_id);
CREATE INDEX IF NOT EXISTS chunks_pending ON chunks (id) WHERE embedded = 0;
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5 (
    body, title, class_id UNINDEXED, content='', contentless_delete=1,
    contentless_unindexed=1, tokenize='unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE IF NOT EXISTS chunk_bits USING vec0 (
    class_id INTEGER PARTITION KEY, embedding bit[{DIM}], chunk_size=4096);
CREATE TABLE IF NOT EXISTS chunk_vectors (chunk_id INTEGER PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS term_df (term TEXT PRIMARY KEY, df INTEGER NOT NULL) WITHOUT ROWID;
"""

#: Every schema step of a knowledge index, in the one order they are applied; append-only
#: (the first step's statements say IF NOT EXISTS, so indexes made before this list
#: existed take it as done).
KNOWLEDGE_MIGRATIONS: tuple[tuple[str, str], ...] = (
    ("001_schema", _SCHEMA),
    # the injection guard's score of a chunk, from its vector at ingest; NULL before
    ("002_chunk_injection_score", "ALTER TABLE chunks ADD COLUMN injection_score REAL"),
    # the guard's chunk head now reads e5's 7th layer, not its last: the old scores are on
    # another scale, so they are cleared and ``embed_pending`` scores those chunks again
    ("003_chunk_injection_score_e5_layers", "UPDATE chunks SET injection_score = NULL"),
    # the chunk head has a hidden layer now (``chunk_training.HIDDEN``): new scale, same path
    ("004_chunk_injection_score_hidden_layer", "UPDATE chunks SET injection_score = NULL"),
    # ... and then averages three networks and reads the presenter and mail dev sets
    ("005_chunk_injection_score_averaged", "UPDATE chunks SET injection_score = NULL"),
)

#: On a big index, query terms found in more than this share of chunks are left out of
#: the OR query: they barely change BM25 (low IDF) but make FTS5 score most of the
#: index (a Japanese query's kana unigrams: 300 ms -> 20 ms at 100,000 chunks).
COMMON_TERM_SHARE = 0.05
PRUNE_FROM_CHUNKS = 20_000
MIN_QUERY_TERMS = 4

#: bm25 column weights: chunk body, document title.
BM25_WEIGHTS = (1.0, 0.5)
_BM25 = ", ".join(f"{float(w)!r}" for w in BM25_WEIGHTS)


def embed_text(heading: str, text: str) -> str:
    """What the embedding model sees for a chunk: its section heading and its text."""
    return f"{heading}\n{text}" if heading else text


class SQLiteKnowledgeStore:
    """A ``KnowledgeStore`` in one SQLite file."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.db = apsw.Connection(self.path)
        self.db.enable_load_extension(True)
        self.db.load_extension(sqlite_vec.loadable_path())
        self.db.enable_load_extension(False)
        self.db.setbusytimeout(30_000)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def _migrate(self) -> None:
        """Apply the steps of ``KNOWLEDGE_MIGRATIONS`` this file has not seen, in order."""
        with self.db:
            self.db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY)")
            done = {row[0] for row in self.db.execute("SELECT name FROM _migrations")}
            for name, script in KNOWLEDGE_MIGRATIONS:
                if name not in done:
                    self.db.execute(script)
                    self.db.execute("INSERT INTO _migrations (name) VALUES (?)", (name,))

    def close(self) -> None:
        self.db.close()

    def _scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """The first column of the first row of a query that always yields one."""
        row = self.db.execute(sql, params).fetchone()
        assert row is not None
        return row[0]

    # -- writing ---------------------------------------------------------------

    def _collection_id(self, tenant: str, collection: str, create: bool) -> int | None:
        row = self.db.execute(
            "SELECT id FROM collections WHERE tenant = ? AND name = ?", (tenant, collection)
        ).fetchone()
        if row is not None:
            return int(row[0])
        if not create:
            return None
        self.db.execute(
            "INSERT INTO collections (tenant, name) VALUES (?, ?)", (tenant, collection)
        )
        return int(self.db.last_insert_rowid())

    def _class_id(self, collection_id: int, owner: str | None, allow: tuple[str, ...]) -> int:
        acl = json.dumps(list(allow))
        row = self.db.execute(
            "SELECT id FROM access_classes WHERE collection_id = ? AND owner IS ? AND acl = ?",
            (collection_id, owner, acl),
        ).fetchone()
        if row is not None:
            return int(row[0])
        self.db.execute(
            "INSERT INTO access_classes (collection_id, owner, acl) VALUES (?, ?, ?)",
            (collection_id, owner, acl),
        )
        class_id = int(self.db.last_insert_rowid())
        self.db.executemany(
            "INSERT INTO access_members (class_id, identity) VALUES (?, ?)",
            [(class_id, identity) for identity in members(allow, owner)],
        )
        return class_id

    def _count_terms(self, body: str, delta: int) -> None:
        self.db.executemany(
            "INSERT INTO term_df VALUES (?, ?) ON CONFLICT (term) DO UPDATE SET df = df + ?",
            [(term, delta, delta) for term in set(body.split())],
        )

    def _delete_document(self, document_id: int) -> None:
        rows = self.db.execute(
            "SELECT id, heading, text FROM chunks WHERE document_id = ?", (document_id,)
        ).fetchall()
        ids = [r[0] for r in rows]
        for _, heading, text in rows:
            self._count_terms(segment.index_text(embed_text(str(heading), str(text))), -1)
        for chunk_id in ids:
            self.db.execute("DELETE FROM chunks_fts WHERE rowid = ?", (chunk_id,))
            self.db.execute("DELETE FROM chunk_bits WHERE rowid = ?", (chunk_id,))
            self.db.execute("DELETE FROM chunk_vectors WHERE chunk_id = ?", (chunk_id,))
        self.db.execute("DELETE FROM chunks WHERE document_id = ?", (document_id,))
        self.db.execute("DELETE FROM documents WHERE id = ?", (document_id,))

    def _insert_document(
        self, collection_id: int, source_id: int, class_id: int, doc: PreparedDocument
    ) -> None:
        self.db.execute(
            "INSERT INTO documents (collection_id, source_id, key, title, metadata, class_id,"
            " content_hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (collection_id, source_id, doc.key, doc.title,
             json.dumps(doc.metadata, ensure_ascii=False, default=str), class_id,
             doc.content_hash),
        )
        document_id = self.db.last_insert_rowid()
        title_terms = segment.index_text(doc.title)
        for ord_, chunk in enumerate(doc.chunks):
            self.db.execute(
                'INSERT INTO chunks (document_id, ord, text, heading, start, "end", class_id)'
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (document_id, ord_, chunk.text, chunk.heading, chunk.start, chunk.end, class_id),
            )
            chunk_id = self.db.last_insert_rowid()
            body = segment.index_text(embed_text(chunk.heading, chunk.text))
            self._count_terms(body, 1)
            self.db.execute(
                "INSERT INTO chunks_fts (rowid, body, title, class_id) VALUES (?, ?, ?, ?)",
                (chunk_id, body, title_terms, class_id),
            )

    def source_hash(self, tenant: str, collection: str, source: str) -> str | None:
        row = self.db.execute(
            "SELECT s.content_hash FROM sources s JOIN collections c ON c.id = s.collection_id"
            " WHERE c.tenant = ? AND c.name = ? AND s.path = ?",
            (tenant, collection, source),
        ).fetchone()
        return None if row is None else str(row[0])

    def replace_source(
        self,
        tenant: str,
        collection: str,
        source: str,
        source_hash: str,
        owner: str | None,
        documents: Sequence[PreparedDocument],
    ) -> SourceChange:
        added = updated = removed = unchanged = 0
        with self.db:
            collection_id = self._collection_id(tenant, collection, create=True)
            assert collection_id is not None
            self.db.execute(
                "INSERT INTO sources (collection_id, path, content_hash) VALUES (?, ?, ?)"
                " ON CONFLICT (collection_id, path)"
                " DO UPDATE SET content_hash = excluded.content_hash",
                (collection_id, source, source_hash),
            )
            source_id = self._scalar(
                "SELECT id FROM sources WHERE collection_id = ? AND path = ?",
                (collection_id, source),
            )
            old = {
                str(key): (int(doc_id), str(h), int(cls))
                for doc_id, key, h, cls in self.db.execute(
                    "SELECT id, key, content_hash, class_id FROM documents WHERE source_id = ?",
                    (source_id,),
                )
            }
            for doc in documents:
                class_id = self._class_id(collection_id, owner, doc.allow)
                previous = old.pop(doc.key, None)
                if previous and previous[1] == doc.content_hash and previous[2] == class_id:
                    unchanged += 1
                    continue
                if previous:
                    self._delete_document(previous[0])
                    updated += 1
                else:
                    clash = self.db.execute(
                        "SELECT id FROM documents WHERE collection_id = ? AND key = ?",
                        (collection_id, doc.key),
                    ).fetchone()
                    if clash is not None:  # the same id came from another file: last wins
                        self._delete_document(int(clash[0]))
                    added += 1
                self._insert_document(collection_id, source_id, class_id, doc)
            for doc_id, _, _ in old.values():
                self._delete_document(doc_id)
                removed += 1
        return SourceChange(added, updated, removed, unchanged)

    def prune(self, tenant: str, collection: str, root: str, keep: set[str]) -> int:
        removed = 0
        with self.db:
            collection_id = self._collection_id(tenant, collection, create=False)
            if collection_id is None:
                return 0
            prefix = root.rstrip("/") + "/"
            rows = self.db.execute(
                "SELECT id, path FROM sources WHERE collection_id = ?", (collection_id,)
            ).fetchall()
            for source_id, path in rows:
                inside = path == root or str(path).startswith(prefix)
                if not inside or path in keep:
                    continue
                for (doc_id,) in self.db.execute(
                    "SELECT id FROM documents WHERE source_id = ?", (source_id,)
                ).fetchall():
                    self._delete_document(int(str(doc_id)))
                    removed += 1
                self.db.execute("DELETE FROM sources WHERE id = ?", (source_id,))
        return removed

    def pending_chunks(self, limit: int) -> list[tuple[int, str]]:
        rows = self.db.execute(
            "SELECT id, heading, text FROM chunks WHERE embedded = 0 ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [(int(str(i)), embed_text(str(h), str(t))) for i, h, t in rows]

    def count_pending(self) -> int:
        return int(self._scalar("SELECT count(*) FROM chunks WHERE embedded = 0"))

    def store_vectors(self, chunk_ids: Sequence[int], vectors: np.ndarray,
                      injection_scores: Sequence[float] | None = None) -> None:
        scores = injection_scores if injection_scores is not None else [None] * len(chunk_ids)
        with self.db:
            for chunk_id, vector, score in zip(chunk_ids, vectors, scores, strict=True):
                row = self.db.execute(
                    "SELECT class_id FROM chunks WHERE id = ? AND embedded = 0", (chunk_id,)
                ).fetchone()
                if row is None:
                    continue
                blob = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
                self.db.execute(
                    "INSERT INTO chunk_bits (rowid, class_id, embedding)"
                    " VALUES (?, ?, vec_quantize_binary(?))",
                    (chunk_id, row[0], blob),
                )
                self.db.execute("INSERT INTO chunk_vectors VALUES (?, ?)", (chunk_id, blob))
                self.db.execute("UPDATE chunks SET embedded = 1, injection_score = ? WHERE id = ?",
                                (None if score is None else float(score), chunk_id))

    def unscored_chunks(self, limit: int) -> list[tuple[int, str]]:
        rows = self.db.execute(
            "SELECT id, heading, text FROM chunks WHERE embedded = 1 AND injection_score IS NULL"
            " ORDER BY id LIMIT ?", (limit,)).fetchall()
        return [(int(str(i)), embed_text(str(h), str(t))) for i, h, t in rows]

    def store_scores(self, chunk_ids: Sequence[int], injection_scores: Sequence[float]) -> None:
        with self.db:
            for chunk_id, score in zip(chunk_ids, injection_scores, strict=True):
                self.db.execute("UPDATE chunks SET injection_score = ? WHERE id = ?",
                                (float(score), chunk_id))

    def access_list(self, tenant: str, collection: str) -> tuple[list[str], list[str]]:
        owners = self.db.execute(
            "SELECT DISTINCT a.owner FROM access_classes a JOIN collections c"
            " ON c.id = a.collection_id WHERE c.tenant = ? AND c.name = ?"
            " AND a.owner IS NOT NULL ORDER BY 1", (tenant, collection)).fetchall()
        grants = self.db.execute(
            "SELECT g.identity FROM collection_grants g JOIN collections c"
            " ON c.id = g.collection_id WHERE c.tenant = ? AND c.name = ? ORDER BY 1",
            (tenant, collection)).fetchall()
        return [str(r[0]) for r in owners], [str(r[0]) for r in grants]

    def grant(self, tenant: str, collection: str, identity: str) -> None:
        with self.db:
            collection_id = self._collection_id(tenant, collection, create=True)
            self.db.execute(
                "INSERT OR IGNORE INTO collection_grants VALUES (?, ?)", (collection_id, identity)
            )

    def revoke(self, tenant: str, collection: str, identity: str) -> None:
        with self.db:
            collection_id = self._collection_id(tenant, collection, create=False)
            self.db.execute(
                "DELETE FROM collection_grants WHERE collection_id = ? AND identity = ?",
                (collection_id, identity),
            )

    # -- moving to another store (``knowledge.copy``) -----------------------------

    def exported_sources(self) -> Iterator[ExportedSource]:
        """Every source as it was stored: its documents with their chunks, access lists
        and hashes, ready for another store's ``replace_source``."""
        sources = self.db.execute(
            "SELECT s.id, c.tenant, c.name, s.path, s.content_hash FROM sources s"
            " JOIN collections c ON c.id = s.collection_id ORDER BY s.id").fetchall()
        for source_id, tenant, collection, path, digest in sources:
            owner: str | None = None
            documents = []
            for doc_id, key, title, metadata, content_hash, class_owner, acl in self.db.execute(
                    "SELECT d.id, d.key, d.title, d.metadata, d.content_hash, a.owner, a.acl"
                    " FROM documents d JOIN access_classes a ON a.id = d.class_id"
                    " WHERE d.source_id = ? ORDER BY d.id", (source_id,)).fetchall():
                chunks = [Chunk(str(text), int(str(start)), int(str(end)), str(heading))
                          for text, heading, start, end in self.db.execute(
                              'SELECT text, heading, start, "end" FROM chunks'
                              " WHERE document_id = ? ORDER BY ord", (doc_id,)).fetchall()]
                documents.append(PreparedDocument(
                    str(key), str(title), json.loads(str(metadata)),
                    tuple(json.loads(str(acl))), str(content_hash), chunks))
                owner = owner or (str(class_owner) if class_owner is not None else None)
            yield ExportedSource(str(tenant), str(collection), str(path), str(digest), owner,
                                 documents)

    def exported_grants(self) -> list[tuple[str, str, str]]:
        """(tenant, collection, identity) of every collection-wide grant."""
        return [(str(t), str(c), str(i)) for t, c, i in self.db.execute(
            "SELECT c.tenant, c.name, g.identity FROM collection_grants g"
            " JOIN collections c ON c.id = g.collection_id ORDER BY c.id, g.identity")]

    # -- reading ---------------------------------------------------------------

    def readable_collections(self, principal: Principal) -> list[str]:
        names = [str(r[0]) for r in self.db.execute(
            "SELECT name FROM collections WHERE tenant = ?", (principal.tenant,)).fetchall()]
        rows = self.db.execute(
            f"WITH readable AS ({READABLE_CLASSES_SQL})"
            " SELECT DISTINCT c.name FROM access_classes a JOIN collections c"
            " ON c.id = a.collection_id WHERE a.id IN (SELECT id FROM readable) ORDER BY c.name",
            self._access(principal, names)).fetchall()
        return [str(r[0]) for r in rows]

    @staticmethod
    def _access(principal: Principal, collections: Sequence[str]) -> dict[str, str]:
        return {
            "tenant": principal.tenant,
            "collections": json.dumps(list(collections)),
            "identities": json.dumps(list(principal.identities)),
        }

    def _query_terms(self, terms: Sequence[str]) -> list[str]:
        """The query's terms, minus very common ones on a big index (see COMMON_TERM_SHARE)."""
        unique = list(dict.fromkeys(terms))
        total = int(self._scalar("SELECT count(*) FROM chunks"))
        if total < PRUNE_FROM_CHUNKS or len(unique) <= MIN_QUERY_TERMS:
            return unique
        df = {str(term): int(str(count)) for term, count in self.db.execute(
            "SELECT term, df FROM term_df WHERE term IN (SELECT value FROM json_each(?))",
            (json.dumps(unique),),
        ).fetchall()}
        rare = [t for t in unique if df.get(t, 0) <= COMMON_TERM_SHARE * total]
        if len(rare) >= MIN_QUERY_TERMS:
            return rare
        return sorted(unique, key=lambda t: df.get(t, 0))[:MIN_QUERY_TERMS]

    def lexical(
        self, terms: Sequence[str], principal: Principal, collections: Sequence[str], k: int
    ) -> list[tuple[int, float]]:
        match = segment.match_expression(self._query_terms(terms))
        if match is None:
            return []
        sql = (
            f"WITH readable AS ({READABLE_CLASSES_SQL})"
            f" SELECT rowid, bm25(chunks_fts, {_BM25}) AS score FROM chunks_fts"
            " WHERE chunks_fts MATCH :match AND class_id IN (SELECT id FROM readable)"
            " ORDER BY score LIMIT :k"
        )
        params = {**self._access(principal, collections), "match": match, "k": k}
        return [(int(r), -float(s)) for r, s in self.db.execute(sql, params)]

    def vector(
        self, query: np.ndarray, principal: Principal, collections: Sequence[str], k: int
    ) -> list[tuple[int, float]]:
        sql = (
            f"WITH readable AS ({READABLE_CLASSES_SQL}),"
            " candidates AS (SELECT rowid FROM chunk_bits"
            "   WHERE embedding MATCH vec_quantize_binary(:q) AND k = :n"
            "   AND class_id IN (SELECT id FROM readable))"
            " SELECT v.chunk_id, vec_distance_cosine(v.v, :q) AS d"
            " FROM candidates JOIN chunk_vectors v ON v.chunk_id = candidates.rowid"
            " ORDER BY d LIMIT :k"
        )
        params = {
            **self._access(principal, collections),
            "q": np.ascontiguousarray(query, dtype=np.float32).tobytes(),
            "n": max(MIN_CANDIDATES, k * OVERSAMPLE),
            "k": k,
        }
        return [(int(r), 1.0 - float(d)) for r, d in self.db.execute(sql, params)]

    def hits(
        self, chunk_ids: Sequence[int], principal: Principal, collections: Sequence[str]
    ) -> dict[int, Hit]:
        if not chunk_ids:
            return {}
        sql = (
            f"WITH readable AS ({READABLE_CLASSES_SQL})"
            ' SELECT ch.id, d.key, d.title, c.name, ch.text, ch.start, ch."end", ch.ord,'
            " ch.injection_score"
            " FROM chunks ch JOIN documents d ON d.id = ch.document_id"
            " JOIN collections c ON c.id = d.collection_id"
            " WHERE ch.id IN (SELECT value FROM json_each(:ids))"
            " AND ch.class_id IN (SELECT id FROM readable)"
        )
        params = {**self._access(principal, collections), "ids": json.dumps(list(chunk_ids))}
        return {
            int(r[0]): Hit(str(r[1]), str(r[2]), str(r[3]), int(r[0]), str(r[4]), int(r[5]),
                           int(r[6]), 0.0, int(r[7]), None if r[8] is None else float(r[8]))
            for r in self.db.execute(sql, params)
        }
