"""The shared knowledge store: PostgreSQL with pgvector, for several Ownlight instances.

Every instance of a scaled-out Ownlight must search one knowledge base, so when
``[store] url`` names a PostgreSQL database the index lives there (tables
``knowledge_*``, created by the ``005_knowledge`` step of ``postgres_migrations``). It
answers the same ``KnowledgeStore`` methods as ``sqlite_store.py`` and is built to rank
the same way, so retrieval quality does not depend on where the index lives:

- Lexical: the SAME terms the SQLite index stores (``segment.index_text``: Chinese and
  Japanese split into characters and pairs by Ownlight, not by the database), kept as
  ``to_tsvector('simple', …)`` of the chunk's text with its document title at weight A,
  matched through a GIN index. PostgreSQL's own ``ts_rank`` has no inverse document
  frequency, which ranks CJK character terms badly, so the score is computed in the query
  as FTS5's BM25 computes it (k1 1.2, b 0.75, the title's occurrences counting half, IDF
  from ``knowledge_terms``, which every write keeps up to date). No extension but
  pgvector is needed.
- Vectors: pgvector, ``vector(384)`` with an HNSW index for cosine distance, searched
  with iterative index scans (``hnsw.iterative_scan``), so a reader allowed to see a few
  documents among many still gets k results rather than the readable part of the first
  ``ef_search`` candidates.
- Access: both queries keep only chunks whose access class is in
  ``access.READABLE_CLASSES_POSTGRES``, inside the ranking statement, before ``LIMIT``.

Writes run in one transaction each, like SQLite's; BM25's counters are changed last, in
term order, so concurrent ingests from several instances cannot deadlock on them. Every
instance runs a background embedder: ``pending_chunks`` claims the chunks it hands out
for ``CLAIM_SECONDS`` (``FOR UPDATE SKIP LOCKED``), so several embedders share the work
instead of each embedding every chunk; a claim whose embedder died simply expires.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg

from ownlight.knowledge import segment
from ownlight.knowledge.access import READABLE_CLASSES_POSTGRES, members
from ownlight.knowledge.sqlite_store import (
    BM25_WEIGHTS,
    COMMON_TERM_SHARE,
    MIN_QUERY_TERMS,
    PRUNE_FROM_CHUNKS,
    embed_text,
)
from ownlight.knowledge.store import PreparedDocument, SourceChange
from ownlight.knowledge.types import Hit
from ownlight.principal import Principal
from ownlight.store.postgres import PostgresDatabase

#: FTS5's BM25 constants, so both stores rank alike.
BM25_K1 = 1.2
BM25_B = 0.75
#: Lexical terms of one query at most (as ``segment.match_expression``).
MAX_QUERY_TERMS = 64
#: HNSW candidate list per search: at least this, and at least the results asked for.
EF_SEARCH = 100
#: How many index tuples an iterative scan may visit looking for readable chunks before
#: it gives up: enough for a reader who may see 1 chunk in 100 of a 1,000,000-chunk
#: index to get 100 results; the scan stops as soon as it has k.
MAX_SCAN_TUPLES = 100_000

#: Times a write aborted by a deadlock (another instance's write) is tried.
WRITE_ATTEMPTS = 3
#: How long a chunk handed out to one embedder is left to it before another may take it.
CLAIM_SECONDS = 300

_BODY_WEIGHT, _TITLE_WEIGHT = BM25_WEIGHTS
_READABLE = f"ARRAY({READABLE_CLASSES_POSTGRES})"

_LEXICAL_SQL = f"""
WITH q AS (
  SELECT DISTINCT v.lexeme AS term
  FROM unnest(%(terms)s::text[]) AS t(term), unnest(to_tsvector('simple', t.term)) AS v),
totals AS (
  SELECT greatest(chunks, 1)::float8 AS n,
         greatest(length, 1)::float8 / greatest(chunks, 1) AS avgdl
  FROM knowledge_totals),
idf AS (
  SELECT q.term, greatest(ln((totals.n - coalesce(d.df, 0) + 0.5)
                             / (coalesce(d.df, 0) + 0.5)), 1e-6) AS idf
  FROM q CROSS JOIN totals LEFT JOIN knowledge_terms d ON d.term = q.term),
matched AS MATERIALIZED (
  SELECT c.id, c.length, c.terms FROM knowledge_chunks c
  WHERE c.terms @@ (SELECT string_agg(
                      '''' || replace(replace(term, '\\', '\\\\'), '''', '''''') || '''',
                      ' | ')::tsquery FROM q)
    AND c.class_id = ANY({_READABLE}))
SELECT m.id, sum(i.idf * f.tf * {BM25_K1 + 1}
                 / (f.tf + {BM25_K1} * ({1 - BM25_B} + {BM25_B} * m.length / totals.avgdl)))
         AS score
FROM matched m
CROSS JOIN LATERAL (
  SELECT u.lexeme, (SELECT sum(CASE w WHEN 'A' THEN {_TITLE_WEIGHT} ELSE {_BODY_WEIGHT} END)
                    FROM unnest(u.weights) AS w) AS tf
  -- only the query's lexemes: the chunk's others deleted in C, not joined away in SQL
  FROM unnest(ts_delete(m.terms, tsvector_to_array(
         ts_delete(m.terms, (SELECT array_agg(term) FROM q))))) AS u) f
JOIN idf i ON i.term = f.lexeme
CROSS JOIN totals
GROUP BY m.id ORDER BY score DESC, m.id LIMIT %(k)s
"""

# relaxed_order may return neighbours slightly out of order; the outer query sorts them.
_VECTOR_SQL = f"""
WITH nearest AS MATERIALIZED (
  SELECT id, embedding <=> %(q)s::vector AS d FROM knowledge_chunks
  WHERE class_id = ANY({_READABLE}) AND embedding IS NOT NULL
  ORDER BY d LIMIT %(k)s)
SELECT id, d FROM nearest ORDER BY d, id
"""

_HITS_SQL = f"""
SELECT ch.id, d.key, d.title, c.name, ch.text, ch.start, ch."end", ch.ord, ch.injection_score
FROM knowledge_chunks ch JOIN knowledge_documents d ON d.id = ch.document_id
JOIN knowledge_collections c ON c.id = d.collection_id
WHERE ch.id = ANY(%(ids)s::bigint[]) AND ch.class_id = ANY({_READABLE})
"""

_INSERT_CHUNK = """
INSERT INTO knowledge_chunks (document_id, ord, text, heading, start, "end", class_id,
                              terms, length)
VALUES (%s, %s, %s, %s, %s, %s, %s,
        to_tsvector('simple', %s) || setweight(to_tsvector('simple', %s), 'A'), %s)
"""


def vector_literal(vector: np.ndarray) -> str:
    """pgvector's text form of a vector: ``[0.1,0.2,...]``."""
    return "[" + ",".join(repr(float(x)) for x in np.asarray(vector, dtype=np.float32)) + "]"


Conn = psycopg.Connection[Any]


class PostgresKnowledgeStore:
    """A ``KnowledgeStore`` in the shared PostgreSQL database."""

    def __init__(self, db: PostgresDatabase, *, owned: bool = False):
        self.db = db
        self._owned = owned

    @classmethod
    def connect(cls, url: str, max_connections: int = 2) -> PostgresKnowledgeStore:
        """A store on its own small pool (its schema brought up to date first)."""
        return cls(PostgresDatabase(url, max_connections=max_connections), owned=True)

    def close(self) -> None:
        if self._owned:
            self.db.close()

    # -- writing ---------------------------------------------------------------

    @staticmethod
    def _collection_id(conn: Conn, tenant: str, collection: str, create: bool) -> int | None:
        if create:
            conn.execute("INSERT INTO knowledge_collections (tenant, name) VALUES (%s, %s)"
                         " ON CONFLICT DO NOTHING", (tenant, collection))
        row = conn.execute("SELECT id FROM knowledge_collections WHERE tenant = %s"
                           " AND name = %s", (tenant, collection)).fetchone()
        return None if row is None else int(row[0])

    @staticmethod
    def _class_id(conn: Conn, collection_id: int, owner: str | None,
                  allow: tuple[str, ...]) -> int:
        acl = json.dumps(list(allow))
        row = conn.execute(
            "INSERT INTO knowledge_classes (collection_id, owner, acl) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING RETURNING id", (collection_id, owner, acl)).fetchone()
        if row is None:  # it existed (its members too: they are written with it)
            row = conn.execute(
                "SELECT id FROM knowledge_classes WHERE collection_id = %s"
                " AND owner IS NOT DISTINCT FROM %s AND acl = %s",
                (collection_id, owner, acl)).fetchone()
            assert row is not None
            return int(row[0])
        class_id = int(row[0])
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO knowledge_members (class_id, identity) VALUES (%s, %s)",
                            [(class_id, identity) for identity in members(allow, owner)])
        return class_id

    @staticmethod
    def _statistics(conn: Conn, document_ids: Sequence[int]) -> tuple[Counter[str], int, int]:
        """The documents' share of BM25's counters: (chunks per term, chunks, terms)."""
        if not document_ids:
            return Counter(), 0, 0
        df = Counter({str(term): int(n) for term, n in conn.execute(
            "SELECT u.lexeme, count(*) FROM knowledge_chunks c, unnest(c.terms) AS u"
            " WHERE c.document_id = ANY(%s) GROUP BY u.lexeme", (list(document_ids),))})
        row = conn.execute("SELECT count(*), coalesce(sum(length), 0) FROM knowledge_chunks"
                           " WHERE document_id = ANY(%s)", (list(document_ids),)).fetchone()
        assert row is not None
        return df, int(row[0]), int(row[1])

    def _delete_documents(self, conn: Conn, document_ids: list[int], stats: _Delta) -> None:
        if not document_ids:
            return
        stats.subtract(*self._statistics(conn, document_ids))
        conn.execute("DELETE FROM knowledge_chunks WHERE document_id = ANY(%s)",
                     (document_ids,))
        conn.execute("DELETE FROM knowledge_documents WHERE id = ANY(%s)", (document_ids,))

    @staticmethod
    def _insert_document(conn: Conn, collection_id: int, source_id: int, class_id: int,
                         doc: PreparedDocument) -> int:
        row = conn.execute(
            "INSERT INTO knowledge_documents (collection_id, source_id, key, title, metadata,"
            " class_id, content_hash) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (collection_id, source_id, doc.key, doc.title,
             json.dumps(doc.metadata, ensure_ascii=False, default=str), class_id,
             doc.content_hash)).fetchone()
        assert row is not None
        document_id = int(row[0])
        title = segment.index_text(doc.title)
        rows = []
        for ord_, chunk in enumerate(doc.chunks):
            body = segment.index_text(embed_text(chunk.heading, chunk.text))
            rows.append((document_id, ord_, chunk.text, chunk.heading, chunk.start, chunk.end,
                         class_id, body, title, len(body.split()) + len(title.split())))
        with conn.cursor() as cur:
            cur.executemany(_INSERT_CHUNK, rows)
        return document_id

    def source_hash(self, tenant: str, collection: str, source: str) -> str | None:
        rows = self.db.query(
            "SELECT s.content_hash FROM knowledge_sources s"
            " JOIN knowledge_collections c ON c.id = s.collection_id"
            " WHERE c.tenant = %s AND c.name = %s AND s.path = %s", (tenant, collection, source))
        return str(rows[0][0]) if rows else None

    def replace_source(
        self,
        tenant: str,
        collection: str,
        source: str,
        source_hash: str,
        owner: str | None,
        documents: Sequence[PreparedDocument],
    ) -> SourceChange:
        # Two instances creating the same new access classes in opposite orders can
        # deadlock; PostgreSQL aborts one transaction, which is then simply run again.
        for attempt in range(WRITE_ATTEMPTS):
            try:
                return self._replace_source(tenant, collection, source, source_hash, owner,
                                            documents)
            except psycopg.errors.TransactionRollback:
                if attempt == WRITE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _replace_source(
        self,
        tenant: str,
        collection: str,
        source: str,
        source_hash: str,
        owner: str | None,
        documents: Sequence[PreparedDocument],
    ) -> SourceChange:
        added = updated = removed = unchanged = 0
        stats = _Delta()
        with self.db.transaction() as conn:
            collection_id = self._collection_id(conn, tenant, collection, create=True)
            assert collection_id is not None
            # The upsert locks the source's row: another instance ingesting the same file
            # waits here for this transaction, then sees its result.
            row = conn.execute(
                "INSERT INTO knowledge_sources (collection_id, path, content_hash)"
                " VALUES (%s, %s, %s) ON CONFLICT (collection_id, path)"
                " DO UPDATE SET content_hash = excluded.content_hash RETURNING id",
                (collection_id, source, source_hash)).fetchone()
            assert row is not None
            source_id = int(row[0])
            old = {
                str(key): (int(doc_id), str(h), int(cls))
                for doc_id, key, h, cls in conn.execute(
                    "SELECT id, key, content_hash, class_id FROM knowledge_documents"
                    " WHERE source_id = %s", (source_id,))
            }
            inserted: list[int] = []
            for doc in documents:
                class_id = self._class_id(conn, collection_id, owner, doc.allow)
                previous = old.pop(doc.key, None)
                if previous and previous[1] == doc.content_hash and previous[2] == class_id:
                    unchanged += 1
                    continue
                if previous:
                    self._delete_documents(conn, [previous[0]], stats)
                    updated += 1
                else:
                    clash = conn.execute(
                        "SELECT id FROM knowledge_documents WHERE collection_id = %s"
                        " AND key = %s", (collection_id, doc.key)).fetchone()
                    if clash is not None:  # the same id came from another file: last wins
                        self._delete_documents(conn, [int(clash[0])], stats)
                    added += 1
                inserted.append(
                    self._insert_document(conn, collection_id, source_id, class_id, doc))
            self._delete_documents(conn, [doc_id for doc_id, _, _ in old.values()], stats)
            removed += len(old)
            stats.add(*self._statistics(conn, inserted))
            stats.apply(conn)
        return SourceChange(added, updated, removed, unchanged)

    def prune(self, tenant: str, collection: str, root: str, keep: set[str]) -> int:
        stats = _Delta()
        with self.db.transaction() as conn:
            collection_id = self._collection_id(conn, tenant, collection, create=False)
            if collection_id is None:
                return 0
            prefix = root.rstrip("/") + "/"
            gone = [
                int(source_id) for source_id, path in conn.execute(
                    "SELECT id, path FROM knowledge_sources WHERE collection_id = %s",
                    (collection_id,))
                if (path == root or str(path).startswith(prefix)) and path not in keep
            ]
            documents = [int(r[0]) for r in conn.execute(
                "SELECT id FROM knowledge_documents WHERE source_id = ANY(%s)", (gone,))]
            self._delete_documents(conn, documents, stats)
            conn.execute("DELETE FROM knowledge_sources WHERE id = ANY(%s)", (gone,))
            stats.apply(conn)
        return len(documents)

    def pending_chunks(self, limit: int) -> list[tuple[int, str]]:
        """Unclaimed chunks without a vector, oldest first, now claimed by this caller."""
        return self._claim("embedding IS NULL", limit)

    def _claim(self, condition: str, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` unclaimed chunks meeting ``condition`` (a fixed SQL condition),
        oldest first, claimed by this caller for ``CLAIM_SECONDS``: several instances'
        background embedders share the work instead of each doing all of it."""
        with self.db.transaction() as conn:
            rows = conn.execute(
                "UPDATE knowledge_chunks SET claimed_until = now() + make_interval(secs => %s)"
                f" WHERE id IN (SELECT id FROM knowledge_chunks WHERE {condition}"
                "   AND (claimed_until IS NULL OR claimed_until < now())"
                "   ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
                " RETURNING id, heading, text", (CLAIM_SECONDS, limit)).fetchall()
        return sorted((int(i), embed_text(str(h), str(t))) for i, h, t in rows)

    def count_pending(self) -> int:
        return int(self.db.query(
            "SELECT count(*) FROM knowledge_chunks WHERE embedding IS NULL")[0][0])

    def store_vectors(self, chunk_ids: Sequence[int], vectors: np.ndarray,
                      injection_scores: Sequence[float] | None = None) -> None:
        scores = injection_scores if injection_scores is not None else [None] * len(chunk_ids)
        with self.db.transaction() as conn, conn.cursor() as cur:
            cur.executemany(
                "UPDATE knowledge_chunks SET embedding = %s::vector, injection_score = %s,"
                " claimed_until = NULL WHERE id = %s AND embedding IS NULL",
                [(vector_literal(v), None if s is None else float(s), int(i))
                 for i, v, s in zip(chunk_ids, vectors, scores, strict=True)])

    def unscored_chunks(self, limit: int) -> list[tuple[int, str]]:
        return self._claim("embedding IS NOT NULL AND injection_score IS NULL", limit)

    def store_scores(self, chunk_ids: Sequence[int], injection_scores: Sequence[float]) -> None:
        with self.db.transaction() as conn, conn.cursor() as cur:
            cur.executemany("UPDATE knowledge_chunks SET injection_score = %s,"
                            " claimed_until = NULL WHERE id = %s",
                            [(float(s), int(i)) for i, s in zip(chunk_ids, injection_scores,
                                                                 strict=True)])

    def access_list(self, tenant: str, collection: str) -> tuple[list[str], list[str]]:
        owners = self.db.query(
            "SELECT DISTINCT a.owner FROM knowledge_classes a JOIN knowledge_collections c"
            " ON c.id = a.collection_id WHERE c.tenant = %s AND c.name = %s"
            " AND a.owner IS NOT NULL ORDER BY 1", (tenant, collection))
        grants = self.db.query(
            "SELECT g.identity FROM knowledge_grants g JOIN knowledge_collections c"
            " ON c.id = g.collection_id WHERE c.tenant = %s AND c.name = %s ORDER BY 1",
            (tenant, collection))
        return [str(r[0]) for r in owners], [str(r[0]) for r in grants]

    def grant(self, tenant: str, collection: str, identity: str) -> None:
        with self.db.transaction() as conn:
            collection_id = self._collection_id(conn, tenant, collection, create=True)
            conn.execute("INSERT INTO knowledge_grants VALUES (%s, %s) ON CONFLICT DO NOTHING",
                         (collection_id, identity))

    def revoke(self, tenant: str, collection: str, identity: str) -> None:
        with self.db.transaction() as conn:
            collection_id = self._collection_id(conn, tenant, collection, create=False)
            conn.execute("DELETE FROM knowledge_grants WHERE collection_id = %s"
                         " AND identity = %s", (collection_id, identity))

    # -- reading ---------------------------------------------------------------

    def readable_collections(self, principal: Principal) -> list[str]:
        names = [str(r[0]) for r in self.db.query(
            "SELECT name FROM knowledge_collections WHERE tenant = %s", (principal.tenant,))]
        rows = self.db.query(
            f"WITH readable AS ({READABLE_CLASSES_POSTGRES})"
            " SELECT DISTINCT c.name FROM knowledge_classes a JOIN knowledge_collections c"
            " ON c.id = a.collection_id WHERE a.id IN (SELECT id FROM readable) ORDER BY c.name",
            self._access(principal, names))  # type: ignore[arg-type]
        return [str(r[0]) for r in rows]

    @staticmethod
    def _access(principal: Principal, collections: Sequence[str]) -> dict[str, Any]:
        return {"tenant": principal.tenant, "collections": list(collections),
                "identities": list(principal.identities)}

    def _query_terms(self, terms: Sequence[str]) -> list[str]:
        """The query's terms, minus very common ones on a big index (as SQLite's store)."""
        unique = list(dict.fromkeys(terms))
        total = int(self.db.query("SELECT chunks FROM knowledge_totals")[0][0])
        if total < PRUNE_FROM_CHUNKS or len(unique) <= MIN_QUERY_TERMS:
            return unique[:MAX_QUERY_TERMS]
        df = {str(t): int(n) for t, n in self.db.query(
            "SELECT term, df FROM knowledge_terms WHERE term = ANY(%s)", (unique,))}
        rare = [t for t in unique if df.get(t, 0) <= COMMON_TERM_SHARE * total]
        if len(rare) >= MIN_QUERY_TERMS:
            return rare[:MAX_QUERY_TERMS]
        return sorted(unique, key=lambda t: df.get(t, 0))[:MIN_QUERY_TERMS]

    def lexical(
        self, terms: Sequence[str], principal: Principal, collections: Sequence[str], k: int
    ) -> list[tuple[int, float]]:
        chosen = self._query_terms(terms)
        if not chosen:
            return []
        params = {**self._access(principal, collections), "terms": chosen, "k": k}
        return [(int(r), float(s)) for r, s in self.db.query(_LEXICAL_SQL, params)]  # type: ignore[arg-type]

    def vector(
        self, query: np.ndarray, principal: Principal, collections: Sequence[str], k: int
    ) -> list[tuple[int, float]]:
        params = {**self._access(principal, collections), "q": vector_literal(query), "k": k}
        with self.db.transaction() as conn:
            conn.execute(
                "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),"
                " set_config('hnsw.ef_search', %s, true),"
                " set_config('hnsw.max_scan_tuples', %s, true)",
                (str(max(EF_SEARCH, k)), str(MAX_SCAN_TUPLES)))
            rows = conn.execute(_VECTOR_SQL, params).fetchall()
        return [(int(r), 1.0 - float(d)) for r, d in rows]

    def hits(
        self, chunk_ids: Sequence[int], principal: Principal, collections: Sequence[str]
    ) -> dict[int, Hit]:
        if not chunk_ids:
            return {}
        params = {**self._access(principal, collections), "ids": list(chunk_ids)}
        return {
            int(r[0]): Hit(str(r[1]), str(r[2]), str(r[3]), int(r[0]), str(r[4]), int(r[5]),
                           int(r[6]), 0.0, int(r[7]), None if r[8] is None else float(r[8]))
            for r in self.db.query(_HITS_SQL, params)  # type: ignore[arg-type]
        }


class _Delta:
    """What one write changes in BM25's counters, applied once at its end."""

    def __init__(self) -> None:
        self.df: Counter[str] = Counter()
        self.chunks = 0
        self.length = 0

    def add(self, df: Counter[str], chunks: int, length: int) -> None:
        self.df.update(df)
        self.chunks += chunks
        self.length += length

    def subtract(self, df: Counter[str], chunks: int, length: int) -> None:
        self.df.subtract(df)
        self.chunks -= chunks
        self.length -= length

    def apply(self, conn: Conn) -> None:
        """Terms in sorted order: two writers lock shared rows in the same order."""
        changed = sorted((t, n) for t, n in self.df.items() if n)
        if changed:
            conn.execute(
                "INSERT INTO knowledge_terms (term, df)"
                " SELECT * FROM unnest(%s::text[], %s::bigint[]) ORDER BY 1"
                " ON CONFLICT (term) DO UPDATE SET df = knowledge_terms.df + excluded.df",
                ([t for t, _ in changed], [n for _, n in changed]))
        if self.chunks or self.length:
            conn.execute("UPDATE knowledge_totals SET chunks = chunks + %s,"
                         " length = length + %s", (self.chunks, self.length))
